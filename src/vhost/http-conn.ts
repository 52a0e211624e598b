import createDebug from 'debug';
import type { Socket } from 'node:net';
import { fromEvent, timer, type Subscription } from 'rxjs';
import { deadline, resetSocket } from '../net/index.js';
import { BodyFramer } from './body-framer.js';
import { bodyLength, hasToken, headEnd, HeadError, headerValues, parseRequestHead, parseResponseHead, type RequestHead } from '../net/http-head.js';
import { rewriteResponseHead } from './header-rewrite.js';
import { errorPage } from './pages.js';
import { authorized, clientIp, rewriteHead } from './request-rewrite.js';
import { requestTarget } from './request-target.js';
import type { VhostRouter, VhostTarget } from './router.js';
import { VirtualConn, type VirtualConnOwner } from './virtual-conn.js';

const debug = createDebug('ntp:server:vhost-http');

/** Apps one user conn keeps a conn open to between requests (a browser's page on a few hosts). */
const MAX_IDLE_BACKENDS = 8;
const EMPTY = Buffer.alloc(0);

/** A conn to one app for one user conn, reused by that user's next request to the same app. */
interface Backend {
  readonly conn: VirtualConn;
  readonly target: VhostTarget;
}

/** One request and its response, from the request head to the last byte of the response. */
interface Exchange {
  readonly backend: Backend;
  readonly method: string;
  readonly upgrade: boolean;
  keepAlive: boolean;
  readonly request: BodyFramer;
  responseHead: Buffer;
  response?: BodyFramer;
  responseCloses: boolean;
  /** Some of the response reached the user: a failure now can only be a reset. */
  answered: boolean;
  /** The app sent bytes past its response: its conn is not reused. */
  spoiled: boolean;
}

type Phase = 'head' | 'body' | 'waiting' | 'upgraded' | 'closing';

export interface HttpConnOptions {
  readonly router: VhostRouter;
  readonly headersTimeoutMs: number;
  /** The vhost answered a request itself (404, 503, 401...): for events and metrics. */
  readonly onRefused: (remote: string, status: number, reason: string) => void;
}

/**
 * One user conn on the HTTP vhost port. Each request head is read here (bounded, strict),
 * routed by its Host and path, given the X-Forwarded headers, and sent with its body to the
 * app's conn; the response comes back byte for byte, followed only as far as needed to know
 * where it ends. A keep-alive conn may carry requests for different apps, one at a time; an
 * Upgrade (WebSocket) turns the conn into a plain relay after the app's 101.
 */
export class HttpUserConn implements VirtualConnOwner {
  private phase: Phase = 'head';
  private buffer: Buffer = EMPTY;
  private exchange: Exchange | undefined;
  private readonly idle = new Map<string, Backend>();
  private headTimer: Subscription | undefined;
  private userEnded = false;

  constructor(
    private readonly socket: Socket,
    private readonly options: HttpConnOptions,
  ) {
    socket.on('data', (chunk: Buffer) => this.onUserData(chunk));
    socket.on('end', () => this.onUserEnd());
    socket.on('error', (error) => debug('user conn %s: %s', socket.remoteAddress, error.message));
    socket.on('close', () => this.onUserClose());
    this.startHeadTimer();
  }

  private onUserData(chunk: Buffer): void {
    if (this.phase === 'upgraded') {
      if (!this.exchange!.backend.conn.send(chunk)) this.socket.pause();
      return;
    }
    if (this.phase === 'closing') return; // read and dropped, so that our answer is not lost to a reset
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    this.pump();
  }

  private pump(): void {
    try {
      if (this.phase === 'head') {
        const end = headEnd(this.buffer, 400);
        if (end === undefined) return;
        const head = parseRequestHead(this.buffer.subarray(0, end));
        const length = bodyLength(head.headers, 'request');
        this.buffer = this.buffer.subarray(end);
        this.headTimer?.unsubscribe();
        this.startExchange(head, new BodyFramer(length, 400));
      }
      if (this.phase === 'body') this.sendBody();
      if (this.phase === 'waiting') this.socket.pause();
    } catch (error) {
      if (!(error instanceof HeadError)) throw error;
      debug('bad request from %s: %s', this.socket.remoteAddress, error.message);
      this.failExchange(error.status, error.message);
    }
  }

