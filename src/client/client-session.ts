import createDebug from 'debug';
import type { Socket } from 'node:net';
import { asyncScheduler, BehaviorSubject, ReplaySubject, switchMap, takeUntil, type SchedulerLike } from 'rxjs';
import { formatDuration, formatHostPort, type AppSpec, type GroupSpec, type HostPort } from '../config/index.js';
import {
  dialTcp,
  heartbeat,
  joinConns,
  MuxSession,
  MuxStream,
  resetSocket,
  type ClientTransport,
  type ControlChannel,
  type MuxLimits,
  type RelayConn,
  type RelayOptions,
} from '../net/index.js';
import { assertNever, type AppTarget, type GoodbyeCode, type Message, type StartWorkConn, type UserAddress, type VisitRefused } from '../protocol/index.js';
import { servedApps } from './server-apps.js';
import type { EmitClientEvent } from './events.js';
import { healthChanges } from './health-checks.js';
import { awaitStartWorkConn } from './pooled-work-conn.js';
import { ClientUdpSessions } from './udp-sessions.js';
import { proxyHeader } from './proxy-header.js';
import { dialLocalAppEagerly, presentWorkConn } from './work-conn.js';
import { SessionVisits, VisitFailed } from './visits.js';
import type { VisitorSpec } from '../config/index.js';

const debug = createDebug('ntp:client:client-session');

/**
 * A user's channel to the server: a stream the server opened on the mux conn, a pooled work
 * conn its StartWorkConn came on, or (`asked`, a ReqWorkConn) a work conn opened once the
 * local app answered.
 */
type UserChannel = { how: 'mux' | 'pooled'; conn: RelayConn } | { how: 'asked'; open: () => Promise<Socket> };

export interface SessionEnd {
  code?: GoodbyeCode;
  reason: string;
}

export interface ClientSessionOptions {
  channel: ControlChannel;
  spec: GroupSpec;
  server: HostPort;
  transport: ClientTransport;
  sessionId: string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  dialTimeoutMs: number;
  /** Pooled work conns (being opened or idle) a server may make us hold; asks beyond are trimmed. */
  maxPooledWorkConns: number;
  /** Users the server may open on the mux conn at once, and the bytes they may hold unread. */
  muxLimits: MuxLimits;
  emit: EmitClientEvent;
  /** The session's clock (heartbeat, health checks, visits' deadlines): real time by default, virtual in a test. */
  scheduler?: SchedulerLike;
}

/**
 * One logged-in common conn: serves each user the server sends (a mux stream, a pooled work
 * conn's StartWorkConn, a ReqWorkConn) by relaying it to the local target named in this
 * host's own group file, pings the server and watches for its answers.
 * `ended` resolves once, with why the session is over.
 */
export class ClientSession {
  readonly ended: Promise<SessionEnd>;
  private resolveEnded!: (end: SessionEnd) => void;
  /** Emits once, when the session ends, and again to any later subscriber: every pipeline of the session stops on it. */
  private readonly lost$ = new ReplaySubject<SessionEnd>(1);
  /** Every user's channel being relayed: the session's end resets them all. */
  private readonly channels = new Set<RelayConn>();
  /** The session's mux conn, once the server asked for it and it is up. */
  private mux: MuxSession | undefined;
  private muxOpening = false;
  /** Pooled work conns waiting for their StartWorkConn. */
  private readonly idlePooled = new Set<Socket>();
  /** Pooled work conns dialed and not yet idle (or failed). */
  private pooledOpening = 0;
  /** Pooled work conns asked for beyond `maxPooledWorkConns` this session, and not opened. */
  private pooledTrimmed = 0;
  private readonly udpSessions: ClientUdpSessions;
  private readonly visits: SessionVisits;
  private done = false;
  private pingSeq = 0;
  /** The apps served now (the server's within allowLocal, else the host file's); pooled apps' health checks restart with each new set. */
  private readonly spec$: BehaviorSubject<GroupSpec>;
  /** The host's own group file, as last reloaded. */
  private hostSpec: GroupSpec;
  /** The apps of the server's last GroupApps; undefined until one came (an older server sends none). */
  private serverApps: readonly AppTarget[] | undefined;
  /** What the server was last told about each pooled app (a session starts healthy on both ends). */
  private readonly reportedHealth = new Map<string, boolean>();
  // Join proofs use the secret this session logged in with; a new secret applies at the next login.
  private readonly loginSecret: string;

