import createDebug from 'debug';
import type { Socket } from 'node:net';
import { asyncScheduler, filter, firstValueFrom, interval, ReplaySubject, Subject, takeUntil, timeout, type Observable, type SchedulerLike } from 'rxjs';
import { formatDuration, type AppSpec, type GroupSpec, type PublicPolicy } from '../../config/index.js';
import { heartbeat, MUX_LIMITS_DEFAULTS, type ControlChannel, type MuxLimits, type MuxStream } from '../../net/index.js';
import {
  assertNever,
  joinProof,
  ProtocolError,
  proofsMatch,
  randomId,
  type AppBinding,
  type AppDeclaration,
  type AppsRefused,
  type HealthReport,
  type Message,
  type NewWorkConn,
  type StartWorkConn,
  type UserAddress,
  type Visit,
  type VisitRefused,
} from '../../protocol/index.js';
import type { SharedPorts } from '../shared-ports/shared-ports.js';
import { AppServer, type UserConn, type UserConnSink } from '../public/app-server.js';
import type { BindRetryPolicy } from '../public/bind-retry.js';
import type { DeactivationCode, EmitServerEvent, ServerEvent } from '../events.js';
import { PublicApps, type PublicApp, type RefusedState } from '../public/public-apps.js';
import { compareWithClient } from './registry-vs-client.js';
import { appTarget, HostRefusals } from './group-apps.js';
import type { VhostServer } from '../../vhost/index.js';
import type { UdpAppServer, UdpSessionSink } from '../udp/udp-app-server.js';
import { UdpSessions } from '../udp/udp-sessions.js';
import type { UdpUserSession } from '../udp/udp-user-session.js';
import { ServerMuxLink } from '../users/mux-link.js';
import { Pairings } from '../users/pairings.js';
import { serveUser, type UserSessionContext } from '../users/serve-user.js';
import { WorkConnPool } from '../users/work-conn-pool.js';
import type { OwningGroup, VisitingGroup } from '../users/visits.js';
import type { VisitorConn } from '../users/visitor-conn.js';

export type { PublicApp } from '../public/public-apps.js';

const debug = createDebug('ntp:server:session:app-group');
const MAX_VISIT_NOTICES_PER_SECOND = 10;
export interface AppGroupOptions {
  spec: GroupSpec;
  channel: ControlChannel;
  clientId: string;
  /** The apps the client's own group file declares (for mismatch warnings only). */
  declaredApps: readonly AppDeclaration[];
  /** The client's Login said `takesApps`: it is sent GroupApps and answers AppsRefused. */
  takesApps?: boolean;
  bindHost: string;
  /** The server's shared pools: pooled apps join one instead of binding a port of their own. */
  pools: SharedPorts;
  heartbeatTimeoutMs: number;
  pairingTimeoutMs: number;
  /** What the server allows on the public side (allowPorts, its own ports, the vhost policy). */
  publicPolicy: PublicPolicy;
  /** UserConns one app may hold while they wait for work conns. */
  maxPendingUsersPerApp?: number;
  /** How often each app reports its `traffic` (default 1000 ms). */
  trafficSampleMs?: number;
  /** Single-use work conns kept ready for this session without a mux conn; 0 disables the pool. */
  workConnPool: number;
  /** Both ends agreed (server config `mux`, the client's Login) to carry users on a mux conn. */
  mux?: boolean;
  /** What that mux conn may hold (`limits.maxMuxStreams`, `limits.muxBudgetBytes`). */
  muxLimits?: MuxLimits;
  /** How a public port that was busy is tried again (default 1 s doubling to 30 s). */
  bindRetry?: BindRetryPolicy;
  /** The shared HTTP/HTTPS ports, when the server has them: vhost apps are routed there. */
  vhost?: VhostServer;
  emit: EmitServerEvent;
  events$: Observable<ServerEvent>;
  onDeactivated: (group: AppGroup) => void;
  /** This group's client asked to visit another group's private app (`serveVisit`); absent: visits are refused. */
  onVisit?: (group: AppGroup, visit: Visit) => void;
  /** The clock of the heartbeat watchdog and the pairing deadlines: real time by default, virtual in a test. */
  scheduler?: SchedulerLike;
}