  private sendBody(): void {
    const exchange = this.exchange!;
    if (this.buffer.length > 0 && !exchange.request.done) {
      const taken = exchange.request.take(this.buffer);
      const piece = this.buffer.subarray(0, taken);
      this.buffer = this.buffer.subarray(taken);
      if (!exchange.backend.conn.send(piece)) this.socket.pause();
    }
    if (!exchange.request.done) return;
    if (exchange.response?.done === true) return this.onResponseDone(exchange);
    this.phase = 'waiting';
  }

  private startExchange(head: RequestHead, request: BodyFramer): void {
    const requested = requestTarget(head);
    const { host } = requested;
    const route = this.options.router.resolve('http', host, requested.path);
    if (route.kind === 'ambiguous') return this.reply(400, `a path of ${host} that apps may read under another location`);
    if (route.kind === 'unknown') return this.reply(404, `unknown name ${host}`);
    if (route.kind === 'offline') return this.reply(503, `offline name ${host}`);
    const { target } = route;
    const vhost = target.spec.vhost!;
    if (!target.admits(this.socket.remoteAddress)) return this.reply(403, `not in the allow list of ${target.label}`);
    if (vhost.basicAuth !== undefined && !authorized(head, vhost.basicAuth)) {
      return this.reply(401, `no valid credentials for ${host}`, [`WWW-Authenticate: Basic realm="${host}", charset="UTF-8"`]);
    }
    const backend = this.backendFor(target);
    if (backend === undefined) return this.reply(503, `${target.label} refused the conn`);
    const connection = (token: string): boolean => hasToken(head.headers, 'connection', token);
    this.exchange = {
      backend,
      method: head.method,
      upgrade: connection('upgrade') && headerValues(head.headers, 'upgrade').length > 0,
      keepAlive: head.minor === 1 ? !connection('close') : connection('keep-alive'),
      request,
      responseHead: EMPTY,
      responseCloses: false,
      answered: false,
      spoiled: false,
    };
    this.phase = 'body';
    backend.conn.send(rewriteHead(head, requested, vhost, { ip: clientIp(this.socket), vhostPort: this.socket.localPort }));
  }

  /** The user's conn to this app from a previous request, or a new one (undefined if refused). */
  private backendFor(target: VhostTarget): Backend | undefined {
    const kept = this.idle.get(target.label);
    this.idle.delete(target.label);
    if (kept !== undefined && kept.target === target && !kept.conn.destroyed && !kept.conn.writableEnded) return kept;
    if (kept !== undefined) kept.conn.finish();
    const backend: Backend = { conn: new VirtualConn(this, this.socket.remoteAddress, this.socket.remotePort), target };
    const refusal = target.connect(backend.conn);
    if (refusal === undefined && !backend.conn.destroyed) return backend;
    debug('%s refused a conn: %s', target.label, refusal ?? 'the app is not active');
    return undefined;
  }

  // --- The app's side (VirtualConnOwner) ---

  onAppData(conn: VirtualConn, chunk: Buffer, done: () => void): void {
    const exchange = this.exchange;
    if (exchange === undefined || exchange.backend.conn !== conn) {
      // An app that speaks with no request pending has nothing to say to this user.
      debug('bytes from an app with no request pending: its conn is closed');
      this.dropIdle(conn);
      conn.destroy(new Error('the app sent bytes with no request pending'));
      return done();
    }
    if (this.phase === 'upgraded') return this.writeUser(chunk, done);
    try {
      this.writeUser(this.takeResponse(exchange, chunk), done);
    } catch (error) {
      if (!(error instanceof HeadError)) throw error;
      debug('bad response from %s: %s', exchange.backend.target.label, error.message);
      this.failExchange(502, `bad response from ${exchange.backend.target.label}: ${error.message}`);
      done();
    }
  }

