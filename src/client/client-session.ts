import createDebug from 'debug';
import type { Socket } from 'node:net';
import { interval, type Subscription } from 'rxjs';
import { formatHostPort, type AppSpec, type GroupSpec, type HostPort } from '../config/index.js';
import {
  heartbeatWatchdog,
  joinConns,
  joinReusable,
  MuxSession,
  resetSocket,
  WorkConnTracker,
  type ClientTransport,
  type ControlChannel,
  type MuxLimits,
  type MuxStream,
  type RelayOptions,
  type RelayResult,
  type ReusableRelay,
} from '../net/index.js';
import { assertNever, type GoodbyeCode, type Message, type ReqWorkConn, type StartWorkConn, type UserAddress } from '../protocol/index.js';
import type { EmitClientEvent } from './events.js';
import { healthChanges } from './health-checks.js';
import { awaitStartWorkConn } from './pooled-work-conn.js';
import { ClientUdpSessions } from './udp-sessions.js';
import { proxyHeader } from './proxy-header.js';
import { dialLocalAppEagerly, openWorkConn, presentWorkConn } from './work-conn.js';

const debug = createDebug('ntp:client:client-session');

/** WorkConnEnds kept for relays not started yet; far more than users can be in flight. */
const MAX_EARLY_ENDS = 4096;

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
}

/**
 * One logged-in common conn: answers ReqWorkConn by relaying to the local target named in
 * this host's own group file, pings the server and watches for its answers.
 * `ended` resolves once, with why the session is over.
 */
export class ClientSession {
  readonly ended: Promise<SessionEnd>;
  private resolveEnded!: (end: SessionEnd) => void;
  private readonly subscriptions: Subscription[] = [];
  /** Live relays by pairing id: the server's WorkConnEnd names one; the session's end resets them all. */
  private readonly relays = new Map<string, ReusableRelay>();
  /** The session's mux conn, once the server asked for it and it is up. */
  private mux: MuxSession | undefined;
  private muxOpening = false;
  /** Pooled work conns waiting for their StartWorkConn. */
  private readonly idlePooled = new Set<Socket>();
  /**
   * WorkConnEnds that overtook their StartWorkConn (they travel on the common conn, the start
   * on the work conn): kept until the relay exists.
   */
  private readonly earlyEnds = new Map<string, number>();
  /** Pooled work conns dialed and not yet idle (or failed). */
  private pooledOpening = 0;
  /** Pooled work conns asked for beyond `maxPooledWorkConns` this session, and not opened. */
  private pooledTrimmed = 0;
  private readonly udpSessions: ClientUdpSessions;
  private done = false;
  private pingSeq = 0;
  private spec: GroupSpec;
  /** Health checks of the pooled apps, restarted when the group file is reloaded. */
  private healthChecks: Subscription | undefined;
  /** What the server was last told about each pooled app (a session starts healthy on both ends). */
  private readonly reportedHealth = new Map<string, boolean>();
  // Join proofs use the secret this session logged in with; a new secret applies at the next login.
  private readonly loginSecret: string;

