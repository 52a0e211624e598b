import createDebug from 'debug';
import type { Socket } from 'node:net';
import { filter, interval, type Observable, type Subscription } from 'rxjs';
import { appDomains, appProtocol, protocolMark, vhostAppProblem, type AppSpec, type GroupSpec, type PolicyConfig } from '../config/index.js';
import { heartbeatWatchdog, resetSocket, WorkConnTracker, writeFrame, type ControlChannel } from '../net/index.js';
import {
  assertNever,
  joinProof,
  proofsMatch,
  randomId,
  type AppBinding,
  type AppDeclaration,
  type HealthReport,
  type Message,
  type NewWorkConn,
  type UserAddress,
} from '../protocol/index.js';
import type { AppPools } from './app-pools.js';
import { AppServer, type RelayHandle, type UserConnSink } from './app-server.js';
import { BindRetries, BIND_RETRY_DEFAULTS, type BindRetryPolicy } from './bind-retry.js';
import type { DeactivationCode, EmitServerEvent, ServerEvent } from './events.js';
import { Pairings, type PendingUser } from './pairings.js';
import { portRefusal } from './policy.js';
import type { VhostServer } from '../vhost/index.js';
import { UdpAppServer, type UdpSessionSink } from './udp-app-server.js';
import { UdpSessions } from './udp-sessions.js';
import type { UdpUserSession } from './udp-user-session.js';
import { WorkConnPool } from './work-conn-pool.js';

/** An app's public port: a TCP listener, or a UDP socket with its sessions. */
export type PublicApp = AppServer | UdpAppServer;

const debug = createDebug('ntp:server:app-group');

/** A user on a work conn, from the join until the conn is back in the pool or gone. */
interface JoinedWorkConn {
  app: string;
  userConn: Socket;
  workConn: Socket;
  /** The conn's one state machine: the relay fires the streams' events, this group the session's. */
  tracker: WorkConnTracker;
  relay: RelayHandle;
  /** The relay let go of both sockets (released or torn down). */
  relaySettled: boolean;
}

export interface AppGroupOptions {
  spec: GroupSpec;
  channel: ControlChannel;
  clientId: string;
  /** The apps the client's own group file declares (for mismatch warnings only). */
  declaredApps: readonly AppDeclaration[];
  bindHost: string;
  /** The server's shared pools: pooled apps join one instead of binding a port of their own. */
  pools: AppPools;
  heartbeatTimeoutMs: number;
  pairingTimeoutMs: number;
  policy?: PolicyConfig;
  /** UserConns one app may hold while they wait for work conns. */
  maxPendingUsersPerApp?: number;
  /** How often each app reports its `traffic` (default 1000 ms). */
  trafficSampleMs?: number;
  /** Work conns kept ready for this session; 0 disables the pool. */
  workConnPool: number;
  /** How a public port that was busy is tried again (default 1 s doubling to 30 s). */
  bindRetry?: BindRetryPolicy;
  /** The shared HTTP/HTTPS ports, when the server has them: vhost apps are routed there. */
  vhost?: VhostServer;
  emit: EmitServerEvent;
  events$: Observable<ServerEvent>;
  onDeactivated: (group: AppGroup) => void;
}

/**
 * An activated group: one client session, its heartbeat watch, and one AppServer per app.
 * Lives from a successful login until `deactivate`; a later login makes a new AppGroup.
 */
export class AppGroup implements UserConnSink, UdpSessionSink {
  readonly name: string;
  readonly sessionId = randomId();
  readonly since = Date.now();
  readonly clientId: string;
  readonly clientAddress: string;
  /** The client's IP address alone (its work conns come from there). */
  readonly clientSource: string | undefined;
  lastHeartbeatAt = Date.now();
  private readonly appServers = new Map<string, PublicApp>();
  private readonly pairings: Pairings;
  private readonly bindRetries: BindRetries;
  private readonly pool: WorkConnPool;
  private readonly udpSessions: UdpSessions;
  /**
   * Users joined to a work conn (pooled or asked for), by pairing id, until their work conn is
   * back in the pool or gone: WorkConnEnd, WorkConnIdle and a late WorkConnFailed name one.
   */
  private readonly joined = new Map<string, JoinedWorkConn>();
  private readonly subscriptions: Subscription[] = [];
  private active = true;
  private currentSpec: GroupSpec;
  // Join proofs use the secret the client logged in with: a changed secret applies at the next login.
  private readonly loginSecret: string;