  /** Follows the response through `chunk`: returns the bytes to relay, handles its end. */
  private takeResponse(exchange: Exchange, chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let rest = chunk;
    while (exchange.response === undefined) {
      exchange.responseHead = exchange.responseHead.length === 0 ? rest : Buffer.concat([exchange.responseHead, rest]);
      const end = headEnd(exchange.responseHead, 502);
      if (end === undefined) return joined(out);
      const headBytes = exchange.responseHead.subarray(0, end);
      rest = exchange.responseHead.subarray(end);
      exchange.responseHead = EMPTY;
      const head = parseResponseHead(headBytes);
      // Interim answers (100 Continue) and a 101 pass as they came: the rules are for the response itself.
      out.push(head.status < 200 ? headBytes : rewriteResponseHead(headBytes, head, exchange.backend.target.spec.vhost?.responseHeaders));
      if (head.status === 101) {
        if (!exchange.upgrade) throw new HeadError(502, '101 without an Upgrade request');
        this.upgrade(exchange);
        out.push(rest);
        return joined(out);
      }
      if (head.status >= 100 && head.status < 200) continue; // 100 Continue and the like: the final answer follows
      exchange.response = new BodyFramer(bodyLength(head.headers, { status: head.status, requestMethod: exchange.method }), 502);
      const connection = (token: string): boolean => hasToken(head.headers, 'connection', token);
      exchange.responseCloses = exchange.response.untilClose || connection('close') || (head.minor === 0 && !connection('keep-alive'));
    }
    const taken = exchange.response.take(rest);
    out.push(rest.subarray(0, taken));
    if (taken < rest.length) exchange.spoiled = true;
    if (exchange.response.done) process.nextTick(() => this.onResponseDone(exchange));
    return joined(out);
  }

  private upgrade(exchange: Exchange): void {
    this.phase = 'upgraded';
    const pending = this.buffer;
    this.buffer = EMPTY;
    if (pending.length > 0) exchange.backend.conn.send(pending);
    if (this.userEnded) exchange.backend.conn.finish();
    else this.socket.resume();
  }

  onAppEnd(conn: VirtualConn): void {
    const exchange = this.exchange;
    if (exchange === undefined || exchange.backend.conn !== conn) {
      this.dropIdle(conn);
      conn.finish();
      return;
    }
    if (this.phase === 'upgraded') {
      this.socket.end(); // half-close: the user may still send
      return;
    }
    if (exchange.response?.untilClose === true) return this.onResponseDone(exchange);
    debug('%s closed its conn before its response was complete', exchange.backend.target.label);
    this.failExchange(502, `${exchange.backend.target.label} closed its conn mid-response`);
  }

  onFault(conn: VirtualConn, error: Error): void {
    if (this.exchange?.backend.conn !== conn) return this.dropIdle(conn);
    debug('conn to %s failed: %s', this.exchange.backend.target.label, error.message);
    this.failExchange(502, `the conn to ${this.exchange.backend.target.label} failed: ${error.message}`);
  }

  onWantMore(conn: VirtualConn): void {
    if (this.exchange?.backend.conn === conn && (this.phase === 'body' || this.phase === 'upgraded')) this.socket.resume();
  }

  private writeUser(data: Buffer, done: () => void): void {
    if (data.length === 0) return done();
    this.exchange!.answered = true;
    if (this.socket.write(data)) done();
    else this.socket.once('drain', done);
  }

  private onResponseDone(exchange: Exchange): void {
    if (this.exchange !== exchange) return;
    if (!exchange.request.done) {
      // Answered before the request was through (an early 413, a redirect): the rest of the
      // request cannot be told apart from a next one, so the conn ends with this answer.
      exchange.keepAlive = false;
    }
    this.exchange = undefined;
    const reusable = exchange.keepAlive && !exchange.responseCloses && !this.userEnded;
    if (!reusable) return this.close(exchange.backend);
    if (exchange.spoiled) exchange.backend.conn.destroy(new Error('the app sent bytes past its response'));
    else this.keepIdle(exchange.backend);
    this.phase = 'head';
    this.startHeadTimer();
    this.socket.resume();
    if (this.buffer.length > 0) this.pump();
  }

  private keepIdle(backend: Backend): void {
    this.idle.set(backend.target.label, backend);
    if (this.idle.size <= MAX_IDLE_BACKENDS) return;
    const [oldest] = this.idle.values();
    this.idle.delete(oldest!.target.label);
    oldest!.conn.finish();
  }

  private dropIdle(conn: VirtualConn): void {
    for (const [label, backend] of this.idle) if (backend.conn === conn) this.idle.delete(label);
  }

  // --- Endings ---

