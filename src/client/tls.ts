import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import {
  canonicalFingerprint,
  ConfigError,
  formatHostPort,
  type GroupSpec,
  type HostPort,
  type ProxyUrl,
  type ServerRoute,
  DIRECT_ROUTE,
} from '../config/index.js';
import { connectWithin, dialTcp, formatFingerprint, type ClientTransport } from '../net/index.js';
import { ServerTrustError } from './errors.js';
import { dialRoute } from './route-dial.js';

/*
 * The client's side of TLS, in one place: what it trusts (from its group file and command
 * line), and the dial that refuses to hand out a conn to a server it could not verify.
 */

export interface TrustOverrides {
  /** `--server-fingerprint`: replaces the file's serverFingerprint. */
  fingerprint?: string;
  /** `--plaintext`: no TLS; only ever by explicit request. */
  plaintext?: boolean;
  /** `--proxy`: replaces the file's `proxy:` (its `transport:` stays). */
  proxy?: ProxyUrl;
}

/**
 * How this client reaches the common port, from its group file and the command line.
 * Nothing given means TLS checked against the system's CAs: never plaintext by default.
 */
export function clientTransport(spec: GroupSpec, overrides: TrustOverrides = {}): ClientTransport {
  let fingerprint = spec.serverFingerprint;
  if (overrides.fingerprint !== undefined) {
    fingerprint = canonicalFingerprint(overrides.fingerprint);
    if (fingerprint === undefined) {
      throw new ConfigError('CONFIG_INVALID', '--server-fingerprint: expected sha256: followed by 64 hex digits', spec.file, 'serverFingerprint');
    }
  }
  const route = routeOf(spec.route, overrides.proxy);
  if (overrides.plaintext === true || spec.plaintext === true) {
    if (fingerprint !== undefined || spec.serverCaFile !== undefined) {
      throw new ConfigError('CONFIG_INVALID', 'plaintext contradicts a pinned fingerprint or serverCa; keep one', spec.file, 'plaintext');
    }
    if (route.route !== undefined && route.route.transport !== 'tcp') {
      throw new ConfigError('CONFIG_INVALID', `transport: ${route.route.transport} carries our TLS; it cannot be plaintext`, spec.file, 'transport');
    }
    return { kind: 'plain', ...route };
  }
  return {
    kind: 'tls',
    ...route,
    ...(fingerprint ? { fingerprint } : {}),
    ...(spec.serverCaFile ? { ca: read(spec, spec.serverCaFile, 'serverCa') } : {}),
    ...(spec.clientCertFile && spec.clientKeyFile
      ? { cert: read(spec, spec.clientCertFile, 'clientCert'), key: read(spec, spec.clientKeyFile, 'clientKey') }
      : {}),
  };
}

function routeOf(file: ServerRoute | undefined, proxy: ProxyUrl | undefined): { route?: ServerRoute } {
  if (proxy === undefined) return file === undefined ? {} : { route: file };
  return { route: Object.freeze({ ...(file ?? DIRECT_ROUTE), proxy }) };
}

function read(spec: GroupSpec, file: string, field: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(
      'CONFIG_READ',
      `${spec.file}: ${field}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      spec.file,
      field,
    );
  }
}

/**
 * Dials the common port (a control conn or a work conn). With TLS, resolves only once the
 * server is verified: a pinned fingerprint that differs, or a certificate the CA does not
 * vouch for, rejects with ServerTrustError — never a fallback to plaintext.
 */
export async function dialCommon(target: HostPort, transport: ClientTransport, timeoutMs: number): Promise<Socket> {
  const { route } = transport;
  // Through a proxy or a WebSocket, the carrier is set up first; our TLS (and its pin) runs inside it.
  const carrier = route === undefined ? undefined : await dialRoute(target, route, timeoutMs);
  if (transport.kind === 'plain') return carrier === undefined ? dialTcp(target, timeoutMs) : (carrier as Socket);
  const pinned = transport.fingerprint;
  const socket = tlsConnect({
    // TLS over our own TCP socket: it carries allowHalfOpen, which the TLS socket inherits.
    socket: carrier ?? connect({ host: target.host, port: target.port, allowHalfOpen: true }),
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
