import createDebug from 'debug';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { interval, type Subscription } from 'rxjs';
import { packageFiles } from '../package-files.js';
import { ADMIN_DEFAULT_LIMITS, formatHostPort, type AdminSettings, type AdminLimits } from '../config/index.js';
import type { ClusterView, CommonServer, GroupRegistry } from '../server/index.js';
import { handleApi } from './api.js';
import { EventStreams } from './event-stream.js';
import { HttpError, parseRequestTarget, sendError, type RequestTarget } from './http-util.js';
import { ServerMetrics } from './metrics.js';
import { EVENTS_PATH, RequestGuard } from './request-guard.js';
import { AdminState } from './state.js';
import { TrafficHistory } from './traffic-history.js';

const debug = createDebug('ntp:admin:admin-server');

/** The dashboard's files ship as they are (no build step), in the source tree beside dist/. */
const DASHBOARD_DIR = 'src/admin/dashboard';
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
/** How often the traffic history is written (and at close): a crash loses at most this much. */
const HISTORY_SAVE_EVERY_MS = 60_000;
const REFUSALS: ReadonlySet<HttpError['code']> = new Set(['HOST_NOT_ALLOWED', 'ORIGIN_NOT_ALLOWED', 'UNSUPPORTED_MEDIA_TYPE', 'BAD_URL']);
/** Dashboard files: a flat list, so no name can reach a directory or a dot file. */
const DASHBOARD_FILE = /^[a-z0-9][a-z0-9-]*\.(?:html|js|css|svg)$/;

export interface AdminServerOptions {
  server: CommonServer;
  config: AdminSettings;
  /** Where group changes go: the server's groups directory, or etcd in a cluster. */
  registry: GroupRegistry;
  /** A cluster node: the API and dashboard show every node and where each group is active. */
  cluster?: ClusterView;
  /** `sha256:…` of the common port's certificate (undefined: plaintext): host files pin it. */
  fingerprint?: string;
  /** Where the traffic history survives restarts (see TrafficHistory); none: in memory only. */
  historyFile?: string;
  /** Bytes an event stream subscriber may have queued before it is dropped (default 1 MiB). */
  maxEventQueueBytes?: number;
}

/**
 * The admin surface of a commonserver: JSON API under /api, the event stream at /api/events
 * (server-sent events), Prometheus text at /metrics, and the dashboard at /.
 */
export class AdminServer {
  readonly registry: GroupRegistry;
  readonly state: AdminState;
  readonly metrics: ServerMetrics;
  readonly eventStreams: EventStreams;
  readonly history: TrafficHistory;
  private readonly http: Server;
  private readonly historyFeed: Subscription;
  private readonly guard: RequestGuard;
  private refusedConnections = 0;