  constructor(private readonly options: AppGroupOptions) {
    this.name = options.spec.name;
    this.currentSpec = options.spec;
    this.loginSecret = options.spec.secret.reveal();
    this.clientId = options.clientId;
    this.clientAddress = options.channel.peer;
    this.clientSource = options.channel.socket.remoteAddress;
    this.pairings = new Pairings(options.pairingTimeoutMs, this.onPairingExpired);
    this.bindRetries = new BindRetries(this.name, this.retryBind, options.bindRetry);
    this.pool = new WorkConnPool(
      options.workConnPool,
      options.pairingTimeoutMs,
      (pairingIds) => options.channel.send({ type: 'ReqPooledWorkConns', pairingIds }),
      (idle, served) =>
        options.emit({ type: 'work-conn-pooled', group: this.name, idle, ...(served === undefined ? {} : { reused: true, servedPairingId: served }) }),
    );
    this.udpSessions = new UdpSessions({
      group: this.name,
      pairingTimeoutMs: options.pairingTimeoutMs,
      takePooled: () => this.pool.take(),
      send: (message) => options.channel.send(message),
      emit: options.emit,
    });
  }

  /** Asks the client for the pool's work conns; call once the client has its LoginResp. */
  fillPool(): void {
    this.pool.topUp();
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
    return this.appServers;
  }

  get pendingUserCount(): number {
    return this.pairings.size;
  }

  /**
   * Starts watching the control conn, then opens every app's public port. An app whose port
   * cannot be bound fails alone; the others serve. Returns what to tell the client.
   */
  async activate(): Promise<{ apps: AppBinding[]; warnings: string[] }> {
    const { channel, heartbeatTimeoutMs } = this.options;
    this.subscriptions.push(
      channel.messages$.subscribe({
        next: (message) => this.handleMessage(message),
        error: (error: Error & { code?: string }) => {
          this.options.emit({ type: 'bad-peer', remote: channel.peer, code: error.code ?? 'PROTOCOL_ERROR', reason: error.message });
          if (error.code === 'SLOW_PEER') this.deactivate('SLOW_PEER', error.message);
          else this.deactivate('PROTOCOL_ERROR', `protocol error: ${error.message}`);
        },
        complete: () => this.deactivate('CONNECTION_LOST', 'the common conn closed'),
      }),
      channel.messages$.pipe(heartbeatWatchdog(heartbeatTimeoutMs)).subscribe((silentMs) => {
        // Silent because we stopped reading a client that reads nothing of ours: not a lost path.
        const stalled = channel.stalledBytes;
        if (stalled !== undefined) {
          const reason = `the client read none of the ${stalled} bytes queued for it for ${silentMs}ms`;
          this.options.emit({ type: 'bad-peer', remote: channel.peer, code: 'SLOW_PEER', reason });
          return this.deactivate('SLOW_PEER', reason);
        }
        this.options.emit({ type: 'heartbeat-timeout', group: this.name, silentMs });
        this.deactivate('HEARTBEAT_TIMEOUT', `no heartbeat for ${silentMs}ms`);
      }),
      interval(this.options.trafficSampleMs ?? 1000).subscribe(() => {
        for (const app of this.appServers.values()) app.sampleTraffic();
      }),
    );

    channel.release();
    const apps = await Promise.all(this.currentSpec.apps.map((app) => this.openApp(app)));
    return { apps, warnings: this.compareWithClient() };
  }

