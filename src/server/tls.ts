import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { ConfigError, type TransportConfig } from '../config/index.js';
import { certificateFingerprint, peerOf, type ServerTransport } from '../net/index.js';

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
  return { transport: { kind: 'tls', cert, key, ...(clientCa ? { clientCa } : {}) }, fingerprint, created };
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
