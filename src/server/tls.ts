import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { createSecureContext, createServer as createTlsServer, TLSSocket, type SecureContext, type Server as TlsServer } from 'node:tls';
import { fromEvent, merge, Subject, type SchedulerLike } from 'rxjs';
import { ConfigError, DEFAULT_WEBSOCKET_PATH, formatDuration, type TransportConfig } from '../config/index.js';
import { certificateFingerprint, deadline, peerOf, type ServerTransport } from '../net/index.js';
import { acceptWebSocket } from '../net/websocket-upgrade.js';

/*
 * The server's side of TLS, in one place: the key and certificate (read, or created on first
 * start), and the common port's listener that speaks TLS with them.
 */

export interface LoadedTransport {
  transport: ServerTransport;
  /** `sha256:...` of the server certificate, for clients to pin. */
  fingerprint?: string;
  /** True when this call created the key and certificate. */
  created: boolean;
}

/**
 * Reads the common port's TLS material, creating a self-signed key and certificate first
 * when neither file exists (and `create` allows it). A half-present pair is an error, not
 * something to overwrite: it may be a real certificate whose key went missing.
 */
export function loadServerTransport(config: TransportConfig, { create = true } = {}): LoadedTransport {
  if (config.plaintext) return { transport: { kind: 'plain' }, created: false };
  const { certFile, keyFile } = config;
  let created = false;
  const haveCert = existsSync(certFile);
  const haveKey = existsSync(keyFile);
  if (!haveCert && !haveKey && create) {
    createSelfSigned(certFile, keyFile);
    created = true;
  } else if (haveCert !== haveKey) {
    throw new ConfigError(
      'CONFIG_READ',
      `tls: ${haveCert ? keyFile : certFile} is missing (the other file exists; refusing to replace it)`,
      haveCert ? keyFile : certFile,
      haveCert ? 'tls.key' : 'tls.cert',
    );
  }
  const cert = readOrThrow(certFile, 'tls.cert');
  const key = readOrThrow(keyFile, 'tls.key');
  const clientCa = config.clientCaFile ? readOrThrow(config.clientCaFile, 'tls.clientCa') : undefined;
  let fingerprint: string;
  try {
    fingerprint = certificateFingerprint(cert);
  } catch (error) {
    throw new ConfigError('CONFIG_INVALID', `${certFile}: not a PEM certificate: ${(error as Error).message}`, certFile, 'tls.cert');
  }
  return {
    transport: { kind: 'tls', cert, key, ...(clientCa ? { clientCa } : {}), ...(config.websocketPath ? { websocketPath: config.websocketPath } : {}) },
    fingerprint,
    created,
  };
}

/**
 * Uses the system's `openssl` rather than an npm package: it is on every server that runs
 * TLS anyway, is maintained by the OS vendor, and keeps key generation out of our code.
 * EC P-256, valid ten years, names for local use (clients pin the fingerprint anyway).
 */
export function createSelfSigned(certFile: string, keyFile: string): void {
  mkdirSync(dirname(certFile), { recursive: true });
  mkdirSync(dirname(keyFile), { recursive: true });
  const names = ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1'];
  const host = hostname();
  if (/^[a-zA-Z0-9.-]+$/.test(host) && host !== 'localhost') names.unshift(`DNS:${host}`);
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '3650',
        '-subj',
        '/CN=commonserver',
        '-addext',
        `subjectAltName=${names.join(',')}`,
        '-keyout',
        keyFile,
        '-out',
        certFile,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 },
    );
  } catch (error) {
    const detail = (error as { stderr?: Buffer }).stderr?.toString().trim().split('\n').pop() ?? (error as Error).message;
    throw new ConfigError('CONFIG_READ', `cannot create a TLS certificate with openssl (is it installed?): ${detail}`, certFile, 'tls.cert');
  }
  chmodSync(keyFile, 0o600);
}