  /**
   * Applies an edited registry entry to the live session: removed apps (and apps whose public
   * port changed) close with their conns, new ones open; the other apps take their new
   * `allow` and `maxConnections` for the next user, their conns untouched.
   */
  async updateSpec(spec: GroupSpec): Promise<AppBinding[]> {
    const before = new Map(this.currentSpec.apps.map((app) => [app.name, app]));
    this.currentSpec = spec;
    const opening: GroupSpec['apps'][number][] = [];
    const closed: string[] = [];
    for (const app of spec.apps) {
      const old = before.get(app.name);
      before.delete(app.name);
      if (old !== undefined && old.remotePort === app.remotePort && old.pool === app.pool && old.type === app.type && sameRouting(old, app)) {
        const server = this.appServers.get(app.name);
        if (server !== undefined) {
          server.applySpec(app);
          continue;
        }
        // Still waiting for its busy port: the retry binds the spec current by then.
        if (this.bindRetries.has(app.name)) continue;
      }
      const why =
        old?.pool !== app.pool
          ? `its pool changed to ${app.pool ?? 'none'}`
          : old?.type !== app.type
            ? `its type changed to ${app.type ?? 'tcp'}`
            : old?.remotePort === app.remotePort
              ? 'its names changed'
              : `its remotePort changed to ${app.remotePort}`;
      if (old !== undefined && this.closeApp(app.name, why)) closed.push(app.name);
      opening.push(app);
    }
    for (const name of before.keys()) if (this.closeApp(name, 'removed from the registry')) closed.push(name);
    if (!this.active) return [];
    const opened = await Promise.all(opening.map((app) => this.openApp(app)));
    // The client's port table would be stale until its next login otherwise.
    if (this.active && (opened.length > 0 || closed.length > 0)) this.options.channel.send({ type: 'AppsChanged', opened, closed });
    return opened;
  }