/**
 * An activated group: one client session, its heartbeat watch, and one AppServer per app.
 * Lives from a successful login until `deactivate`; a later login makes a new AppGroup.
 * Its apps' public side is `PublicApps`; each TCP user is served by `serveUser`, each UDP
 * session by `UdpSessions`, on the mux conn (`ServerMuxLink`) or single-use work conns
 * (`WorkConnPool`, or asked for); every pairing id the session issued waits in `Pairings`.
 */
export class AppGroup implements UserConnSink, UdpSessionSink, VisitingGroup, OwningGroup {
  readonly name: string;
  readonly sessionId = randomId();
  readonly since = Date.now();
  readonly clientId: string;
  readonly clientAddress: string;
  /** The client's IP address alone (its work conns come from there). */
  readonly clientSource: string | undefined;
  lastHeartbeatAt = Date.now();
  private readonly publicApps: PublicApps;
  private readonly pairings: Pairings;
  private readonly pool: WorkConnPool;
  private readonly muxLink: ServerMuxLink | undefined;
  private readonly users: UserSessionContext;
  private readonly udpSessions: UdpSessions;
  /** Emits once, at `deactivate`, and again to any later subscriber: every pipeline of the session stops on it. */
  private readonly lost$ = new ReplaySubject<DeactivationCode>(1);
  private active = true;
  private currentSpec: GroupSpec;
  private readonly hostRefusals = new HostRefusals();
  /** Registry edits and host refusals change the public ports one at a time, in the order they came. */
  private portChanges: Promise<unknown> = Promise.resolve();
  /** The apps whose public side the last port change opened (or left open). */
  private opened: readonly AppSpec[] = [];
  /** Each AppsRefused: the host has judged the apps sent last. */
  private readonly hostAnswers$ = new Subject<void>();
  /** VisitRefused notices sent to this client in the current second (a visitor cannot flood it). */
  private visitNotices = { second: 0, sent: 0 };
  // Join proofs use the secret the client logged in with: a changed secret applies at the next login.
  private readonly loginSecret: string;

  constructor(private readonly options: AppGroupOptions) {
    this.name = options.spec.name;
    this.currentSpec = options.spec;
    this.loginSecret = options.spec.secret.reveal();
    this.clientId = options.clientId;
    this.clientAddress = options.channel.peer;
    this.clientSource = options.channel.socket.remoteAddress;
    const send = (message: Message): void => options.channel.send(message);
    const isActive = (): boolean => this.active;
    this.publicApps = new PublicApps({
      group: this.name,
      bindHost: options.bindHost,
      pools: options.pools,
      publicPolicy: options.publicPolicy,
      maxPendingUsersPerApp: options.maxPendingUsersPerApp,
      bindRetry: options.bindRetry,
      vhost: options.vhost,
      sink: this,
      emit: options.emit,
      send,
      isActive,
      currentApps: () => this.currentSpec.apps,
    });
    this.pairings = new Pairings(options.pairingTimeoutMs, options.scheduler);
    this.muxLink = options.mux
      ? new ServerMuxLink({
          group: this.name,
          pairings: this.pairings,
          limits: options.muxLimits ?? MUX_LIMITS_DEFAULTS,
          send,
          emit: options.emit,
          onProtocolError: (error) => {
            this.options.emit({ type: 'bad-peer', remote: this.clientAddress, code: error.code, reason: `mux conn: ${error.message}` });
            this.deactivate('PROTOCOL_ERROR', `protocol error on the mux conn: ${error.message}`);
          },
        })
      : undefined;
    // With a mux conn, users (TCP and UDP) need no pool: those who come before it is up take a
    // work conn asked for, as they would when the pool runs dry.
    this.pool = new WorkConnPool(
      options.mux ? 0 : options.workConnPool,
      this.pairings,
      (pairingIds) => options.channel.send({ type: 'ReqPooledWorkConns', pairingIds }),
      (idle) => options.emit({ type: 'work-conn-pooled', group: this.name, idle }),
    );
    const openMuxStream = (start: StartWorkConn): MuxStream | undefined => this.muxLink?.open(start);
    this.users = {
      group: this.name,
      pairings: this.pairings,
      pool: this.pool,
      send,
      emit: options.emit,
      isCurrent: (app) => this.publicApps.isCurrent(app),
      openMuxStream,
    };
    this.udpSessions = new UdpSessions({
      group: this.name,
      pairings: this.pairings,
      openMuxStream,
      takePooled: () => this.pool.take(),
      send,
      emit: options.emit,
      isCurrent: (app) => this.publicApps.isCurrent(app),
    });
  }

