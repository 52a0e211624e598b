import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { stringify } from 'yaml';
import type { TestConfigDir } from './configs.js';
import { connectTo } from './net.js';

/** A vhost app entry of a group file, written as a user would. */
export interface VhostAppEntry {
  name: string;
  localPort: number;
  type: 'http' | 'https';
  domains?: string[];
  subdomain?: string;
  locations?: string[];
  hostHeaderRewrite?: string;
  basicAuth?: { user: string; password: string };
}

/** Writes a group file whose apps are vhost apps (and optionally plain TCP apps). */
export function writeVhostGroup(
  config: TestConfigDir,
  name: string,
  secret: string,
  apps: VhostAppEntry[],
  tcp: { name: string; localPort: number }[] = [],
): string {
  const file = join(config.groupsDir, `${name}.yaml`);
  writeFileSync(
    file,
    stringify({
      name,
      secret,
      apps: [
        ...apps.map(({ localPort, ...app }) => ({ ...app, local: `127.0.0.1:${localPort}` })),
        ...tcp.map((app) => ({ name: app.name, local: `127.0.0.1:${app.localPort}`, remotePort: 0 })),
      ],
    }),
  );
  return file;
}

/** What a test web app saw of a request: it answers with this as JSON. */
export interface SeenRequest {
  app: string;
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  bodySha256: string;
  bodyBytes: number;
}

/**
 * A local web app that answers every request with what it saw (as JSON), after reading the
 * whole body; `/big/N` answers N bytes of a repeating pattern, chunked. `port` 0 (the default)
 * lets the system choose; a given one brings a stopped app back where it was.
 */
export async function startWebApp(
  app: string,
  handler?: (req: IncomingMessage, res: import('node:http').ServerResponse) => boolean,
  port = 0,
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (handler?.(req, res) === true) return;
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    req.on('end', () => {
      const big = /^\/big\/(\d+)$/.exec(req.url ?? '');
      if (big) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(pattern(Number(big[1])));
        return;
      }
      const seen: SeenRequest = { app, method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodySha256: hash.digest('hex'), bodyBytes: bytes };
      const body = JSON.stringify(seen);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function pattern(bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + 7) & 0xff;
  return out;
}

/** One HTTP/1.1 response read off a raw socket: status, headers and a Content-Length body. */
export interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

/**
 * Reads exactly one response with a Content-Length body from `socket`, leaving whatever
 * follows it unread: the socket can carry the next request.
 */
export function readResponse(socket: Socket): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = buffer.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const headers = new Map(
        lines.slice(1).map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()] as [string, string]),
      );
      const length = Number(headers.get('content-length') ?? NaN);
      if (Number.isNaN(length)) return finish(new Error(`no Content-Length in ${lines[0]}`));
      if (buffer.length < end + 4 + length) return;
      const rest = buffer.subarray(end + 4 + length);
      finish(undefined, { status, headers, body: buffer.subarray(end + 4, end + 4 + length) });
      if (rest.length > 0) socket.unshift(rest);
    };
    const onClose = (): void => finish(new Error(`closed after ${buffer.length} bytes of a response`));
    const finish = (error?: Error, response?: RawResponse): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (error) reject(error);
      else resolve(response!);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
  });
}

/** A GET on a fresh or given raw socket, on the vhost port. */
export async function rawGet(port: number, host: string, path = '/', extra: string[] = [], socket?: Socket): Promise<RawResponse> {
  const conn = socket ?? (await connectTo(port));
  conn.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra.map((line) => `${line}\r\n`).join('')}\r\n`);
  try {
    return await readResponse(conn);
  } finally {
    if (socket === undefined) conn.destroy();
  }
}

/** Runs curl (Debian's) with `args`; resolves with its exit code, stdout and stderr. */
export function curl(args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['--silent', '--show-error', '--max-time', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr }));
  });
}

/** curl with several URLs of test web apps (`startWebApp`): what each app saw, in order. */
export async function curlSeen(args: string[]): Promise<SeenRequest[]> {
  const { code, stdout, stderr } = await curl(['--write-out', '\n', ...args]);
  if (code !== 0) throw new Error(`curl exited with ${code}: ${stderr}`);
  return stdout
    .toString()
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as SeenRequest);
}

/** A key and certificate for `name`, made by Debian's openssl, as a private host would have. */
export function makeCertificate(name: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-vhost-cert-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=DNS:${name}`,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/** One request a trickle app received, and the app's end of the conn that carried it. */
export interface TrickleRequest {
  path: string;
  socket: Socket;
}

/** A local web app whose conns a test can watch end, a reset told apart from a FIN. */
export interface TrickleApp {
  port: number;
  /** The next request whose path starts with `path` (ask before the request is sent). */
  nextRequest(path: string): Promise<TrickleRequest>;
  close(): Promise<void>;
}

/** What `/stream` promises: far more than a test ever waits for. */
const TRICKLE_PROMISED_BYTES = 1_000_000_000;

/**
 * A web app on raw sockets (plain TCP, or TLS with `certificate`), so that the test holds the
 * app's own end of each conn: `/stream` promises a huge body and sends 1 KiB of it every 50 ms
 * for as long as the conn lives (a user mid-answer); `/wait` never answers (a user waiting for
 * its first byte); anything else gets a short `ok`, keep-alive.
 */
export async function startTrickleApp(certificate?: { cert: string; key: string }): Promise<TrickleApp> {
  const requests = new EventEmitter();
  const sockets = new Set<Socket>();
  const onConn = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    let pending = '';
    const onData = (chunk: Buffer): void => {
      pending += chunk.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const path = pending.split(' ')[1] ?? '/';
        pending = pending.slice(end + 4);
        if (path.startsWith('/stream')) {
          socket.off('data', onData);
          trickle(socket);
        } else if (!path.startsWith('/wait')) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        requests.emit('request', { path, socket });
      }
    };
    socket.on('data', onData);
  };
  const server = certificate
    ? createTlsServer({ cert: readFileSync(certificate.cert), key: readFileSync(certificate.key), allowHalfOpen: true }, onConn)
    : createTcpServer({ allowHalfOpen: true }, onConn);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    nextRequest: (path) =>
      new Promise((resolve) => {
        const onRequest = (request: TrickleRequest): void => {
          if (!request.path.startsWith(path)) return;
          requests.off('request', onRequest);
          resolve(request);
        };
        requests.on('request', onRequest);
      }),
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function trickle(socket: Socket): void {
  socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${TRICKLE_PROMISED_BYTES}\r\n\r\n`);
  const piece = pattern(1024);
  const timer = setInterval(() => {
    if (socket.writable) socket.write(piece);
  }, 50);
  socket.once('close', () => clearInterval(timer));
}