  constructor(private readonly options: AdminServerOptions) {
    this.registry = options.registry;
    this.history = new TrafficHistory(options.historyFile === undefined ? {} : { file: options.historyFile });
    this.historyFeed = this.feedHistory();
    this.state = new AdminState(options.server, options.cluster, this.history);
    this.metrics = new ServerMetrics(options.server, options.cluster);
    this.eventStreams = new EventStreams(options.server, options.maxEventQueueBytes);
    this.guard = new RequestGuard(options.config, () => (this.http.address() as AddressInfo).port);
    const limits: AdminLimits = { ...ADMIN_DEFAULT_LIMITS, ...definedOnly(options.config) };
    this.http = createServer({
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // Node looks for late headers and requests only this often (30 s by default), which would
      // let a slow sender hold a connection far past headersTimeout.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    });
    this.http.maxConnections = limits.maxConnections;
    this.http.on('request', (req: IncomingMessage, res: ServerResponse) => void this.onRequest(req, res));
    this.http.on('drop', () => {
      this.refusedConnections += 1;
      debug('admin connection refused: %d open is the cap (admin.maxConnections); %d refused so far', limits.maxConnections, this.refusedConnections);
    });
    this.http.on('clientError', onClientError);
  }

  /** Connections closed on arrival because the cap was reached. */
  get connectionsRefused(): number {
    return this.refusedConnections;
  }

  async listen(): Promise<AddressInfo> {
    const { bind } = this.options.config;
    await this.history.load();
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
    this.historyFeed.unsubscribe();
    await this.history.save();
    this.eventStreams.close();
    this.state.close();
    this.metrics.close();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  /** Traffic of registered apps into the history, saved once a minute; removed groups and apps forgotten. */
  private feedHistory(): Subscription {
    const { server } = this.options;
    const feed = server.observe('traffic-history', (event) => {
      if (event.type === 'traffic') {
        if (server.readyGroup.get(event.group)?.apps.some((app) => app.name === event.app))
          this.history.add(event.group, event.app, event.bytesIn, event.bytesOut);
      } else if (event.type === 'group-deregistered') this.history.forget(event.group);
      else if (event.type === 'group-updated') {
        const spec = server.readyGroup.get(event.group);
        if (spec !== undefined) this.history.forget(event.group, new Set(spec.apps.map((app) => app.name)));
      }
    });
    feed.add(interval(HISTORY_SAVE_EVERY_MS).subscribe(() => void this.history.save()));
    return feed;
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let target: RequestTarget | undefined;
    try {
      target = parseRequestTarget(req.url);
      this.guard.check(req);
      const { path } = target;
      if (path.startsWith('/api/') || path === '/metrics') {
        this.guard.authorize(req, target);
        if (path === '/metrics') return await this.serveMetrics(req, res);
        if (path === EVENTS_PATH) return this.serveEvents(req, res);
        if (
          await handleApi(
            {
              server: this.options.server,
              registry: this.registry,
              state: this.state,
              history: this.history,
              tokenRequired: this.options.config.token !== undefined,
              ...(this.options.cluster ? { cluster: this.options.cluster } : {}),
              ...(this.options.fingerprint === undefined ? {} : { fingerprint: this.options.fingerprint }),
            },
            req,
            res,
            target,
          )
        )
          return;
        throw new HttpError(404, 'NOT_FOUND', `no route ${path}`);
      }
      this.serveDashboard(req, res, target);
    } catch (error) {
      const failure = error instanceof HttpError ? error : new HttpError(500, 'INTERNAL', (error as Error).message);
      // Never the query: it may hold the token.
      const where = (target?.path ?? (req.url ?? '').split('?')[0]!).slice(0, 200);
      if (failure.status === 500) debug('%s %s failed: %s', req.method, where, failure.message);
      // What a hostile page or client would cause: worth a line when someone asks why a request bounced.
      else if (REFUSALS.has(failure.code)) debug('%s %s from %s refused: %s', req.method, where, req.socket.remoteAddress, failure.message);
      if (!res.headersSent) sendError(res, failure);
      else res.destroy();
    }
  }

  private async serveMetrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not supported on /metrics`);
    // HEAD (a probe: is it up, is my token right) costs no collection.
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-type': this.metrics.contentType, 'cache-control': 'no-store' });
      res.end();
      return;
    }
    const text = await this.metrics.text();
    res.writeHead(200, { 'content-type': this.metrics.contentType, 'cache-control': 'no-store' });
    res.end(text);
  }

  private serveEvents(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not supported on ${EVENTS_PATH}`);
    this.eventStreams.serve(res);
  }

  private serveDashboard(req: IncomingMessage, res: ServerResponse, { path, segments }: RequestTarget): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not supported on ${path}`);
    // Browsers ask for /favicon.ico whatever the page links: the same icon answers.
    const name = path === '/' ? 'index.html' : path === '/favicon.ico' ? 'favicon.svg' : segments.length === 2 ? segments[1]! : '';
    const type = CONTENT_TYPES[name.slice(name.lastIndexOf('.'))];
    if (type === undefined || !DASHBOARD_FILE.test(name)) throw new HttpError(404, 'NOT_FOUND', `no page ${path}`);
    let body: Buffer;
    try {
      body = packageFiles().read(`${DASHBOARD_DIR}/${name}`);
    } catch {
      throw new HttpError(404, 'NOT_FOUND', `no page ${path}`);
    }
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', 'content-security-policy': "default-src 'self'" });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

/**
 * A request Node's parser refused (bad bytes in the request line or headers, headers too
 * large, too slow): answered with a status when the socket can still take one, then closed.
 */
function onClientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? '408 Request Timeout'
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : '400 Bad Request';
  debug('admin request refused by the HTTP parser: %s (%s)', status, error.code);
  // As Node's own handler does: the answer goes out with the socket's last write.
  socket.write(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  socket.destroy();
}

/** The limits set in `config`, without the keys left undefined (which would hide the defaults). */
function definedOnly(config: AdminSettings): Partial<AdminLimits> {
  const limits: Partial<Record<keyof AdminLimits, number>> = {};
  for (const key of Object.keys(ADMIN_DEFAULT_LIMITS) as (keyof AdminLimits)[]) {
    const value = config[key];
    if (value !== undefined) limits[key] = value;
  }
  return limits;
}
