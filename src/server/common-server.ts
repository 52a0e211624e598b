import createDebug from 'debug';
import type { AddressInfo, Server, Socket } from 'node:net';
import { Subject, type Observable, type SchedulerLike, type Subscription } from 'rxjs';
import {
  describeChanges,
  formatHostPort,
  LIMITS_DEFAULTS,
  formatDuration,
  LOGIN_LIMIT_DEFAULTS,
  SERVER_DEFAULTS,
  specChanges,
  type GroupSpec,
  type PolicyConfig,
  publicPolicyOf,
  type PublicPolicy,
  type PoolsConfig,
  type Secret,
  type SecurityConfig,
  type ServerConfig,
} from '../config/index.js';
import {
  ControlChannel,
  deadline,
  FrameReader,
  InternalErrors,
  observe,
  peerOf,
  PLAINTEXT,
  resetSocket,
  type Observed,
  type ServerTransport,
} from '../net/index.js';
import { ProtocolError, type GoodbyeCode, type Hello, type LoginRejectCode, type Message, type NewWorkConn } from '../protocol/index.js';
import type { ActivationGate } from './session/activation-gate.js';
import { AppGroup } from './session/app-group.js';
import { SharedPorts } from './shared-ports/shared-ports.js';
import type { BindRetryPolicy } from './public/bind-retry.js';
import type { BadPeerCode, ServerEvent } from './events.js';
import { HandshakeGate } from './session/handshake-gate.js';
import { LoginGuard } from './session/login-limiter.js';
import { runLogin } from './session/login.js';
import { groupRefusal } from './public/policy.js';
import { VhostServer } from '../vhost/index.js';
import { createCommonListener } from './tls.js';
import { serveVisit } from './users/visits.js';

const debug = createDebug('ntp:server:common-server');
/** How long a shutdown waits for its Goodbyes to leave before it ends the conns still open. */
const CLOSE_GRACE_MS = 2000;

export type CommonServerOptions = Pick<ServerConfig, 'bind' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs' | 'pairingTimeoutMs' | 'handshakeTimeoutMs'> &
  Partial<Pick<ServerConfig, 'workConnPool' | 'mux' | 'pools' | 'vhost' | 'admin' | 'publicBind'>> &
  Partial<Pick<SecurityConfig, 'policy' | 'loginLimit' | 'limits'>> & {
    /** Plain TCP unless TLS material is given (the CLI always decides explicitly). */
    transport?: ServerTransport;
    /** How often each app reports its `traffic` (default 1000 ms). */
    trafficSampleMs?: number;
    /** How a busy public port is tried again (default 1 s doubling to 30 s). */
    bindRetry?: BindRetryPolicy;
    /** A cluster node's claim on each group in etcd; a single server activates on its own. */
    activationGate?: ActivationGate;
    /** The clock of the login deadline and of each session's heartbeat watchdog and pairing deadlines: real time by default, virtual in a test. */
    scheduler?: SchedulerLike;
  };

/**
 * The public server. Listens on the common port, where each new connection's first frame
 * decides what it is: Hello opens a control conn (login, then the group is activated),
 * NewWorkConn joins a held UserConn.
 *
 * - `readyGroup`: every group registered (from the groups directory).
 * - `inUseGroup`: the groups whose client is logged in, as activated AppGroups.
 */
export class CommonServer implements Observed<ServerEvent> {
  readonly readyGroup = new Map<string, GroupSpec>();
  readonly inUseGroup = new Map<string, AppGroup>();
  private readonly sessions = new Map<string, AppGroup>();
  private readonly events = new Subject<ServerEvent>();
  readonly events$: Observable<ServerEvent> = this.events.asObservable();
  /** Failures of the observers of `events$` (metrics, admin state, lines, traces), counted by observer. */
  readonly internalErrors = new InternalErrors();
  private readonly commonPort: Server;
  /** Every conn the common port accepted, until it closes (whoever holds it now). */
  private readonly accepted = new Set<Socket>();
  private readonly handshaking = new Set<Socket>();
  private readonly gate: HandshakeGate;
  private readonly loginGuard: LoginGuard;
  /** The secret each live session proved at its login: a registry edit that changes it ends the session. */
  private readonly loginSecrets = new WeakMap<AppGroup, Secret>();
  private closing = false;
  /** The shared HTTP/HTTPS ports, when the config has a `vhost:` section. */
  readonly vhost: VhostServer | undefined;
  /** What the server allows on the public side of each app: activation and the admin API judge by it. */
  readonly publicPolicy: PublicPolicy;