  /** Asks the client for the pool's work conns; call once the client has its LoginResp. */
  fillPool(): void {
    this.muxLink?.request();
    this.pool.topUp();
  }

  /**
   * Tells a client that takes its apps from the server what they are now (after LoginResp, and
   * after each registry change); it answers AppsRefused.
   */
  sendApps(): void {
    if (this.options.takesApps !== true || !this.active) return;
    this.options.channel.send({ type: 'GroupApps', apps: this.currentSpec.apps.map(appTarget) });
  }

  /** Why an app of this group opens no port: "refused by host: ..." or "refused by server: ...". */
  refusal(app: string): RefusedState | undefined {
    return this.hostRefusals.reasonFor(app) ?? this.publicApps.refusal(app);
  }

  /** This group's slice of the server's event stream. */
  get events$(): Observable<ServerEvent> {
    return this.options.events$.pipe(filter((event) => 'group' in event && event.group === this.name));
  }

  get spec(): GroupSpec {
    return this.currentSpec;
  }

  get isActive(): boolean {
    return this.active;
  }

  get apps(): ReadonlyMap<string, PublicApp> {
    return this.publicApps.byName;
  }

  /**
   * Starts watching the control conn, then opens every app's public port. An app whose port
   * cannot be bound fails alone; the others serve. Returns what to tell the client.
   */
  async activate(): Promise<{ apps: AppBinding[]; warnings: string[] }> {
    const { channel, heartbeatTimeoutMs, scheduler = asyncScheduler } = this.options;
    channel.messages$.pipe(takeUntil(this.lost$)).subscribe({
      next: (message) => this.handleMessage(message),
      error: (error: Error) => {
        const code = error instanceof ProtocolError ? error.code : 'PROTOCOL_ERROR';
        this.options.emit({ type: 'bad-peer', remote: channel.peer, code, reason: error.message });
        if (code === 'SLOW_PEER') this.deactivate('SLOW_PEER', error.message);
        else this.deactivate('PROTOCOL_ERROR', `protocol error: ${error.message}`);
      },
      complete: () => this.deactivate('CONNECTION_LOST', 'the common conn closed'),
    });
    // The client pings; this end only watches for silence.
    heartbeat(channel.messages$, { timeoutMs: heartbeatTimeoutMs, scheduler })
      .pipe(takeUntil(this.lost$))
      .subscribe({
        next: (tick) => {
          if (tick.type !== 'silent') return;
          // Silent because we stopped reading a client that reads nothing of ours: not a lost path.
          const stalled = channel.stalledBytes;
          if (stalled !== undefined) {
            const reason = `the client read none of the ${stalled} bytes queued for it for ${formatDuration(tick.silentMs)}`;
            this.options.emit({ type: 'bad-peer', remote: channel.peer, code: 'SLOW_PEER', reason });
            return this.deactivate('SLOW_PEER', reason);
          }
          this.options.emit({ type: 'heartbeat-timeout', group: this.name, silentMs: tick.silentMs });
          this.deactivate('HEARTBEAT_TIMEOUT', `no heartbeat for ${formatDuration(tick.silentMs)}`);
        },
        // The messages' own subscriber deactivates the group with the error.
        error: () => {},
      });
    interval(this.options.trafficSampleMs ?? 1000, scheduler)
      .pipe(takeUntil(this.lost$))
      .subscribe(() => {
        for (const app of this.publicApps.byName.values()) app.sampleTraffic();
      });

    channel.release();
    this.opened = this.currentSpec.apps;
    const apps = await this.publicApps.openAll();
    return { apps, warnings: compareWithClient(this.currentSpec.apps, this.options.declaredApps, this.options.takesApps === true) };
  }

