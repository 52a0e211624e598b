import { connect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, createServer as createTlsServer, type SecureContext, type TLSSocket } from 'node:tls';
import { formatHostPort, type HostPort } from '../config/index.js';
import { peerOf } from './peer.js';
import { formatFingerprint, ServerTrustError } from './tls.js';

/**
 * How the common port is spoken: plain TCP only when asked for explicitly, else TLS.
 * One module for both ends, so the control conn and every work conn go through the same
 * listener and the same dial, and `joinConns` stays the only splicer.
 */
export type ServerTransport =
  | { kind: 'plain' }
  | {
      kind: 'tls';
      cert: Buffer;
      key: Buffer;
      /** Mutual TLS: only clients with a certificate from this CA may connect. */
      clientCa?: Buffer;
    };

export type ClientTransport =
  | { kind: 'plain' }
  | {
      kind: 'tls';
      /** Pinned `sha256:...` of the server's certificate; checked before a byte is sent. */
      fingerprint?: string;
      /** Trust this CA instead of the system's (checked with the usual hostname rules). */
      ca?: Buffer;
      /** For mutual TLS. */
      cert?: Buffer;
      key?: Buffer;
    };

export const PLAINTEXT: ClientTransport & ServerTransport = Object.freeze({ kind: 'plain' });

/**
 * The common port's listener. `onConn` gets each connection once it is usable: at accept for
 * plain TCP, after the handshake for TLS (a handshake that fails or stalls past
 * `handshakeTimeoutMs` is reported through `onHandshakeError` and never reaches `onConn`).
 */
export function createCommonListener(
  transport: ServerTransport,
  handshakeTimeoutMs: number,
  onConn: (socket: Socket) => void,
  onHandshakeError: (remote: string, error: Error) => void,
): Server {
  if (transport.kind === 'plain') return createServer({ allowHalfOpen: true }, onConn);
  const server = createTlsServer(
    {
      cert: transport.cert,
      key: transport.key,
      allowHalfOpen: true,
      handshakeTimeout: handshakeTimeoutMs,
      minVersion: 'TLSv1.2',
      ...(transport.clientCa ? { ca: transport.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
    },
    onConn,
  );
  server.on('tlsClientError', (error, socket) => {
    onHandshakeError(peerOf(socket), error);
    // Node reports a handshake timeout but leaves a half-open socket (allowHalfOpen) standing:
    // without this, a silent peer would hold its slot forever.
    socket.destroy();
  });
  return server;
}

/** Opens a plain TCP connection, allowing half-close; rejects on error or after `timeoutMs`. */
export function dialTcp(target: HostPort, timeoutMs: number): Promise<Socket> {
  return connectWithin(connect({ host: target.host, port: target.port, allowHalfOpen: true }), 'connect', target, timeoutMs);
}

/**
 * Dials the common port (a control conn or a work conn). With TLS, resolves only once the
 * server is verified: a pinned fingerprint that differs, or a certificate the CA does not
 * vouch for, rejects with ServerTrustError — never a fallback to plaintext.
 */
export async function dialCommon(target: HostPort, transport: ClientTransport, timeoutMs: number): Promise<Socket> {
  if (transport.kind === 'plain') return dialTcp(target, timeoutMs);
  const pinned = transport.fingerprint;
  const socket = tlsConnect({
    // TLS over our own TCP socket: it carries allowHalfOpen, which the TLS socket inherits.
    socket: connect({ host: target.host, port: target.port, allowHalfOpen: true }),
    host: target.host, // the name the certificate must carry (CA mode)
    secureContext: clientContext(transport),
    // Pinning replaces CA checks (a self-signed server certificate is the usual case);
    // the fingerprint is compared below, before the socket is handed out.
    rejectUnauthorized: pinned === undefined,
    ...(isIp(target.host) ? {} : { servername: target.host }),
  });
  let tls: TLSSocket;
  try {
    tls = (await connectWithin(socket, 'secureConnect', target, timeoutMs)) as TLSSocket;
  } catch (error) {
    const code = (error as { tlsCode?: string }).tlsCode;
    if (code !== undefined && isTrustFailure(code)) {
      throw new ServerTrustError(
        'TLS_UNTRUSTED',
        `${formatHostPort(target)}: the server's certificate is not trusted (${code}); refusing to talk. Pin its fingerprint (serverFingerprint: sha256:... / --server-fingerprint) or give the CA that signed it (serverCa)`,
      );
    }
    if (code === 'ECONNRESET' || code === 'EPIPE') {
      // The usual cause is a server in plaintext mode reading our ClientHello as a bad frame.
      throw new Error(`${(error as Error).message} during the TLS handshake (is the server in plaintext mode, or does it require a client certificate?)`);
    }
    throw error;
  }
  if (pinned !== undefined) {
    // The X509 object computes only the fingerprint; getPeerCertificate would decode every field.
    const presented = tls.getPeerX509Certificate()?.fingerprint256;
    const actual = presented ? formatFingerprint(presented) : 'none';
    if (actual !== pinned) {
      tls.destroy();
      throw new ServerTrustError(
        'TLS_FINGERPRINT_MISMATCH',
        `${formatHostPort(target)}: the server's certificate fingerprint is ${actual}, but ${pinned} is pinned; refusing to talk (wrong server, or its certificate was replaced)`,
      );
    }
  }
  return tls;
}

/**
 * One secure context per transport, shared by every dial: building it (CA store, key, cert)
 * cost more than the rest of a pooled work conn's handshake when made per connection.
 */
const clientContexts = new WeakMap<ClientTransport, SecureContext>();
function clientContext(transport: ClientTransport & { kind: 'tls' }): SecureContext {
  let context = clientContexts.get(transport);
  if (context === undefined) {
    context = createSecureContext({
      minVersion: 'TLSv1.2',
      ...(transport.ca ? { ca: transport.ca } : {}),
      ...(transport.cert && transport.key ? { cert: transport.cert, key: transport.key } : {}),
    });
    clientContexts.set(transport, context);
  }
  return context;
}

function connectWithin(socket: Socket, ready: 'connect' | 'secureConnect', target: HostPort, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${formatHostPort(target)}: no answer within ${timeoutMs}ms`));
    }, timeoutMs);
    const onError = (error: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(Object.assign(new Error(`${formatHostPort(target)}: ${error.code ?? error.message}`), { tlsCode: error.code }));
    };
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    socket.once('error', onError);
  });
}

const TRUST_FAILURES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function isTrustFailure(code: string): boolean {
  return TRUST_FAILURES.has(code);
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