  /** Our own answer (no app involved, or none reached yet), then a clean close. */
  private reply(status: number, reason: string, extra: readonly string[] = []): void {
    debug('%d for %s: %s', status, this.socket.remoteAddress, reason);
    this.options.onRefused(`${this.socket.remoteAddress}:${this.socket.remotePort}`, status, reason);
    this.phase = 'closing';
    this.headTimer?.unsubscribe();
    this.buffer = EMPTY;
    this.socket.resume();
    this.socket.end(errorPage(status, extra));
    this.finishIdle();
    this.lingerAfterEnd();
  }

  /**
   * The exchange cannot go on: our own error page if the user has seen nothing of the
   * response yet, else a reset (a truncated answer must never look complete).
   */
  private failExchange(status: number, reason: string): void {
    const exchange = this.exchange;
    this.exchange = undefined;
    if (exchange !== undefined && !exchange.backend.conn.destroyed) exchange.backend.conn.destroy(new Error(`the exchange failed (${status})`));
    if (exchange?.answered === true || this.phase === 'upgraded') {
      debug('reset %s: %s', this.socket.remoteAddress, reason);
      this.phase = 'closing';
      this.teardown();
      return;
    }
    this.reply(status, reason);
  }

  /** Ends the user conn after the last response, and the app conns with it. */
  private close(backend: Backend): void {
    this.phase = 'closing';
    this.buffer = EMPTY;
    this.socket.resume();
    this.socket.end();
    backend.conn.finish();
    this.finishIdle();
    this.lingerAfterEnd();
  }

  /**
   * After our FIN, a user that never sends its own would hold the conn forever (half-open
   * conns are allowed): once our last bytes are with the kernel, it gets headersTimeout more.
   * A plain close then: the kernel still delivers what it holds.
   */
  private lingerAfterEnd(): void {
    const socket = this.socket;
    const { headersTimeoutMs } = this.options;
    socket.once('finish', () => deadline(headersTimeoutMs, fromEvent(socket, 'close')).subscribe(() => socket.destroy()));
  }

  private finishIdle(): void {
    for (const backend of this.idle.values()) backend.conn.finish();
    this.idle.clear();
  }

  /** Resets the user and every app conn. */
  private teardown(): void {
    this.headTimer?.unsubscribe();
    resetSocket(this.socket);
    const exchange = this.exchange;
    this.exchange = undefined;
    exchange?.backend.conn.destroy(new Error('the user conn failed'));
    for (const backend of this.idle.values()) backend.conn.destroy(new Error('the user conn failed'));
    this.idle.clear();
  }

  private onUserEnd(): void {
    this.userEnded = true;
    const exchange = this.exchange;
    switch (this.phase) {
      case 'upgraded':
        return exchange!.backend.conn.finish();
      case 'body':
      case 'waiting':
        // The request ends here, complete or not; the answer still comes, then the conn closes.
        exchange!.keepAlive = false;
        if (!exchange!.request.done) exchange!.backend.conn.finish();
        return;
      case 'head':
        this.headTimer?.unsubscribe();
        this.phase = 'closing';
        this.socket.end();
        this.finishIdle();
        return;
      case 'closing':
        return;
    }
  }

  private onUserClose(): void {
    this.headTimer?.unsubscribe();
    const exchange = this.exchange;
    this.exchange = undefined;
    // Closed with a request or a relay still open: the app must not take that for a clean end.
    if (exchange !== undefined && !(exchange.backend.conn.readableEnded && exchange.backend.conn.writableFinished)) {
      exchange.backend.conn.destroy(new Error('the user conn closed'));
    }
    this.finishIdle();
  }

  private startHeadTimer(): void {
    this.headTimer?.unsubscribe();
    this.headTimer = timer(this.options.headersTimeoutMs).subscribe(() => {
      if (this.phase !== 'head') return;
      // Idle between requests: a quiet close. Part of a head: the slowloris answer.
      if (this.buffer.length === 0) {
        this.phase = 'closing';
        this.socket.end();
        this.finishIdle();
      } else this.reply(408, `no complete request head within ${this.options.headersTimeoutMs}ms`);
    });
  }
}

/** One buffer of `parts`, copied only when there are several (a body chunk is passed as it came). */
function joined(parts: Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