  /**
   * Applies an edited registry entry to the live session: removed apps (and apps whose public
   * port changed) close with their conns, new ones open; the other apps take their new
   * `allow` and `maxConnections` for the next user, their conns untouched.
   */
  async updateSpec(spec: GroupSpec): Promise<AppBinding[]> {
    const known = new Set(this.currentSpec.apps.map((app) => app.name));
    this.currentSpec = spec;
    this.hostRefusals.prune(spec.apps);
    if (this.options.takesApps !== true || !this.active) return this.changePorts('removed from the registry');
    const answered = firstValueFrom(this.hostAnswers$.pipe(timeout({ first: this.options.pairingTimeoutMs }), takeUntil(this.lost$))).catch(() => {});
    this.sendApps();
    // Edits of the apps already there apply now (a narrower allow must not wait for the host);
    // added apps open once the host has judged them: no user comes before the host knows the
    // app, and an app the host refuses never opens.
    const now = this.changePorts('removed from the registry', (app) => known.has(app.name));
    await answered;
    const later = await this.changePorts('removed from the registry');
    return [...(await now), ...later];
  }

  /**
   * Brings the public ports in line with the registry less the host's refusals (and less the
   * apps `include` leaves out), one change at a time: `opened` is what the last one left open.
   */
  private changePorts(removedWhy: string, include: (app: AppSpec) => boolean = () => true): Promise<AppBinding[]> {
    const done = this.portChanges.then(() => {
      const after = this.hostRefusals.served(this.currentSpec.apps).filter(include);
      const before = this.opened;
      this.opened = after;
      return this.publicApps.update(before, after, removedWhy);
    });
    this.portChanges = done.catch(() => {});
    return done;
  }

  /**
   * The host's answer to GroupApps: the apps it will not serve close their public ports (a user
   * there could only be refused), and apps it now serves again open.
   */
  private handleAppsRefused({ apps }: AppsRefused): void {
    if (this.options.takesApps !== true) return;
    for (const { name, reason } of this.hostRefusals.replace(this.currentSpec.apps, apps)) {
      const app = this.currentSpec.apps.find((candidate) => candidate.name === name)!;
      this.options.emit({ type: 'app-refused', group: this.name, app: name, port: app.vhost === undefined ? app.remotePort : 0, by: 'host', reason });
    }
    this.hostAnswers$.next();
    void this.changePorts('refused by host');
  }

  /** The one place control messages from the client are dispatched. */
  private handleMessage(message: Message): void {
    switch (message.type) {
      case 'Ping':
        this.lastHeartbeatAt = Date.now();
        this.options.channel.send({ type: 'Pong', seq: message.seq });
        this.options.emit({ type: 'heartbeat', group: this.name, seq: message.seq });
        return;
      case 'Pong':
        this.lastHeartbeatAt = Date.now();
        return;
      case 'WorkConnFailed':
        // A pairing id names one waiter; one no longer waiting (its conn came, it expired) is ignored.
        this.pairings.fail(message.pairingId, message.reason);
        return;
      case 'HealthReport':
        return this.handleHealthReport(message);
      case 'AppsRefused':
        return this.handleAppsRefused(message);
      case 'Visit':
        if (this.options.onVisit !== undefined) return this.options.onVisit(this, message);
        return this.send({
          type: 'VisitRefused',
          visitId: message.visitId,
          visitorGroup: this.name,
          visitor: message.visitor,
          group: message.group,
          app: message.app,
          reason: 'this server takes no visitors',
        });
      case 'Goodbye':
        return this.deactivate('CLIENT_LEFT', `client said goodbye: ${message.reason}`);
      case 'Hello':
      case 'Challenge':
      case 'Login':
      case 'LoginResp':
      case 'ReqWorkConn':
      case 'NewWorkConn':
      case 'ReqPooledWorkConns':
      case 'ReqMuxConn':
      case 'StartWorkConn':
      case 'AppsChanged':
      case 'GroupApps':
      case 'VisitRefused':
        this.options.emit({
          type: 'bad-peer',
          remote: this.clientAddress,
          code: 'UNEXPECTED_MESSAGE',
          reason: `${message.type} is not valid on an active common conn`,
        });
        return this.deactivate('PROTOCOL_ERROR', `unexpected ${message.type} on the common conn`);
      default:
        return assertNever(message, 'message');
    }
  }

