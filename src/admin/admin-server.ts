import createDebug from 'debug';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatHostPort, type AdminConfig } from '../config/index.js';
import type { CommonServer } from '../server/index.js';
import { handleApi } from './api.js';
import type { AtomicWriteHooks } from './atomic-write.js';
import { HttpError, sendError } from './http-util.js';
import { ServerMetrics } from './metrics.js';
import { GroupRegistry } from './registry.js';
import { AdminState } from './state.js';

const debug = createDebug('ntp:admin:admin-server');

/** The dashboard's files ship as they are (no build step); from dist/src/admin they are in the source tree. */
const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src', 'admin', 'dashboard');
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};
const SSE_KEEPALIVE_MS = 15_000;

export interface AdminServerOptions {
  server: CommonServer;
  config: AdminConfig;
  groupsDir: string;
  env?: NodeJS.ProcessEnv;
  /** Test seam for the registry's atomic writes. */
  writeHooks?: AtomicWriteHooks;
}

/**
 * The admin surface of a commonserver: JSON API under /api, the event stream at /api/events
 * (server-sent events), Prometheus text at /metrics, and the dashboard at /.
 */
export class AdminServer {
  readonly registry: GroupRegistry;
  readonly state: AdminState;
  readonly metrics: ServerMetrics;
  private readonly http: Server;
  private readonly streams = new Set<ServerResponse>();
  private readonly tokenDigest: Buffer | undefined;

  constructor(private readonly options: AdminServerOptions) {
    this.registry = new GroupRegistry({ server: options.server, groupsDir: options.groupsDir, ...(options.env ? { env: options.env } : {}), ...(options.writeHooks ? { hooks: options.writeHooks } : {}) });
    this.state = new AdminState(options.server);
    this.metrics = new ServerMetrics(options.server);
    this.tokenDigest = options.config.token === undefined ? undefined : digest(options.config.token.reveal());
    this.http = createServer((req, res) => void this.onRequest(req, res));
    this.http.on('clientError', (_error, socket) => socket.destroy());
  }

  async listen(): Promise<AddressInfo> {
    const { bind } = this.options.config;
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen({ host: bind.host, port: bind.port }, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    this.http.on('error', (error) => debug('admin server error: %s', error.message));
    return this.http.address() as AddressInfo;
  }

  url(): string {
    const { address, port } = this.http.address() as AddressInfo;
    return `http://${formatHostPort({ host: address, port })}`;
  }

  async close(): Promise<void> {
    for (const stream of this.streams) stream.end();
    this.state.close();
    this.metrics.close();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    try {
      if (url.pathname.startsWith('/api/') || url.pathname === '/metrics') {
        this.authorize(req, url);
        if (url.pathname === '/metrics') return await this.serveMetrics(req, res);
        if (url.pathname === '/api/events') return this.serveEvents(req, res);
        if (await handleApi({ server: this.options.server, registry: this.registry, state: this.state }, req, res, url.pathname)) return;
        throw new HttpError(404, 'NOT_FOUND', `no route ${url.pathname}`);
      }
      await this.serveDashboard(req, res, url.pathname);
    } catch (error) {
      const failure = error instanceof HttpError ? error : new HttpError(500, 'INTERNAL', (error as Error).message);
      if (failure.status === 500) debug('%s %s failed: %s', req.method, url.pathname, failure.message);
      if (!res.headersSent) sendError(res, failure);
      else res.destroy();
    }
  }

  /** A bearer token in the Authorization header, or `?token=` (EventSource cannot send headers). */
  private authorize(req: IncomingMessage, url: URL): void {
    if (this.tokenDigest === undefined) return;
    const header = req.headers.authorization;
    const given = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : url.searchParams.get('token');
    if (given === null || given === undefined || !timingSafeEqual(digest(given), this.tokenDigest)) {
      throw new HttpError(401, 'UNAUTHORIZED', 'a valid admin token is required (Authorization: Bearer TOKEN)');
    }
  }

  private async serveMetrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not supported on /metrics`);
    const text = await this.metrics.text();
    res.writeHead(200, { 'content-type': this.metrics.contentType, 'cache-control': 'no-store' });
    res.end(text);
  }

  /** Streams every server event as it happens; one `event:` per ServerEvent type. */
  private serveEvents(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not supported on /api/events`);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(': connected\n\n');
    this.streams.add(res);
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), SSE_KEEPALIVE_MS);
    const subscription = this.options.server.events$.subscribe({
      next: (event) => res.write(`event: ${event.type}\ndata: ${JSON.stringify({ ...event, at: new Date().toISOString() })}\n\n`),
      complete: () => res.end(),
    });
    res.once('close', () => {
      clearInterval(keepalive);
      subscription.unsubscribe();
      this.streams.delete(res);
    });
  }

  private async serveDashboard(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not supported on ${path}`);
    const name = path === '/' ? 'index.html' : normalize(path).replace(/^[/\\]+/, '');
    const type = CONTENT_TYPES[name.slice(name.lastIndexOf('.'))];
    // Only the flat list of dashboard files: no directories, no traversal.
    if (type === undefined || name.includes('/') || name.includes('\\') || name.startsWith('.')) {
      throw new HttpError(404, 'NOT_FOUND', `no page ${path}`);
    }
    let body: Buffer;
    try {
      body = await readFile(join(DASHBOARD_DIR, name));
    } catch {
      throw new HttpError(404, 'NOT_FOUND', `no page ${path}`);
    }
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', 'content-security-policy': "default-src 'self'" });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