  /** Shared pools: public ports (or vhost names) served by several groups' apps. */
  readonly pools: SharedPorts;

  constructor(private readonly options: CommonServerOptions) {
    this.vhost =
      options.vhost === undefined
        ? undefined
        : new VhostServer(options.vhost, { onRefused: (kind, remote, code, reason) => this.emit({ type: 'vhost-refused', kind, remote, code, reason }) });
    // Public ports follow the common port's address unless publicBind names their own.
    this.pools = new SharedPorts(options.publicBind ?? options.bind.host, options.pools ?? {}, this.emit, this.vhost?.router);
    this.publicPolicy = publicPolicyOf(options);
    this.gate = new HandshakeGate(options.limits ?? LIMITS_DEFAULTS);
    this.loginGuard = new LoginGuard(options.loginLimit ?? LOGIN_LIMIT_DEFAULTS, this.emit);
    this.commonPort = createCommonListener(
      options.transport ?? PLAINTEXT,
      options.handshakeTimeoutMs,
      this.onCommonConn,
      (remote, error) => this.badPeer(remote, 'TLS_HANDSHAKE', `TLS handshake failed: ${(error as NodeJS.ErrnoException).code ?? error.message}`),
      options.scheduler,
    );
    // Runs before the TLS layer sees the raw socket: a flood is refused before any handshake work.
    this.commonPort.prependListener('connection', this.onRawConn);
    this.commonPort.on('error', (error) => debug('common port error: %s', error.message));
  }

  /** Connections on the common port still logging in or joining (bounded by `limits`). */
  get pendingHandshakes(): number {
    return this.gate.size;
  }

  private readonly emit = (event: ServerEvent): void => {
    debug('%o', event);
    this.events.next(event);
  };

  /** Subscribes an observer of `events$` that can fail without ending the process (see `observe`). */
  observe(where: string, handler: (event: ServerEvent) => void, onComplete?: () => void): Subscription {
    return observe(this.events$, where, handler, this.internalErrors.report, onComplete);
  }

  /** Conns the common port holds open now, whoever owns them: control conns, work conns, mux conns and handshakes. */
  get openConns(): number {
    return this.accepted.size;
  }

  /** Login proofs checked against a secret since start (bounded per source by `loginLimit`). */
  get loginProofsChecked(): number {
    return this.loginGuard.proofsChecked;
  }

  /** The server config's `pools` (ports, balance, who may join): the registry checks group files against it. */
  get poolsConfig(): PoolsConfig {
    return this.options.pools ?? {};
  }

  /** What groups may ask for (allowPorts, maxAppsPerGroup...): the admin API checks it too. */
  get policy(): PolicyConfig {
    return this.options.policy ?? {};
  }

  registerGroup(spec: GroupSpec): void {
    this.readyGroup.set(spec.name, spec);
    this.vhost?.registryChanged(this.readyGroup.values());
    this.emit({ type: 'group-registered', group: spec.name, apps: spec.apps.length });
  }

  /**
   * Replaces a registered group's spec (an edited group file). A live session applies the
   * app changes at once; a new secret ends it at once (see `endSessionOfOldSecret`).
   */
  async updateGroup(spec: GroupSpec): Promise<void> {
    const before = this.readyGroup.get(spec.name);
    if (before === undefined) return this.registerGroup(spec);
    this.readyGroup.set(spec.name, spec);
    this.vhost?.registryChanged(this.readyGroup.values());
    this.emit({ type: 'group-updated', group: spec.name, apps: spec.apps.length, changes: describeChanges(specChanges(before, spec), 'server') });
    if (this.endSessionOfOldSecret(spec)) return;
    await this.inUseGroup.get(spec.name)?.updateSpec(spec);
  }

  /**
   * A new secret revokes the old one: whoever logged in with it (perhaps someone it leaked
   * to) loses the group and its users at once, instead of holding it until its next login
   * while the real client is refused with GROUP_IN_USE. True if a session was ended.
   */
  private endSessionOfOldSecret(spec: GroupSpec): boolean {
    const live = this.inUseGroup.get(spec.name);
    const proven = live === undefined ? undefined : this.loginSecrets.get(live);
    if (live === undefined || proven === undefined || proven.equals(spec.secret)) return false;
    live.deactivate('SECRET_CHANGED', "the group's secret changed; log in again with the new one");
    return true;
  }