  /** The client's address as the server's end of its control conn sees it: a visitor's user's address. */
  get visitorAddress(): UserAddress | undefined {
    const { remoteAddress, remotePort, localAddress, localPort } = this.options.channel.socket;
    if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return undefined;
    return { remoteAddress, remotePort, localAddress, localPort };
  }

  openVisitorStream(start: StartWorkConn): MuxStream | undefined {
    return this.active ? this.muxLink?.open(start) : undefined;
  }

  send(message: VisitRefused): void {
    if (this.active) this.options.channel.send(message);
  }

  privateApp(name: string): AppServer | undefined {
    const app = this.active ? this.publicApps.byName.get(name) : undefined;
    return app instanceof AppServer && app.isPrivate ? app : undefined;
  }

  admitVisitor(app: AppServer, conn: VisitorConn): string | undefined {
    return app.connect(conn);
  }

  /** At most 10 a second: a visitor refused in a loop costs the owner's client a few lines, not its control conn. */
  noticeVisitRefused(message: VisitRefused): void {
    const second = Math.floor(Date.now() / 1000);
    if (this.visitNotices.second !== second) this.visitNotices = { second, sent: 0 };
    if (++this.visitNotices.sent <= MAX_VISIT_NOTICES_PER_SECOND) this.send(message);
  }

  onUdpSession(app: UdpAppServer, session: UdpUserSession): void {
    if (!this.active) return session.close(false, 'the group is not active');
    this.udpSessions.start(app, session);
  }

  onUdpSessionClosed(session: UdpUserSession): void {
    this.udpSessions.forget(session.pairingId);
  }

  onUserConn(app: AppServer, userConn: UserConn): void {
    if (!this.active) {
      userConn.destroy(); // refused at accept, like a closed port
      return;
    }
    void serveUser(this.users, app, userConn);
  }

  /**
   * A work conn presented a pairing id of this session. Returns null when joined, or why it
   * was refused (the caller closes the work conn and reports the peer).
   */
  acceptWorkConn(message: NewWorkConn, workConn: Socket): string | null {
    if (!this.pairings.has(message.pairingId)) return 'unknown, used or expired pairing id';
    const expected = joinProof(this.loginSecret, this.sessionId, message.pairingId);
    // A bad proof does not consume the pairing: the real client may still arrive in time.
    if (!proofsMatch(expected, message.proof)) return 'bad join proof';
    this.pairings.deliver(message.pairingId, workConn);
    return null;
  }

  /**
   * Leaves inUseGroup: public ports closed (freed for the next activation), the client told
   * why. Every user of the session, held or relayed, is reset at once: its work conns belong to
   * a session that is over (dead, replaced, frozen or sent away), and a user left open would
   * wait for TCP to give up, or take a truncated answer for a complete one. Idempotent.
   */
  deactivate(code: DeactivationCode, reason: string): void {
    if (!this.active) return;
    this.active = false;
    this.lost$.next(code);
    this.lost$.complete();
    const ended = `group deactivated: ${reason}`;
    // The mux conn and the waiters first: closing the apps would reset their users without saying why.
    this.muxLink?.stop(ended);
    this.pairings.failAll(ended);
    this.publicApps.closeAll(ended);
    this.pool.destroy();
    if (code === 'CONNECTION_LOST' || code === 'CLIENT_LEFT') this.options.channel.destroy();
    else this.options.channel.goodbye(code, reason);
    debug('%s deactivated: %s', this.name, reason);
    this.options.emit({ type: 'group-deactivated', group: this.name, code, reason });
    this.options.onDeactivated(this);
  }

  /**
   * A client's word on one of its pooled apps. It can only ever touch this group's own members
   * (the pool is looked up from this group's registry entry, the member by this group's name).
   * A report on an app that is not pooled here is ignored, not a fault: the client's group file
   * and the server's registry may differ (both sides were warned at login).
   */
  private handleHealthReport({ app: name, healthy, reason }: HealthReport): void {
    const pool = this.currentSpec.apps.find((app) => app.name === name)?.pool;
    const member = this.publicApps.byName.get(name);
    if (pool === undefined || !(member instanceof AppServer) || member.poolMembership === undefined) {
      debug('%s: HealthReport for "%s" ignored: not a pooled app of this group with an open pool', this.name, name.slice(0, 128));
      return;
    }
    this.options.pools.setHealth(pool, this.name, healthy, reason);
  }
}