  constructor(private readonly options: ClientSessionOptions) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
    this.spec = options.spec;
    this.loginSecret = options.spec.secret.reveal();
    const { server, transport, sessionId, dialTimeoutMs } = options;
    this.udpSessions = new ClientUdpSessions({
      emit: options.emit,
      send: (message) => options.channel.send(message),
      dialTimeoutMs,
      presentWorkConn: (pairingId) => presentWorkConn({ server, transport, sessionId, pairingId, secret: this.loginSecret, dialTimeoutMs }),
    });
  }

  /** UDP sessions open now (each a local socket and a work conn). */
  get udpSessionCount(): number {
    return this.udpSessions.size;
  }

  /** New local targets for the next work conns; relays already running are untouched. */
  updateSpec(spec: GroupSpec): void {
    this.spec = spec;
    if (!this.done) this.startHealthChecks();
  }

  /**
   * Checks each pooled app of our own file and reports every change to the server. Restarted
   * from the states last reported, so a reload neither repeats nor loses a verdict.
   */
  private startHealthChecks(): void {
    this.healthChecks?.unsubscribe();
    this.healthChecks = healthChanges(this.spec.apps, (app) => this.reportedHealth.get(app) ?? true).subscribe(({ app, healthy, reason }) => {
      this.reportedHealth.set(app, healthy);
      this.options.emit({ type: 'health-changed', app, healthy, reason });
      this.options.channel.send({ type: 'HealthReport', app, healthy, reason });
    });
  }

  /** Subscribes for the session's messages, then lets the frames held since LoginResp through. */
  start(): void {
    const { channel, heartbeatIntervalMs, heartbeatTimeoutMs } = this.options;
    this.subscriptions.push(
      channel.messages$.subscribe({
        next: (message) => this.handleMessage(message),
        error: (error: Error & { code?: string }) =>
          this.end(error.code === 'SLOW_PEER' ? { code: 'SLOW_PEER', reason: error.message } : { reason: `protocol error from the server: ${error.message}` }),
        complete: () => this.end({ reason: 'the connection to the server closed' }),
      }),
      interval(heartbeatIntervalMs).subscribe(() => channel.send({ type: 'Ping', seq: ++this.pingSeq })),
      channel.messages$.pipe(heartbeatWatchdog(heartbeatTimeoutMs)).subscribe((silentMs) => {
        // Silent because we stopped reading a server that reads nothing of ours.
        const stalled = channel.stalledBytes;
        if (stalled !== undefined)
          return this.end({ code: 'SLOW_PEER', reason: `the server read none of the ${stalled} bytes queued for it for ${silentMs}ms` });
        this.options.emit({ type: 'heartbeat-timeout', silentMs });
        this.end({ reason: `no heartbeat from the server for ${silentMs}ms` });
      }),
    );
    channel.release();
    this.startHealthChecks();
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
      case 'ReqWorkConn':
        if (message.protocol === 'udp') void this.udpSessions.serveRequested(this.appNamed(message.app), message.app, message.pairingId);
        else void this.handleReqWorkConn(message);
        return;
      case 'ReqPooledWorkConns':
        return this.handleReqPooledWorkConns(message.pairingIds);
      case 'ReqMuxConn':
        return void this.openMuxConn(message.pairingId);
      case 'WorkConnEnd':
        return this.onServerEnd(message.pairingId, message.bytes);
      case 'AppsChanged':
        this.options.emit({
          type: 'apps-changed',
          opened: message.opened,
          closed: message.closed,
          unknown: message.opened.filter((app) => !this.spec.apps.some((mine) => mine.name === app.name)).map((app) => app.name),
        });
        return;
      case 'Goodbye':
        return this.end({ code: message.code, reason: message.reason });
      case 'Hello':
      case 'Challenge':
      case 'Login':
      case 'LoginResp':
      case 'NewWorkConn':
      case 'StartWorkConn':
      case 'WorkConnFailed':
      case 'WorkConnIdle':
      case 'HealthReport':
        return this.end({ reason: `protocol error: the server sent ${message.type} on an active session` });
      default:
        return assertNever(message, 'message');
    }
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

  private async handleReqWorkConn({ app: appName, pairingId, user }: ReqWorkConn): Promise<void> {
    const { channel, emit } = this.options;
    const spec = this.spec;
    emit({ type: 'work-conn-requested', app: appName, pairingId, pooled: false });
    // Only targets from our own file: a server cannot steer us anywhere else.
    const app = spec.apps.find((candidate) => candidate.name === appName);
    if (app === undefined || app.type === 'udp') {
      channel.send({ type: 'WorkConnFailed', pairingId, reason: tcpRefusal(appName, app) });
      return;
    }
    const result = await openWorkConn({
      server: this.options.server,
      transport: this.options.transport,
      app,
      sessionId: this.options.sessionId,
      pairingId,
      secret: this.loginSecret,
      dialTimeoutMs: this.options.dialTimeoutMs,
    });
    if (!result.ok) {
      if (result.stage === 'local') {
        emit({ type: 'local-dial-failed', app: appName, target: `${app.local.host}:${app.local.port}`, reason: result.reason });
      }
      channel.send({ type: 'WorkConnFailed', pairingId, reason: `${result.stage === 'local' ? 'local app' : 'work conn'} unreachable: ${result.reason}` });
      return;
    }
    await this.relay(app, pairingId, result.localConn, result.workConn, false, user);
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

  /** Waits on an idle pooled work conn for its next user, then serves that user. */
  private async awaitUser(workConn: Socket): Promise<void> {
    this.idlePooled.add(workConn);
    const start = await awaitStartWorkConn(workConn);
    this.idlePooled.delete(workConn);
    if (start === undefined || this.done) return void workConn.destroy();
    if (start.protocol === 'udp') return this.udpSessions.servePooled(this.appNamed(start.app), start.app, start.pairingId, workConn);
    // Returned, not awaited: no suspended frame per live relay (it adds up at 10,000 conns).
    return this.handleStartWorkConn(start, workConn);
  }

  private async handleStartWorkConn({ app: appName, pairingId, user }: StartWorkConn, workConn: Socket): Promise<void> {
    const { channel, emit } = this.options;
    const spec = this.spec; // the group file as last reloaded, not as it was at login
    emit({ type: 'work-conn-requested', app: appName, pairingId, pooled: true });
    // A reset, not a FIN: a FIN would reach the user as an orderly half-close, while a reset
    // makes the server close the user at once. The message only says why.
    const fail = (reason: string): void => {
      this.earlyEnds.delete(pairingId);
      resetSocket(workConn);
      channel.send({ type: 'WorkConnFailed', pairingId, reason });
    };
    const app = spec.apps.find((candidate) => candidate.name === appName);
    if (app === undefined || app.type === 'udp') return fail(tcpRefusal(appName, app));
    const localConn = dialLocalAppEagerly(app, this.options.dialTimeoutMs, (reason) => {
      emit({ type: 'local-dial-failed', app: appName, target: formatHostPort(app.local), reason });
      fail(`local app unreachable: ${reason}`);
    });
    return this.relay(app, pairingId, localConn, workConn, true, user);
  }

  /**
   * Opens the session's mux conn, which replaces any earlier one (the server asks again only
   * when it lost it). Its streams are users: each is served like a pooled work conn's user.
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
        onStream: (stream, start) => this.serveMuxStream(stream, start),
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
    const { server, transport, sessionId, dialTimeoutMs } = this.options;
    try {
      return await presentWorkConn({ server, transport, sessionId, pairingId, secret: this.loginSecret, dialTimeoutMs });
    } catch (error) {
      debug('%s not opened: %s', what, (error as Error).message);
      return undefined;
    }
  }

  /** A user on a stream of the mux conn: the local app is dialed, then the two are relayed. */
  private serveMuxStream(stream: MuxStream, { app: appName, pairingId, user, protocol }: StartWorkConn): void {
    const { emit } = this.options;
    emit({ type: 'work-conn-requested', app: appName, pairingId, pooled: false, mux: true });
    const app = this.appNamed(appName);
    if (app === undefined || app.type === 'udp' || protocol === 'udp') return void stream.resetAndDestroy(tcpRefusal(appName, app));
    const localConn = dialLocalAppEagerly(app, this.options.dialTimeoutMs, (reason) => {
      emit({ type: 'local-dial-failed', app: appName, target: formatHostPort(app.local), reason });
      stream.resetAndDestroy(`local app unreachable: ${reason}`);
    });
    emit({ type: 'work-conn-opened', app: appName, pairingId, pooled: false, mux: true });
    const started = Date.now();
    void joinConns(localConn, stream as unknown as Socket, relayOptionsFor(app, user)).then((outcome) => this.emitClosed(appName, started, outcome));
  }

  private emitClosed(app: string, started: number, outcome: RelayResult): void {
    this.options.emit({
      type: 'conn-closed',
      app,
      bytesIn: outcome.bytesIn,
      bytesOut: outcome.bytesOut,
      durationMs: Date.now() - started,
      ...(outcome.error ? { error: outcome.error.message } : {}),
    });
  }

  /** An app of the group file as last reloaded (only our own targets are ever dialed). */
  private appNamed(name: string): GroupSpec['apps'][number] | undefined {
    return this.spec.apps.find((candidate) => candidate.name === name);
  }

  private onServerEnd(pairingId: string, bytes: number): void {
    const relay = this.relays.get(pairingId);
    if (relay !== undefined) return relay.peerEnded(bytes);
    // Bounded: a server sending ends for users that never come cannot grow this for ever.
    if (this.earlyEnds.size >= MAX_EARLY_ENDS) this.earlyEnds.delete(this.earlyEnds.keys().next().value as string);
    this.earlyEnds.set(pairingId, bytes);
  }

  /**
   * Relays one user between its local app conn and its work conn. An app with `proxyProtocol`
   * gets the header first, from the user's address the server sent: the app reads it before
   * any byte of the user's, and an app that speaks first has not been read from yet.
   */
  private async relay(app: AppSpec, pairingId: string, localConn: Socket, workConn: Socket, pooled: boolean, user: UserAddress | undefined): Promise<void> {
    const { emit, channel } = this.options;
    const appName = app.name;
    emit({ type: 'work-conn-opened', app: appName, pairingId, pooled });
    const started = Date.now();
    if (this.done) {
      resetSocket(localConn);
      return void resetSocket(workConn);
    }
    // Every work conn is kept for the server's next user: ends travel as WorkConnEnd.
    const tracker = new WorkConnTracker();
    const relay = joinReusable(localConn, workConn, tracker, (bytes) => channel.send({ type: 'WorkConnEnd', pairingId, bytes }), relayOptionsFor(app, user));
    this.relays.set(pairingId, relay);
    const early = this.earlyEnds.get(pairingId);
    if (early !== undefined) {
      this.earlyEnds.delete(pairingId);
      relay.peerEnded(early);
    }
    const outcome = await relay.done;
    this.relays.delete(pairingId);
    this.emitClosed(appName, started, outcome);
    if (!outcome.released) {
      // The work conn's reset tells the server too, unless it came before the server read the
      // join: then only this says that the user waiting for the conn is to be reset now.
      if (outcome.error) channel.send({ type: 'WorkConnFailed', pairingId, reason: `the relay failed: ${outcome.error.message}` });
      return;
    }
    // The server puts a user on this conn again only after our WorkConnIdle: idle on both sides.
    tracker.fire({ type: 'peer-idle' });
    if (this.done) return void workConn.destroy();
    // Listening for the next StartWorkConn before the server may send it.
    void this.awaitUser(workConn);
    channel.send({ type: 'WorkConnIdle', pairingId });
  }

  private end(end: SessionEnd, { destroyChannel = true } = {}): void {
    if (this.done) return;
    this.done = true;
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    this.healthChecks?.unsubscribe();
    for (const workConn of this.idlePooled) workConn.destroy();
    this.mux?.destroy(`the session ended: ${end.reason}`);
    // The work conns belong to the session: its users are cut, and must see it as a reset.
    for (const relay of this.relays.values()) relay.reset(`the session ended: ${end.reason}`);
    this.relays.clear();
    this.udpSessions.closeAll(`the session ended: ${end.reason}`);
    this.earlyEnds.clear();
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