  /** A group file that could not be (re)loaded: reported; the last good version stays. */
  reportRegistrationFailure(file: string, reason: string): void {
    this.emit({ type: 'group-registration-failed', file, reason });
  }

  /** Removes a group from the registry; a live client of it is disconnected. */
  deregisterGroup(name: string): void {
    if (!this.readyGroup.delete(name)) return;
    this.vhost?.registryChanged(this.readyGroup.values());
    this.inUseGroup.get(name)?.deactivate('DEREGISTERED', 'the group was removed from the registry');
    this.emit({ type: 'group-deregistered', group: name });
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.commonPort.once('error', reject);
      this.commonPort.listen({ host: this.options.bind.host, port: this.options.bind.port }, () => {
        this.commonPort.off('error', reject);
        resolve();
      });
    });
    const address = this.address();
    this.emit({ type: 'listening', address: formatHostPort({ host: address.address, port: address.port }) });
    if (this.vhost !== undefined) {
      const ports = await this.vhost.listen();
      for (const kind of ['http', 'https'] as const) {
        const port = ports[kind];
        if (port !== undefined) this.emit({ type: 'vhost-listening', kind, address: formatHostPort({ host: this.options.vhost![kind]!.host, port }) });
      }
    }
    return address;
  }

  address(): AddressInfo {
    return this.commonPort.address() as AddressInfo;
  }

  /** Tells every client goodbye, closes every port and connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const group of [...this.inUseGroup.values()]) {
      group.deactivate('SHUTDOWN', 'the commonserver is shutting down');
    }
    for (const socket of this.handshaking) socket.destroy();
    this.gate.destroyAll();
    const portClosed$ = new Subject<void>();
    const portClosed = new Promise<void>((resolve) =>
      this.commonPort.close(() => {
        portClosed$.next();
        resolve();
      }),
    );
    // The port closes once every conn it accepted has. A conn that no session holds any more
    // would keep it waiting forever (a mux conn whose client's FIN was read before its session
    // ended did, until MuxSession closed its end on a FIN): after a grace for the Goodbyes in
    // flight, every accepted conn still open is ended, whatever path left it.
    const sweep = deadline(CLOSE_GRACE_MS, portClosed$, this.options.scheduler).subscribe(() => {
      debug('%d conns still open %s after the shutdown began: ended', this.accepted.size, formatDuration(CLOSE_GRACE_MS));
      for (const socket of this.accepted) socket.destroy();
    });
    await Promise.all([portClosed, this.vhost?.close()]);
    sweep.unsubscribe();
    this.events.complete();
  }

  private readonly onRawConn = (socket: Socket): void => {
    socket.on('error', (error) => debug('raw conn: %s', error.message));
    this.accepted.add(socket);
    socket.once('close', () => this.accepted.delete(socket));
    const refusal = this.closing ? undefined : this.gate.admit(socket, this.hasSessionFrom(socket.remoteAddress));
    if (refusal !== undefined) {
      this.badPeer(peerOf(socket), 'TOO_MANY_HANDSHAKES', refusal);
      socket.destroy();
    }
  };

  private hasSessionFrom(address: string | undefined): boolean {
    if (address === undefined) return false;
    for (const group of this.inUseGroup.values()) if (group.clientSource === address) return true;
    return false;
  }

  private readonly onCommonConn = (socket: Socket): void => {
    const peer = peerOf(socket);
    socket.on('error', onCommonConnError);
    if (this.closing || socket.destroyed) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    this.handshaking.add(socket);

    // One verdict per connection: the deadline's destroy also fails a login in progress,
    // which must not be reported a second time.
    let reported = false;
    const reportBadPeer = (code: BadPeerCode, reason: string): void => {
      if (reported) return;
      reported = true;
      this.badPeer(peer, code, reason);
    };

    // Slowloris guard: a connection must finish its login or join within the login deadline.
    const handshakeOver$ = new Subject<void>();
    deadline(this.options.handshakeTimeoutMs, handshakeOver$, this.options.scheduler).subscribe((ms) => {
      reportBadPeer('HANDSHAKE_TIMEOUT', `no login or join within ${formatDuration(ms)}`);
      socket.destroy();
    });
    // Removed once settled: a listener left on a work conn would keep this handshake's state
    // (reader, subscriptions) alive for the conn's whole life, ~1 KB each at 10,000 conns.
    const settled = (): void => {
      socket.off('close', settled);
      handshakeOver$.next();
      handshakeOver$.complete();
      this.handshaking.delete(socket);
      this.gate.settle(peer);
    };
    socket.once('close', settled);

    const reader = new FrameReader(socket);
    const firstFrame = reader.messages$.subscribe({
      next: (message: Message) => {
        firstFrame.unsubscribe(); // later frames belong to the login or the relay
        reader.hold();
        if (message.type === 'NewWorkConn') {
          settled();
          reader.detach();
          this.onWorkConn(message, socket, peer);
        } else if (message.type === 'Hello') {
          const channel = new ControlChannel(socket, reader, (this.options.limits ?? LIMITS_DEFAULTS).maxControlQueueBytes);
          void this.onControlConn(channel, message, reportBadPeer).finally(settled);
        } else {
          settled();
          reportBadPeer('UNEXPECTED_MESSAGE', `first frame must be Hello or NewWorkConn, got ${message.type}`);
          socket.destroy();
        }
      },
      error: (error: ProtocolError) => {
        settled();
        reportBadPeer(error.code, error.message);
        socket.destroy();
      },
      // A FIN before any frame (a port probe): nothing to report, but with allowHalfOpen our
      // side would stay open until the handshake deadline.
      complete: () => {
        settled();
        debug('common conn %s closed before its first frame', peer);
        socket.destroy();
      },
    });
  };

  private async onControlConn(channel: ControlChannel, hello: Hello, reportBadPeer: (code: BadPeerCode, reason: string) => void): Promise<void> {
    this.emit({ type: 'client-connected', group: hello.group, clientId: hello.clientId, remote: channel.peer });
    const admitted = await this.loginGuard.admit(channel);
    if (admitted === 'closed') return channel.destroy();
    if (admitted !== 'proceed') return this.refuseLogin(channel, hello, 'RATE_LIMITED', admitted.refuse);
    let outcome;
    try {
      outcome = await runLogin(channel, hello, {
        readyGroup: this.readyGroup,
        liveGroup: (name) => this.inUseGroup.get(name),
        onProofChecked: this.loginGuard.countProof,
      });
    } catch (error) {
      this.loginGuard.abandon(channel);
      channel.destroy();
      // A peer that just went away (or was cut by the handshake deadline, already reported)
      // is not worth a line of its own.
      if (error instanceof ProtocolError && error.code === 'CONNECTION_CLOSED') {
        debug('login of group %s from %s abandoned: %s', hello.group, channel.peer, error.message);
        return;
      }
      const code = error instanceof ProtocolError ? error.code : 'LOGIN_FAILED';
      reportBadPeer(code, `login of group "${hello.group}" failed: ${(error as Error).message}`);
      return;
    }
    this.loginGuard.record(channel, outcome.accepted ? undefined : outcome.code);
    if (!outcome.accepted) return this.refuseLogin(channel, hello, outcome.code, outcome.reason);
    const live = this.inUseGroup.get(hello.group);
    const refusal = groupRefusal(this.policy, outcome.spec, this.inUseGroup.size, live !== undefined);
    if (refusal !== undefined) return this.refuseLogin(channel, hello, 'POLICY', refusal);
    if (this.closing || !channel.open) {
      channel.destroy();
      return;
    }
    const gate = this.options.activationGate;
    if (gate !== undefined && live === undefined) {
      const claim = await gate.claim(hello.group, { clientId: hello.clientId, clientAddress: channel.peer });
      if (!claim.granted) return this.refuseLogin(channel, hello, claim.code, claim.reason);
      // Gone while etcd answered (or another session of this node won meanwhile): let the claim go.
      if (this.closing || !channel.open || this.inUseGroup.has(hello.group)) {
        if (!this.inUseGroup.has(hello.group)) gate.release(hello.group);
        channel.destroy();
        return;
      }
    }
    // Same client id: the old session may look alive but its path can be silently dead.
    // The new, authenticated session wins at once and gets the ports.
    this.inUseGroup.get(hello.group)?.deactivate('TAKEN_OVER', `taken over by a new session of the same client from ${channel.peer}`);

    const mux = (this.options.mux ?? SERVER_DEFAULTS.mux) && outcome.login.mux === true;
    const limits = this.options.limits ?? LIMITS_DEFAULTS;
    const group = new AppGroup({
      spec: outcome.spec,
      channel,
      clientId: hello.clientId,
      declaredApps: outcome.login.apps,
      takesApps: outcome.login.takesApps === true,
      bindHost: this.options.publicBind ?? this.options.bind.host,
      pools: this.pools,
      heartbeatTimeoutMs: this.options.heartbeatTimeoutMs,
      pairingTimeoutMs: this.options.pairingTimeoutMs,
      publicPolicy: this.publicPolicy,
      maxPendingUsersPerApp: limits.maxPendingUsersPerApp,
      ...(this.options.trafficSampleMs === undefined ? {} : { trafficSampleMs: this.options.trafficSampleMs }),
      workConnPool: this.options.workConnPool ?? SERVER_DEFAULTS.workConnPool,
      mux,
      muxLimits: { maxStreams: limits.maxMuxStreams, budgetBytes: limits.muxBudgetBytes },
      ...(this.options.bindRetry === undefined ? {} : { bindRetry: this.options.bindRetry }),
      ...(this.vhost === undefined ? {} : { vhost: this.vhost }),
      emit: this.emit,
      events$: this.events$,
      onDeactivated: this.onGroupDeactivated,
      onVisit: (visitor, visit) => serveVisit(visit, visitor, this.inUseGroup.get(visit.group), this.emit),
      scheduler: this.options.scheduler,
    });
    this.inUseGroup.set(group.name, group);
    this.loginSecrets.set(group, outcome.spec.secret);
    this.sessions.set(group.sessionId, group);
    const { apps, warnings } = await group.activate();
    if (!group.isActive) return;
    channel.send({
      type: 'LoginResp',
      sessionId: group.sessionId,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.options.heartbeatTimeoutMs,
      apps,
      warnings,
      ...(mux ? { mux } : {}),
    });
    group.sendApps();
    group.fillPool();
    this.emit({ type: 'group-activated', group: group.name, clientId: group.clientId, remote: channel.peer, apps, warnings });
  }

  private refuseLogin(channel: ControlChannel, hello: Hello, code: LoginRejectCode, reason: string): void {
    this.emit({ type: 'login-rejected', group: hello.group, remote: channel.peer, code, reason });
    channel.sendLast({ type: 'LoginResp', error: { code, reason } });
  }

  private readonly onGroupDeactivated = (group: AppGroup): void => {
    this.sessions.delete(group.sessionId);
    // A takeover may already have put the new session in place.
    if (this.inUseGroup.get(group.name) === group) {
      this.inUseGroup.delete(group.name);
      this.options.activationGate?.release(group.name);
    }
  };

  /**
   * Ends every live session at once (their users reset): a cluster node that lost its etcd
   * lease must stop serving before another node may take its groups.
   */
  deactivateAll(code: GoodbyeCode, reason: string): void {
    for (const group of [...this.inUseGroup.values()]) group.deactivate(code, reason);
  }

  private onWorkConn(message: NewWorkConn, workConn: Socket, peer: string): void {
    const group = this.sessions.get(message.sessionId);
    const refusal = group === undefined ? 'unknown or ended session' : group.acceptWorkConn(message, workConn);
    if (refusal !== null) {
      this.badPeer(peer, 'BAD_WORK_CONN', `work conn refused: ${refusal}`);
      // A reset, not a FIN: a client joins a work conn to its local app before the server takes
      // it, and a FIN would reach that app as the clean end of an empty answer, its conn held
      // half-open (CLOSE-WAIT at the client) for as long as the app keeps its own side open.
      resetSocket(workConn);
    }
  }

  private badPeer(remote: string, code: BadPeerCode, reason: string): void {
    this.emit({ type: 'bad-peer', remote, code, reason });
  }
}

// Module-level, so that the listener every conn keeps for its lifetime holds no handshake state.
function onCommonConnError(this: Socket, error: Error): void {
  debug('common conn %s: %s', peerOf(this), error.message);
}