  /** Closes an app's public port and its conns; false if it had none open. */
  private closeApp(name: string, reason: string): boolean {
    this.bindRetries.cancel(name);
    const server = this.appServers.get(name);
    if (server === undefined) return false;
    this.appServers.delete(name);
    if (server instanceof AppServer) this.options.vhost?.router.detach(server);
    server.close(reason);
    this.options.emit({ type: 'app-closed', group: this.name, app: name, reason });
    return true;
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
        return this.handleWorkConnFailed(message.pairingId, message.reason);
      case 'WorkConnEnd':
        return this.handleWorkConnEnd(message.pairingId, message.bytes);
      case 'WorkConnIdle':
        return this.handleWorkConnIdle(message.pairingId);
      case 'HealthReport':
        return this.handleHealthReport(message);
      case 'Goodbye':
        return this.deactivate('CLIENT_LEFT', `client said goodbye: ${message.reason}`);
      case 'Hello':
      case 'Challenge':
      case 'Login':
      case 'LoginResp':
      case 'ReqWorkConn':
      case 'NewWorkConn':
      case 'ReqPooledWorkConns':
      case 'StartWorkConn':
      case 'AppsChanged':
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

  onUdpSession(app: UdpAppServer, session: UdpUserSession): void {
    if (!this.active) return session.close(false, 'the group is not active');
    this.udpSessions.start(app, session);
  }

  onUdpSessionClosed(session: UdpUserSession): void {
    this.udpSessions.forget(session.pairingId);
  }

  onUserConn(app: AppServer, userConn: Socket): void {
    const remote = `${userConn.remoteAddress}:${userConn.remotePort}`;
    if (!this.active) {
      userConn.destroy(); // refused at accept, like a closed port
      return;
    }
    const pooled = this.pool.take();
    if (pooled !== undefined) return this.startOnPooled(app, userConn, remote, pooled);
    const pending = this.pairings.hold(app, userConn);
    this.options.emit({ type: 'user-conn-accepted', group: this.name, app: app.name, remote, pairingId: pending.pairingId });
    this.options.channel.send({ type: 'ReqWorkConn', app: app.name, pairingId: pending.pairingId, ...userAddressOf(userConn) });
    this.options.emit({ type: 'work-conn-requested', group: this.name, app: app.name, pairingId: pending.pairingId });
  }

  /**
   * Joins a user to an idle pooled work conn at once. The user's first bytes may follow
   * StartWorkConn straight away: the client reads nothing past that frame until it has
   * dialed the app, and if it cannot, it resets the conn, which closes the user.
   */
  private startOnPooled(app: AppServer, userConn: Socket, remote: string, workConn: Socket): void {
    const pairingId = randomId();
    this.options.emit({ type: 'user-conn-accepted', group: this.name, app: app.name, remote, pairingId });
    // The frame waits for the user's first bytes when they are already in the kernel (a client
    // usually writes as soon as it connects): they are read in the loop's next poll phase, and
    // then both leave in one write, one TLS record, one wakeup of the client. An app that
    // speaks first loses only that turn of the loop.
    workConn.cork();
    writeFrame(workConn, { type: 'StartWorkConn', app: app.name, pairingId, ...userAddressOf(userConn) });
    setImmediate(uncorkAfterNextPoll, workConn);
    this.options.emit({ type: 'work-conn-joined', group: this.name, app: app.name, pairingId, waitedMs: 0, pooled: true });
    this.join(app, userConn, workConn, pairingId);
  }

  /** Relays a user on a work conn, tracked until the conn is idle again (or gone). */
  private join(app: AppServer, userConn: Socket, workConn: Socket, pairingId: string, earlyEnd?: number): void {
    const tracker = new WorkConnTracker();
    const relay = app.relay(userConn, workConn, pairingId, tracker, (bytes) => this.options.channel.send({ type: 'WorkConnEnd', pairingId, bytes }));
    const use: JoinedWorkConn = { app: app.name, userConn, workConn, tracker, relay, relaySettled: false };
    this.joined.set(pairingId, use);
    if (earlyEnd !== undefined) relay.peerEnded(earlyEnd);
    void relay.done.then((result) => {
      use.relaySettled = true;
      if (!result.released) return void this.joined.delete(pairingId);
      this.returnIfIdle(pairingId, use);
    });
  }

  /** Back to the pool once both ends are through here and the client said it is idle too. */
  private returnIfIdle(pairingId: string, use: JoinedWorkConn): void {
    if (use.tracker.state.phase !== 'idle' || !use.relaySettled || !this.joined.delete(pairingId)) return;
    if (this.active) this.pool.giveBack(use.workConn, pairingId);
    else use.workConn.destroy();
  }

  private handleWorkConnEnd(pairingId: string, bytes: number): void {
    const joined = this.joined.get(pairingId);
    if (joined !== undefined) return joined.relay.peerEnded(bytes);
    const pending = this.pairings.peek(pairingId);
    if (pending !== undefined) pending.earlyEnd ??= bytes;
  }

  private handleWorkConnIdle(pairingId: string): void {
    const use = this.joined.get(pairingId);
    if (use === undefined) return; // its relay failed meanwhile: the work conn is closed already
    use.tracker.fire({ type: 'peer-idle' });
    this.returnIfIdle(pairingId, use);
  }

  /**
   * A work conn presented a pairing id of this session. Returns null when joined, or why it
   * was refused (the caller closes the work conn and reports the peer).
   */
  acceptWorkConn(message: NewWorkConn, workConn: Socket): string | null {
    const forPool = this.pool.isRequested(message.pairingId);
    const forUdp = !forPool && this.udpSessions.isWaiting(message.pairingId);
    const pending = forPool || forUdp ? undefined : this.pairings.peek(message.pairingId);
    if (!forPool && !forUdp && pending === undefined) return 'unknown, used or expired pairing id';
    const expected = joinProof(this.loginSecret, this.sessionId, message.pairingId);
    // A bad proof does not consume the pairing: the real client may still arrive in time.
    if (!proofsMatch(expected, message.proof)) return 'bad join proof';
    if (forUdp) {
      this.udpSessions.join(message.pairingId, workConn, (app) => this.appServers.get(app.name) === app);
      return null;
    }
    if (pending === undefined) {
      this.pool.add(message.pairingId, workConn);
      return null;
    }
    this.pairings.take(message.pairingId);
    if (this.appServers.get(pending.app.name) !== pending.app) {
      // The app was removed (hot reload) while this user waited: it is not served any more.
      resetSocket(pending.userConn);
      resetSocket(workConn);
      this.options.emit({
        type: 'work-conn-failed',
        group: this.name,
        app: pending.app.name,
        pairingId: pending.pairingId,
        reason: 'the app was removed from the registry',
      });
      return null;
    }
    this.options.emit({
      type: 'work-conn-joined',
      group: this.name,
      app: pending.app.name,
      pairingId: pending.pairingId,
      waitedMs: Date.now() - pending.since,
    });
    this.join(pending.app, pending.userConn, workConn, pending.pairingId, pending.earlyEnd);
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
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    this.bindRetries.cancelAll();
    for (const use of this.joined.values()) {
      if (use.relaySettled) {
        // Between two users (released here, the client not yet idle): no stream is cut.
        use.tracker.fire({ type: 'close', reason: 'the session ended' });
        use.workConn.destroy();
      } else use.relay.reset(`group deactivated: ${reason}`);
    }
    this.joined.clear();
    this.udpSessions.closeAll(`group deactivated: ${reason}`);
    for (const app of this.appServers.values()) app.close(`group deactivated: ${reason}`);
    this.pool.destroy();
    for (const user of this.pairings.dropAll()) {
      this.options.emit({ type: 'work-conn-failed', group: this.name, app: user.app.name, pairingId: user.pairingId, reason: `group deactivated: ${reason}` });
    }
    if (code === 'CONNECTION_LOST' || code === 'CLIENT_LEFT') this.options.channel.destroy();
    else this.options.channel.goodbye(code, reason);
    debug('%s deactivated: %s', this.name, reason);
    this.options.emit({ type: 'group-deactivated', group: this.name, code, reason });
    this.options.onDeactivated(this);
  }

  private async openApp(app: AppSpec): Promise<AppBinding> {
    if (app.vhost !== undefined) return this.openVhostApp(app);
    const protocol = protocolMark(app);
    const refusal = portRefusal(this.options.policy ?? {}, this.name, app);
    if (refusal !== undefined) {
      this.options.emit({ type: 'app-failed', group: this.name, app: app.name, port: app.remotePort, reason: refusal });
      return { name: app.name, remotePort: app.remotePort, state: 'failed', error: refusal, ...protocol };
    }
    const bound = await this.bindApp(app);
    if (typeof bound === 'number') return { name: app.name, remotePort: bound, state: 'listening', ...protocol };
    // A busy port is often freed soon (a process restarting, another group's app closing).
    const retrying = bound.code === 'EADDRINUSE' && this.active;
    if (retrying) this.bindRetries.schedule(app.name);
    const retryMs = this.options.bindRetry ?? BIND_RETRY_DEFAULTS;
    const reason = `${describeBindError(bound, app.remotePort)}${retrying ? `; retrying (first in ${retryMs.firstMs}ms, then at most every ${retryMs.maxMs}ms)` : ''}`;
    this.options.emit({ type: 'app-failed', group: this.name, app: app.name, port: app.remotePort, reason });
    return { name: app.name, remotePort: app.remotePort, state: 'failed', error: reason, ...protocol };
  }

  /**
   * A vhost app opens no port: its AppServer is attached to the vhost router under the app's
   * names, and holds the users routed to it like a port-based app holds its own.
   */
  private openVhostApp(app: AppSpec): AppBinding {
    const vhost = this.options.vhost;
    const index = this.currentSpec.apps.indexOf(app);
    const refusal = vhostAppProblem(this.name, app, index, vhost?.config);
    if (vhost === undefined || refusal !== undefined) {
      const reason = refusal?.problem ?? 'this server has no vhost ports';
      this.options.emit({ type: 'app-failed', group: this.name, app: app.name, port: 0, reason });
      return { name: app.name, remotePort: 0, state: 'failed', error: reason };
    }
    const server = new AppServer(this.name, app, this.options.bindHost, this, this.options.emit, this.options.maxPendingUsersPerApp);
    if (app.pool === undefined) vhost.router.attach(server);
    else {
      try {
        this.options.pools.joinVhost(app.pool, this.name, server);
      } catch (error) {
        const reason = (error as Error).message;
        this.options.emit({ type: 'app-failed', group: this.name, app: app.name, port: 0, reason });
        return { name: app.name, remotePort: 0, state: 'failed', error: reason };
      }
    }
    this.appServers.set(app.name, server);
    const port = vhost.port(app.vhost!.type);
    const domains = appDomains(app, index, vhost.config.subdomainHost).map(({ domain }) => domain);
    this.options.emit({ type: 'app-opened', group: this.name, app: app.name, port, domains });
    return { name: app.name, remotePort: port, state: 'listening', domains };
  }

  /** Binds an app's public port: the port bound, or the bind error. */
  private async bindApp(app: AppSpec): Promise<number | NodeJS.ErrnoException> {
    const server: PublicApp =
      app.type === 'udp'
        ? new UdpAppServer(this.name, app, this.options.bindHost, this, this.options.emit)
        : new AppServer(this.name, app, this.options.bindHost, this, this.options.emit, this.options.maxPendingUsersPerApp);
    this.appServers.set(app.name, server);
    try {
      // A UDP app is never pooled (the group file refuses pool: on it); vhost pools open in openVhostApp.
      const port =
        app.pool === undefined || !(server instanceof AppServer)
          ? await server.listen()
          : await this.options.pools.join(app.pool, app.remotePort, this.name, server);
      // The client may have gone (or the app been removed) while we were binding.
      if (!this.active || this.appServers.get(app.name) !== server) server.close();
      else this.options.emit({ type: 'app-opened', group: this.name, app: app.name, port });
      return port;
    } catch (error) {
      if (this.appServers.get(app.name) === server) this.appServers.delete(app.name);
      return error as NodeJS.ErrnoException;
    }
  }

  /**
   * One retry of a busy port; rejects while it is still busy. Once bound, the client is told
   * with AppsChanged, so that it can show the port (its LoginResp said the app had failed).
   */
  private readonly retryBind = async (name: string): Promise<void> => {
    const app = this.currentSpec.apps.find((candidate) => candidate.name === name);
    if (!this.active || app === undefined || this.appServers.has(name)) return;
    const bound = await this.bindApp(app);
    if (typeof bound !== 'number') {
      if (bound.code === 'EADDRINUSE') throw bound;
      this.options.emit({ type: 'app-failed', group: this.name, app: name, port: app.remotePort, reason: describeBindError(bound, app.remotePort) });
      return;
    }
    const protocol = protocolMark(app);
    if (this.active && this.appServers.has(name))
      this.options.channel.send({ type: 'AppsChanged', opened: [{ name, remotePort: bound, state: 'listening', ...protocol }], closed: [] });
  };

  /**
   * A client's word on one of its pooled apps. It can only ever touch this group's own members
   * (the pool is looked up from this group's registry entry, the member by this group's name).
   * A report on an app that is not pooled here is ignored, not a fault: the client's group file
   * and the server's registry may differ (both sides were warned at login).
   */
  private handleHealthReport({ app: name, healthy, reason }: HealthReport): void {
    const pool = this.currentSpec.apps.find((app) => app.name === name)?.pool;
    const member = this.appServers.get(name);
    if (pool === undefined || !(member instanceof AppServer) || member.poolMembership === undefined) {
      debug('%s: HealthReport for "%s" ignored: not a pooled app of this group with an open pool', this.name, name.slice(0, 128));
      return;
    }
    this.options.pools.setHealth(pool, this.name, healthy, reason);
  }

  private handleWorkConnFailed(pairingId: string, reason: string): void {
    const pooled = this.joined.get(pairingId);
    if (pooled !== undefined) {
      // The client's reset of the work conn has normally reset the user already.
      pooled.relay.reset(`the client could not serve it: ${reason}`);
      if (pooled.relaySettled) {
        // Through on this side, failed on the client's: the conn will never be idle there.
        this.joined.delete(pairingId);
        pooled.tracker.fire({ type: 'fault', reason });
        resetSocket(pooled.workConn);
      }
      this.options.emit({ type: 'work-conn-failed', group: this.name, app: pooled.app, pairingId, reason });
      return;
    }
    const udpApp = this.udpSessions.failed(pairingId, reason);
    if (udpApp !== undefined) return this.options.emit({ type: 'work-conn-failed', group: this.name, app: udpApp, pairingId, reason });
    const user = this.pairings.take(pairingId);
    if (user === undefined) return; // already expired or abandoned: nothing left to close
    // Held, so nothing of it was read: another member of its pool may serve it instead.
    if (user.app.handOver(user.userConn, reason)) return;
    resetSocket(user.userConn);
    this.options.emit({ type: 'work-conn-failed', group: this.name, app: user.app.name, pairingId, reason });
  }

  private readonly onPairingExpired = (user: PendingUser): void => {
    resetSocket(user.userConn);
    this.options.emit({
      type: 'work-conn-failed',
      group: this.name,
      app: user.app.name,
      pairingId: user.pairingId,
      reason: `no work conn within ${this.options.pairingTimeoutMs}ms`,
    });
  };

  /** The server's registry is the authority; differences are reported, never guessed at. */
  private compareWithClient(): string[] {
    const warnings: string[] = [];
    const declared = new Map(this.options.declaredApps.map((app) => [app.name, app]));
    for (const app of this.currentSpec.apps) {
      const mine = declared.get(app.name);
      if (mine === undefined) {
        warnings.push(`app "${app.name}" is registered on the server but missing from the client's group file: its users will be refused`);
      } else if (mine.remotePort !== app.remotePort && !(app.pool !== undefined && mine.remotePort === 0)) {
        warnings.push(
          `app "${app.name}": the server's registry says remotePort ${app.remotePort}, the client's file says ${mine.remotePort}; the server's applies`,
        );
      } else if ((mine.protocol ?? 'tcp') !== appProtocol(app)) {
        warnings.push(
          `app "${app.name}": the server's registry says type ${app.type ?? 'tcp'}, the client's file says ${mine.protocol ?? 'tcp'}: its users will be refused until both agree`,
        );
      }
      if (mine !== undefined && mine.proxyProtocol !== app.proxyProtocol) {
        warnings.push(
          `app "${app.name}": the server's registry says proxyProtocol ${app.proxyProtocol ?? 'none'}, the client's file says ${mine.proxyProtocol ?? 'none'}; the client's applies (it writes the header)`,
        );
      }
    }
    for (const name of declared.keys()) {
      if (!this.currentSpec.apps.some((app) => app.name === name)) {
        warnings.push(`app "${name}" is in the client's group file but not in the server's registry: it is not exposed`);
      }
    }
    return warnings;
  }
}

/**
 * Whether an edited app (of the same type) is still reached the same way: a TCP or UDP app on
 * its port, or a vhost app under the same names. Otherwise it reopens, so that the client, the
 * metrics and the trace learn its new names (its conns close, as for a new remotePort).
 */
function sameRouting(before: AppSpec, after: AppSpec): boolean {
  if (before.vhost === undefined || after.vhost === undefined) return before.vhost === after.vhost;
  const names = (app: AppSpec): string => JSON.stringify([app.vhost!.type, app.vhost!.domains, app.vhost!.subdomain]);
  return names(before) === names(after);
}

function describeBindError(error: NodeJS.ErrnoException, port: number): string {
  switch (error.code) {
    case 'EADDRINUSE':
      return `port ${port} is already in use`;
    case 'EACCES':
      return `port ${port} is not allowed (privileged port or no permission)`;
    case 'EADDRNOTAVAIL':
      return `the bind address is not available on this host`;
    default:
      return `cannot listen on port ${port}: ${error.message}`;
  }
}

/**
 * The user's address and the public address it reached, for the client's PROXY protocol header.
 * Sent for every app: the header is the local app's business, so the client's file decides.
 */
function userAddressOf(userConn: Socket): { user?: UserAddress } {
  const { remoteAddress, remotePort, localAddress, localPort } = userConn;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return {};
  return { user: { remoteAddress, remotePort, localAddress, localPort } };
}

function uncorkAfterNextPoll(socket: Socket): void {
  setImmediate(uncork, socket);
}

function uncork(socket: Socket): void {
  socket.uncork();
}