function readOrThrow(file: string, field: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError('CONFIG_READ', `${file}: cannot read (${field}): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, file, field);
  }
}

/**
 * The common port's listener. `onConn` gets each connection once it is usable: at accept for
 * plain TCP, after the handshake for TLS (a handshake that fails or stalls past
 * `handshakeTimeoutMs` is reported through `onHandshakeError` and never reaches `onConn`).
 * With TLS, a conn whose first byte is a `G` is a WebSocket upgrade (`transport: ws|wss`
 * clients, or a reverse proxy passing theirs on): our TLS then runs inside the WebSocket, and
 * `onConn` gets that TLS socket, with the same peer as the raw conn it came on. `scheduler`
 * is the clock of the first bytes' deadline (virtual in a test); the TLS server's own
 * `handshakeTimeout` runs on Node's.
 */
export function createCommonListener(
  transport: ServerTransport,
  handshakeTimeoutMs: number,
  onConn: (socket: Socket) => void,
  onHandshakeError: (remote: string, error: Error) => void,
  scheduler?: SchedulerLike,
): Server {
  if (transport.kind === 'plain') return createServer({ allowHalfOpen: true }, onConn);
  const options = {
    cert: transport.cert,
    key: transport.key,
    allowHalfOpen: true,
    handshakeTimeout: handshakeTimeoutMs,
    minVersion: 'TLSv1.2',
    ...(transport.clientCa ? { ca: transport.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
  } as const;
  const tlsServer = createTlsServer(options, onConn);
  tlsServer.on('tlsClientError', (error, socket) => {
    onHandshakeError(peerOf(socket), error);
    // Node reports a handshake timeout but leaves a half-open socket (allowHalfOpen) standing:
    // without this, a silent peer would hold its slot forever.
    socket.destroy();
  });
  const upgrades: WebSocketUpgrades = {
    path: transport.websocketPath ?? DEFAULT_WEBSOCKET_PATH,
    secureContext: createSecureContext(options),
    tlsOptions: options,
    handshakeTimeoutMs,
    ...(scheduler === undefined ? {} : { scheduler }),
    onConn,
    onHandshakeError,
  };
  // The listening server is a plain one: it reads the first byte, then hands the conn to the
  // TLS server (which never listens itself) or to the WebSocket upgrade.
  return createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    if (socket.destroyed) return; // refused at accept (the handshake gate)
    sniffFirstByte(socket, tlsServer, upgrades);
  });
}

interface WebSocketUpgrades {
  path: string;
  secureContext: SecureContext;
  tlsOptions: { requestCert?: boolean; rejectUnauthorized?: boolean };
  handshakeTimeoutMs: number;
  scheduler?: SchedulerLike;
  onConn: (socket: Socket) => void;
  onHandshakeError: (remote: string, error: Error) => void;
}

/** `G` of `GET`: a TLS conn starts with 0x16 (a handshake record). */
const HTTP_GET_FIRST_BYTE = 0x47;

/**
 * Reads the conn's first bytes and puts them back for whichever layer reads them. One
 * deadline covers the wait for them and, for an upgrade, the upgrade and the TLS handshake
 * inside it; a TLS conn's handshake is then the TLS server's to time. One verdict per conn:
 * once the deadline has cut it, the upgrade failing on the cut is not reported again.
 */
function sniffFirstByte(socket: Socket, tlsServer: TlsServer, upgrades: WebSocketUpgrades): void {
  const peer = peerOf(socket);
  const settled$ = new Subject<void>();
  let settled = false;
  const settle = (): boolean => {
    if (settled) return false;
    settled = true;
    settled$.next();
    settled$.complete();
    return true;
  };
  deadline(upgrades.handshakeTimeoutMs, merge(settled$, fromEvent(socket, 'close')), upgrades.scheduler).subscribe((ms) => {
    settle();
    // Destroyed already (the server's shutdown sweep): not this peer's fault.
    if (!socket.destroyed) upgrades.onHandshakeError(peer, new Error(`no TLS or WebSocket handshake within ${formatDuration(ms)}`));
    socket.destroy();
  });
  // 'readable' and read(), not 'data': once the listener is gone the socket is in its initial
  // mode again, as the TLS server or the upgrade expects it.
  const onReadable = (): void => {
    const chunk = socket.read() as Buffer | null;
    if (chunk === null) return;
    socket.off('readable', onReadable);
    socket.unshift(chunk);
    if (chunk[0] !== HTTP_GET_FIRST_BYTE) {
      // TLS (or garbage, which the TLS server reports as a failed handshake): its own deadline applies.
      settle();
      tlsServer.emit('connection', socket);
      return;
    }
    void upgradeToTls(socket, peer, upgrades).then(
      (upgraded) => {
        if (!settle()) return void socket.destroy();
        if ('refused' in upgraded) upgrades.onHandshakeError(peer, new Error(`WebSocket upgrade refused: ${upgraded.refused}`));
        else upgrades.onConn(upgraded);
      },
      (error: Error) => {
        if (settle()) upgrades.onHandshakeError(peer, error);
        socket.destroy();
      },
    );
  };
  socket.on('readable', onReadable);
}

/**
 * The WebSocket upgrade, then the TLS handshake inside it; the reason when the upgrade was
 * refused (an HTTP error was sent). Only a conn that finished both reaches the session code.
 */
async function upgradeToTls(socket: Socket, peer: string, upgrades: WebSocketUpgrades): Promise<TLSSocket | { refused: string }> {
  const accepted = await acceptWebSocket(socket, upgrades.path, peer);
  if ('refused' in accepted) return accepted;
  socket.setNoDelay(true);
  socket.setKeepAlive(true, 30_000);
  const tls = new TLSSocket(accepted, { isServer: true, secureContext: upgrades.secureContext, ...upgrades.tlsOptions });
  await new Promise<void>((resolve, reject) => {
    const settle = (error?: Error): void => {
      tls.off('secure', onSecure);
      tls.off('error', settle);
      socket.off('close', onClose);
      if (error === undefined) return resolve();
      // A failed handshake may still report errors while it is torn down.
      tls.on('error', () => {});
      tls.destroy();
      reject(error);
    };
    const onSecure = (): void => settle();
    const onClose = (): void => settle(new Error('closed during the TLS handshake inside the WebSocket'));
    tls.once('secure', onSecure);
    tls.once('error', settle);
    socket.once('close', onClose);
  });
  // A TLSSocket built on a stream checks no client certificate by itself: mutual TLS is enforced here.
  if (upgrades.tlsOptions.rejectUnauthorized === true && !tls.authorized) {
    tls.destroy();
    throw new Error(`TLS handshake failed: ${String(tls.authorizationError)}`);
  }
  // The session code names, counts and limits conns by their peer: the raw conn's, not the stream's (none).
  Object.defineProperties(tls, {
    remoteAddress: { value: socket.remoteAddress },
    remotePort: { value: socket.remotePort },
    remoteFamily: { value: socket.remoteFamily },
  });
  return tls;
}