  constructor(private readonly options: ClientSessionOptions) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
    this.spec$ = new BehaviorSubject(options.spec);
    this.hostSpec = options.spec;
    this.loginSecret = options.spec.secret.reveal();
    const { server, transport, sessionId, dialTimeoutMs } = options;
    this.udpSessions = new ClientUdpSessions({
      emit: options.emit,
      send: (message) => options.channel.send(message),
      dialTimeoutMs,
      presentWorkConn: (pairingId) => presentWorkConn({ server, transport, sessionId, pairingId, secret: this.loginSecret, dialTimeoutMs }),
    });
    this.visits = new SessionVisits({
      group: options.spec.name,
      send: (message) => options.channel.send(message),
      timeoutMs: dialTimeoutMs,
      maxPending: options.muxLimits.maxStreams,
      ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
    });
  }

  /**
   * A stream to `visitor`'s private app, which the server opens on the mux conn once the app's
   * owner allows this group; rejects with VisitFailed (the server's refusal, or why not asked).
   */
  visit(visitor: VisitorSpec): Promise<MuxStream> {
    if (this.mux === undefined || this.mux.isClosed) return Promise.reject(new VisitFailed('the mux conn to the server is not up (visitors need mux)', false));
    return this.visits.ask(visitor);
  }

  /** UDP sessions open now (each a local socket and a work conn). */
  get udpSessionCount(): number {
    return this.udpSessions.size;
  }

  /**
   * A reloaded host file, for the next work conns (relays already running are untouched): its
   * allowLocal, and its apps until the server has sent its own. After GroupApps the server's
   * list stays in force, judged against the new allowLocal; the warnings returned name each app
   * of the file that differs from it (undefined before GroupApps).
   */
  updateSpec(spec: GroupSpec): string[] | undefined {
    this.hostSpec = spec;
    if (this.serverApps === undefined) {
      this.spec$.next(spec);
      return undefined;
    }
    return this.serve(this.serverApps, false);
  }

  /**
   * Serves the server's apps like a hot reload (live relays untouched), those outside
   * allowLocal refused: never dialed, and reported to the server with the reason.
   */
  private serve(apps: readonly AppTarget[], received: boolean): string[] {
    this.serverApps = apps;
    const { spec, refused, warnings } = servedApps(this.hostSpec, apps);
    this.spec$.next(spec);
    if (received) this.options.emit({ type: 'apps-received', apps: spec.apps.map((app) => ({ name: app.name, target: formatHostPort(app.local) })), warnings });
    for (const refusal of refused) this.options.emit({ type: 'app-refused', ...refusal });
    this.options.channel.send({ type: 'AppsRefused', apps: refused.map(({ app, reason }) => ({ name: app, reason })) });
    return warnings;
  }

  private get spec(): GroupSpec {
    return this.spec$.value;
  }

  /** The apps this session serves: the server's (inside allowLocal) once its GroupApps came, else the host file's. */
  get servedSpec(): GroupSpec {
    return this.spec$.value;
  }

  /**
   * The session's life once active, until `lost$`: its messages dispatched, a Ping every
   * heartbeatInterval, the server given up after heartbeatTimeout of silence, and each pooled
   * app checked and every change reported, checks restarted from the states last reported
   * when the group file is reloaded (so a reload neither repeats nor loses a verdict).
   * Subscribes for the messages, then lets the frames held since LoginResp through.
   */
  start(): void {
    const { channel, heartbeatIntervalMs, heartbeatTimeoutMs, scheduler = asyncScheduler } = this.options;
    channel.messages$.pipe(takeUntil(this.lost$)).subscribe({
      next: (message) => this.handleMessage(message),
      error: (error: Error & { code?: string }) =>
        this.end(error.code === 'SLOW_PEER' ? { code: 'SLOW_PEER', reason: error.message } : { reason: `protocol error from the server: ${error.message}` }),
      complete: () => this.end({ reason: 'the connection to the server closed' }),
    });
    heartbeat(channel.messages$, { intervalMs: heartbeatIntervalMs, timeoutMs: heartbeatTimeoutMs, scheduler })
      .pipe(takeUntil(this.lost$))
      .subscribe({
        next: (tick) => {
          if (tick.type === 'ping') return channel.send({ type: 'Ping', seq: ++this.pingSeq });
          // Silent because we stopped reading a server that reads nothing of ours.
          const stalled = channel.stalledBytes;
          if (stalled !== undefined)
            return this.end({ code: 'SLOW_PEER', reason: `the server read none of the ${stalled} bytes queued for it for ${formatDuration(tick.silentMs)}` });
          this.options.emit({ type: 'heartbeat-timeout', silentMs: tick.silentMs });
          this.end({ reason: `no heartbeat from the server for ${formatDuration(tick.silentMs)}` });
        },
        // The messages' own subscriber ends the session with the error.
        error: () => {},
      });
    this.spec$
      .pipe(
        switchMap((spec) => healthChanges(spec.apps, (app) => this.reportedHealth.get(app) ?? true, scheduler)),
        takeUntil(this.lost$),
      )
      .subscribe(({ app, healthy, reason }) => {
        this.reportedHealth.set(app, healthy);
        this.options.emit({ type: 'health-changed', app, healthy, reason });
        this.options.channel.send({ type: 'HealthReport', app, healthy, reason });
      });
    channel.release();
  }

  /** Leaves: a Goodbye to the server; every live relay is reset (see `end`). */
  close(reason: string): void {
    this.options.channel.goodbye('SHUTDOWN', reason);
    this.end({ reason }, { destroyChannel: false });
  }

  private handleMessage(message: Message): void {
    switch (message.type) {
      case 'Ping':
        this.options.channel.send({ type: 'Pong', seq: message.seq });
        return;
      case 'Pong':
        this.options.emit({ type: 'heartbeat', seq: message.seq });
        return;
      case 'ReqWorkConn': {
        if (message.protocol === 'udp') return void this.udpSessions.serveRequested(this.appNamed(message.app), message.app, message.pairingId);
        const { app, pairingId, user } = message;
        return void this.serveStream({ app, pairingId, user }, { how: 'asked', open: () => this.present(pairingId) });
      }
      case 'ReqPooledWorkConns':
        return this.handleReqPooledWorkConns(message.pairingIds);
      case 'ReqMuxConn':
        return void this.openMuxConn(message.pairingId);
      case 'AppsChanged':
        this.options.emit({
          type: 'apps-changed',
          opened: message.opened,
          closed: message.closed,
          // Served from the server's GroupApps (next), or refused with a line of their own.
          unknown:
            this.serverApps !== undefined ? [] : message.opened.filter((app) => !this.spec.apps.some((mine) => mine.name === app.name)).map((app) => app.name),
        });
        return;
      case 'GroupApps':
        this.serve(message.apps, true);
        return;
      case 'VisitRefused':
        return this.handleVisitRefused(message);
      case 'Goodbye':
        return this.end({ code: message.code, reason: message.reason });
      case 'AppsRefused':
      case 'Visit':
      case 'Hello':
      case 'Challenge':
      case 'Login':
      case 'LoginResp':
      case 'NewWorkConn':
      case 'StartWorkConn':
      case 'WorkConnFailed':
      case 'HealthReport':
        return this.end({ reason: `protocol error: the server sent ${message.type} on an active session` });
      default:
        return assertNever(message, 'message');
    }
  }

  /** Ours (with its id): that visit fails, and its visitor says why. Without one: a notice that a visitor of ours was refused. */
  private handleVisitRefused(message: VisitRefused): void {
    const { visitId } = message;
    if (visitId !== undefined) return this.visits.onRefused({ ...message, visitId });
    const { visitorGroup, visitor, app, reason } = message;
    this.options.emit({ type: 'visit-refused', visitorGroup, visitor, app, reason });
  }

  /**
   * Opens the pooled work conns asked for, up to `maxPooledWorkConns` being opened or idle:
   * a server asking for more (frp caps its pool at 5; a hostile one asked for 20,000) gets
   * the rest trimmed and reported, not obeyed. Its unused ids expire on the server.
   */
  private handleReqPooledWorkConns(pairingIds: readonly string[]): void {
    const { emit, maxPooledWorkConns: cap } = this.options;
    const room = Math.max(0, cap - this.pooledOpening - this.idlePooled.size);
    const granted = pairingIds.slice(0, room);
    emit({ type: 'pool-requested', count: granted.length });
    if (granted.length < pairingIds.length) {
      const trimmed = pairingIds.length - granted.length;
      this.pooledTrimmed += trimmed;
      emit({ type: 'pool-trimmed', asked: pairingIds.length, opened: granted.length, cap, trimmedInSession: this.pooledTrimmed });
    }
    this.pooledOpening += granted.length;
    // After this turn: a StartWorkConn read in the same turn dials its user's app first.
    setImmediate(() => {
      for (const pairingId of granted) void this.openPooledWorkConn(pairingId);
    });
  }

  /**
   * A pooled work conn: opened now, idle until a user arrives. The local app is dialed only
   * then, so an app that speaks first (or times idle conns out) sees no conn without a user.
   */
  private async openPooledWorkConn(pairingId: string): Promise<void> {
    const workConn = await this.presentOrSkip(pairingId, 'pooled work conn');
    this.pooledOpening--;
    if (workConn === undefined) return;
    if (this.done) return void workConn.destroy();
    return this.awaitUser(workConn);
  }

  /** Waits on an idle pooled work conn for its user, then serves that user; the conn closes with it. */
  private async awaitUser(workConn: Socket): Promise<void> {
    this.idlePooled.add(workConn);
    const start = await awaitStartWorkConn(workConn);
    this.idlePooled.delete(workConn);
    if (start === undefined || this.done) return void workConn.destroy();
    return this.serveStart(start, workConn, 'pooled');
  }

  /** A user or UDP session the server put on a pooled work conn or a mux stream. */
  private serveStart({ app, pairingId, user, protocol, visitor }: StartWorkConn, conn: RelayConn, how: 'mux' | 'pooled'): Promise<void> {
    if (visitor !== undefined) this.options.emit({ type: 'visitor-arrived', app, visitorGroup: visitor, pairingId });
    if (protocol === 'udp') return this.udpSessions.serveOn(this.appNamed(app), app, pairingId, conn, how);
    return this.serveStream({ app, pairingId, user }, { how, conn });
  }

  /**
   * Opens the session's mux conn, which replaces any earlier one (the server asks again only
   * when it lost it). Its streams are users (TCP, or UDP sessions), served like a pooled work conn's.
   * A mux conn that closes only resets its own streams: the server asks for a new one, or ends
   * the session on the control conn.
   */
  private async openMuxConn(pairingId: string): Promise<void> {
    // One at a time: a server repeating ReqMuxConn cannot make this host dial without bound.
    if (this.muxOpening) return void debug('ReqMuxConn ignored: a mux conn is being opened');
    this.muxOpening = true;
    const conn = await this.presentOrSkip(pairingId, 'mux conn');
    this.muxOpening = false;
    if (conn === undefined) return;
    if (this.done) return void conn.destroy();
    this.mux?.destroy('replaced by a new mux conn');
    const mux = new MuxSession(
      conn,
      'acceptor',
      {
        onStream: (stream, start) => (start.visit === true ? this.visits.onStream(stream, start) : void this.serveStart(start, stream, 'mux')),
        onRefused: (refused, cap) => this.options.emit({ type: 'mux-stream-refused', cap, refusedOnConn: refused }),
        onClosed: (reason, error) => {
          if (this.mux === mux) this.mux = undefined;
          debug('mux conn closed: %s', reason);
          if (error !== undefined && !this.done) this.end({ reason: `protocol error from the server on the mux conn: ${error.message}` });
        },
      },
      this.options.muxLimits,
    );
    this.mux = mux;
  }

  /**
   * A conn to the server presenting `pairingId`, or undefined when it could not be opened: the
   * server forgets the id after its pairing timeout and asks again when it needs one.
   */
  private async presentOrSkip(pairingId: string, what: string): Promise<Socket | undefined> {
    try {
      return await this.present(pairingId);
    } catch (error) {
      debug('%s not opened: %s', what, (error as Error).message);
      return undefined;
    }
  }

  /** A work conn to the server presenting `pairingId` with this session's join proof. */
  private present(pairingId: string): Promise<Socket> {
    const { server, transport, sessionId, dialTimeoutMs } = this.options;
    return presentWorkConn({ server, transport, sessionId, pairingId, secret: this.loginSecret, dialTimeoutMs });
  }

  /**
   * Serves one TCP user from the server's word to its record, top to bottom: the local app
   * dialed (before the work conn is opened for a ReqWorkConn, so a dead app costs nothing on
   * the server), the relay, then the user's events. An app with `proxyProtocol` gets the
   * header first, from the user's address the server sent. A user that cannot be served is
   * reset on its channel: a mux stream's RST says why, a work conn's WorkConnFailed does.
   */
  private async serveStream({ app: appName, pairingId, user }: { app: string; pairingId: string; user?: UserAddress }, channel: UserChannel): Promise<void> {
    const { emit } = this.options;
    const kind = { pooled: channel.how === 'pooled', ...(channel.how === 'mux' ? { mux: true } : {}) };
    emit({ type: 'work-conn-requested', app: appName, pairingId, ...kind });
    const refuse = (reason: string, conn?: RelayConn): void => {
      if (conn instanceof MuxStream) return void conn.resetAndDestroy(reason);
      // A reset, not a FIN: a FIN would reach the user as an orderly end of an empty answer.
      if (conn !== undefined) resetSocket(conn);
      this.options.channel.send({ type: 'WorkConnFailed', pairingId, reason });
    };
    const app = this.appNamed(appName); // only targets allowLocal (or our own file) allows: a server cannot steer us anywhere else
    if (app === undefined || app.type === 'udp') return refuse(tcpRefusal(appName, app), channel.how === 'asked' ? undefined : channel.conn);
    const target = formatHostPort(app.local);
    let localConn: Socket;
    let conn: RelayConn;
    if (channel.how === 'asked') {
      try {
        localConn = await dialTcp(app.local, this.options.dialTimeoutMs);
      } catch (error) {
        emit({ type: 'local-dial-failed', app: appName, target, reason: (error as Error).message });
        return refuse(`local app unreachable: ${(error as Error).message}`);
      }
      try {
        conn = await channel.open();
      } catch (error) {
        // A reset: the app must not take a conn its user never reached for a complete, empty one.
        resetSocket(localConn);
        return refuse(`work conn unreachable: ${(error as Error).message}`);
      }
    } else {
      conn = channel.conn;
      // Dialed and joined at once: the user's bytes wait in the socket until it connects.
      localConn = dialLocalAppEagerly(app, this.options.dialTimeoutMs, (reason) => {
        emit({ type: 'local-dial-failed', app: appName, target, reason });
        refuse(`local app unreachable: ${reason}`, conn);
      });
    }
    if (this.done) {
      resetSocket(localConn);
      return void resetSocket(conn);
    }
    emit({ type: 'work-conn-opened', app: appName, pairingId, ...kind });
    const started = Date.now();
    this.channels.add(conn);
    const { bytesIn, bytesOut, error } = await joinConns(localConn, conn, relayOptionsFor(app, user));
    this.channels.delete(conn);
    emit({ type: 'conn-closed', app: appName, bytesIn, bytesOut, durationMs: Date.now() - started, ...(error ? { error: error.message } : {}) });
  }

  /** An app served now (a target the host allowed: its file's, or the server's inside allowLocal). */
  private appNamed(name: string): GroupSpec['apps'][number] | undefined {
    return this.spec.apps.find((candidate) => candidate.name === name);
  }

  private end(end: SessionEnd, { destroyChannel = true } = {}): void {
    if (this.done) return;
    this.done = true;
    this.lost$.next(end);
    this.lost$.complete();
    this.spec$.complete();
    for (const workConn of this.idlePooled) workConn.destroy();
    this.mux?.destroy(`the session ended: ${end.reason}`);
    // The work conns belong to the session: its users are cut, and must see it as a reset.
    for (const conn of this.channels) resetSocket(conn);
    this.channels.clear();
    this.udpSessions.closeAll(`the session ended: ${end.reason}`);
    this.visits.closeAll(`the session ended: ${end.reason}`);
    if (destroyChannel) this.options.channel.destroy();
    debug('session ended: %s', end.reason);
    this.resolveEnded(end);
  }
}

/**
 * What the relay of a local app conn writes first: a PROXY protocol header from the user's
 * address the server sent, for an app that asks for one (the app reads it before any byte of
 * the user's, and an app that speaks first has not been read from yet).
 */
function relayOptionsFor(app: AppSpec, user: UserAddress | undefined): RelayOptions {
  if (app.proxyProtocol === undefined) return {};
  debug(
    '%s: PROXY %s header for %s',
    app.name,
    app.proxyProtocol,
    user === undefined ? 'a user the server did not name' : `${user.remoteAddress} port ${user.remotePort}`,
  );
  return { outerPreamble: proxyHeader(app.proxyProtocol, user) };
}

function tcpRefusal(appName: string, app: GroupSpec['apps'][number] | undefined): string {
  return app === undefined
    ? `app "${appName}" is not in the client's group file`
    : `app "${appName}" is a UDP app in the client's group file, the server asked for TCP`;
}
