import createDebug from 'debug';
import type { Socket } from 'node:net';
import { firstValueFrom, fromEvent, Subject, type Observable, type SchedulerLike, type Subscription } from 'rxjs';
import { describeChanges, formatHostPort, protocolMark, specChanges, type GroupSpec, type HostPort, type VisitorSpec } from '../config/index.js';
import {
  BACKOFF,
  ControlChannel,
  deadline,
  giveUp,
  InternalErrors,
  MUX_LIMITS_DEFAULTS,
  muxLimitsFor,
  observe,
  retryWithBackoff,
  type BackoffPolicy,
  type ClientTransport,
  type MuxStream,
  type Observed,
} from '../net/index.js';
import { loginProof, PROTOCOL_VERSION, ProtocolError, type AppDeclaration, type LoginRejectCode } from '../protocol/index.js';
import { ClientSession } from './client-session.js';
import { ClusterRefusedError, LoginRejectedError, ServerTrustError, TakenOverError, type ServerRefusal } from './errors.js';
import { ConnectFailed, LoginRound, SessionLost } from './login-round.js';
import type { ClientEvent } from './events.js';
import { dialCommon } from './tls.js';
import { ClientVisitors } from './visitors.js';
import { VisitFailed } from './visits.js';

const debug = createDebug('ntp:client:group-client');

export interface ReconnectPolicy {
  minDelayMs: number;
  maxDelayMs: number;
  factor: number;
}

/** One commonserver to log in on, and how to verify it (a cluster node has its own certificate). */
export interface ServerEndpoint {
  server: HostPort;
  transport: ClientTransport;
}

export interface GroupClientOptions {
  spec: GroupSpec;
  server: HostPort;
  /**
   * Several commonservers of one cluster, tried in turn: a node that is down, that answers
   * GROUP_ACTIVE_ELSEWHERE or NODE_UNAVAILABLE, that refuses for itself only (a refusal in
   * NODE_OWN_REFUSALS) or that cannot be verified sends the client on to the next at once; a
   * backoff pause comes only after a whole round failed, and the client stops only when every
   * node of a round refused for good for the same reason. Replaces `server` and `transport`.
   */
  servers?: ServerEndpoint[];
  /**
   * How to reach the common port. Default: TLS verified against the system's CAs; pin a
   * fingerprint or give a CA for a self-signed server, or ask for plaintext explicitly.
   */
  transport?: ClientTransport;
  /** Stable across restarts of this agent, so that a restart takes its group over at once. */
  clientId: string;
  /** Keep retrying after the server rejects the login (default: exit with its reason). */
  keepRetrying?: boolean;
  reconnect?: Partial<ReconnectPolicy>;
  /**
   * How long a session must have lived for the backoff to start afresh (default 10 s): a
   * session that dies soon after its login counts as one more failure, so a client the
   * server keeps dropping does not reconnect in a tight loop.
   */
  stableSessionMs?: number;
  /** Limit for dialing the server, a local app, and for each login step. */
  dialTimeoutMs?: number;
  /**
   * Pooled work conns the server may make this client hold (being opened or idle); a
   * ReqPooledWorkConns beyond it is trimmed and reported. Default DEFAULT_MAX_POOLED_WORK_CONNS.
   */
  maxPooledWorkConns?: number;
  /** Users the server may open on the mux conn at once (each a local dial); more are refused. Default MUX_LIMITS_DEFAULTS.maxStreams. */
  maxMuxStreams?: number;
  /**
   * The clock of the login deadline, each session's heartbeat, health checks and visits, and
   * the visitors' UDP idle timeout: real time by default, virtual in a test.
   */
  scheduler?: SchedulerLike;
}

/** Four times the server's default pool (16): room for its batches and conns coming back. */
export const DEFAULT_MAX_POOLED_WORK_CONNS = 64;

/**
 * Refusals that speak of the node that gave them: its view of the registry (a node that has
 * not seen the group yet, or is misconfigured: another prefix, another `${VAR}` secret), its
 * protocol version (a rolling upgrade) or its policy. In a cluster another node may answer
 * otherwise. GROUP_IN_USE is not one: it speaks of the group, held by another client.
 */
const NODE_OWN_REFUSALS: ReadonlySet<LoginRejectCode> = new Set(['UNKNOWN_GROUP', 'BAD_SECRET', 'VERSION_MISMATCH', 'POLICY']);

/** The one backoff policy (BACKOFF), in the names of the `reconnect` option. */
export const RECONNECT_DEFAULTS: ReconnectPolicy = { minDelayMs: BACKOFF.firstMs, maxDelayMs: BACKOFF.maxMs, factor: BACKOFF.factor };
const STABLE_SESSION_MS = 10_000;

/**
 * The groupclient: logs its group in over the common conn, serves the session, and when the
 * session is lost logs in again with capped exponential backoff and jitter, forever. The
 * backoff starts afresh only after a session that lived `stableSessionMs`.
 */
export class GroupClient implements Observed<ClientEvent> {
  private readonly events = new Subject<ClientEvent>();
  readonly events$: Observable<ClientEvent> = this.events.asObservable();
  /** Failures of the observers of `events$` (lines, trace), counted by observer. */
  readonly internalErrors = new InternalErrors();
  private readonly stopController = new AbortController();
  private session: ClientSession | undefined;
  private readonly reconnect: BackoffPolicy;
  private readonly dialTimeoutMs: number;
  private readonly endpoints: ServerEndpoint[];
  /** The endpoint tried next; it stays the same while sessions on it succeed. */
  private current = 0;

  constructor(private options: GroupClientOptions) {
    const { minDelayMs, maxDelayMs, factor } = { ...RECONNECT_DEFAULTS, ...options.reconnect };
    this.reconnect = { firstMs: minDelayMs, maxMs: maxDelayMs, factor };
    this.dialTimeoutMs = options.dialTimeoutMs ?? 10_000;
    this.endpoints = options.servers?.length ? [...options.servers] : [{ server: options.server, transport: options.transport ?? { kind: 'tls' } }];
  }

  /** Subscribes an observer of `events$` that can fail without ending the process (see `observe`). */
  observe(where: string, handler: (event: ClientEvent) => void, onComplete?: () => void): Subscription {
    return observe(this.events$, where, handler, this.internalErrors.report, onComplete);
  }

  private get endpoint(): ServerEndpoint {
    return this.endpoints[this.current]!;
  }

  private get transport(): ClientTransport {
    return this.endpoint.transport;
  }

  private readonly emit = (event: ClientEvent): void => {
    debug('%o', event);
    this.events.next(event);
  };

  /**
   * Runs until `stop()` (resolves), or until the server rejects the login for good
   * (rejects with LoginRejectedError: a bad secret or unknown group without `keepRetrying`),
   * the server cannot be verified (ServerTrustError), or another session of this client
   * takes the group over (TakenOverError). RATE_LIMITED is retried: the block is temporary.
   */
  async run(): Promise<void> {
    const { signal } = this.stopController;
    const round = new LoginRound(this.endpoints.length);
    // For the client's whole life, across reconnects: a user who comes between sessions is reset.
    const visitors = new ClientVisitors(this.options.spec.visitors ?? [], this.openVisit, this.emit, this.options.scheduler);
    await visitors.listen();
    try {
      // A run of the retry loop ends when a session that lived `stableSessionMs` ends: the
      // next run logs in again at once and its backoff starts afresh.
      while (!signal.aborted) {
        await retryWithBackoff(() => this.loginAndServe(round), {
          signal,
          policy: this.reconnect,
          // One server of a cluster's round: the next one at once, a pause only once each was tried.
          counts: (error) => !(error instanceof ConnectFailed) || error.next === undefined,
          onFailedAttempt: ({ error, delayMs }) => {
            if (error instanceof ConnectFailed) {
              const { server, attempt, next } = error;
              this.emit({ type: 'connect-failed', server, attempt, reason: error.message, retryInMs: delayMs, ...(next !== undefined ? { next } : {}) });
            } else if (error instanceof SessionLost) {
              this.emit({ type: 'session-lost', ...(error.code ? { code: error.code } : {}), reason: error.message, retryInMs: delayMs });
            }
          },
        });
      }
      this.emit({ type: 'stopped', reason: 'on request', fatal: false });
    } catch (error) {
      if (signal.aborted && !(error instanceof LoginRejectedError)) {
        this.emit({ type: 'stopped', reason: 'on request', fatal: false });
        return;
      }
      // A rejection's reason was just printed with its login-rejected event: name only the code.
      const reason =
        error instanceof LoginRejectedError
          ? `login rejected (${error.code})`
          : error instanceof ClusterRefusedError
            ? `every server refused (${error.code})`
            : (error as Error).message;
      this.emit({ type: 'stopped', reason, fatal: true });
      throw error;
    } finally {
      visitors.close();
      this.events.complete();
    }
  }

  private readonly openVisit = (visitor: VisitorSpec): Promise<MuxStream> =>
    this.session?.visit(visitor) ?? Promise.reject(new VisitFailed('not logged in to the server now', false));

  /**
   * One attempt of the retry loop: a login, then its session until it ends. Rejects with
   * ConnectFailed or SessionLost (tried again), or with an error given up on; resolves when
   * stopped, or when a session that lived long enough ended (the backoff starts afresh).
   */
  private async loginAndServe(round: LoginRound): Promise<void> {
    const { signal } = this.stopController;
    const server = formatHostPort(this.endpoint.server);
    let session: ClientSession;
    try {
      session = await this.login(round.nextAttempt());
    } catch (error) {
      if (signal.aborted) return;
      if (this.isFatal(error)) throw giveUp(error as Error);
      this.current = (this.current + 1) % this.endpoints.length;
      const verdict = round.failed(this.nodeRefusal(server, error));
      if (verdict !== undefined) throw giveUp(verdict);
      const next = round.over ? undefined : formatHostPort(this.endpoint.server);
      throw new ConnectFailed(server, round.attempt, error as Error, next);
    }
    round.loggedIn();
    this.session = session;
    const loggedInAt = Date.now();
    const end = await session.ended;
    this.session = undefined;
    if (signal.aborted) return;
    // Taken over: this session must not fight back, so it is not "lost; reconnecting".
    if (end.code === 'TAKEN_OVER') throw giveUp(new TakenOverError(end.reason));
    if (Date.now() - loggedInAt < (this.options.stableSessionMs ?? STABLE_SESSION_MS)) throw new SessionLost(end.reason, end.code);
    this.emit({ type: 'session-lost', ...(end.code ? { code: end.code } : {}), reason: end.reason, retryInMs: 0 });
  }

  /** Errors no retry and no other server can fix: they end `run()` at once. */
  private isFatal(error: unknown): boolean {
    if (this.endpoints.length > 1 && (error instanceof ServerTrustError || (error instanceof LoginRejectedError && NODE_OWN_REFUSALS.has(error.code)))) {
      return false;
    }
    if (error instanceof ServerTrustError) return true;
    return error instanceof LoginRejectedError && !this.retries(error.code);
  }

  /**
   * What a cluster's server refused for good, for itself only: a certificate that does not
   * verify (nothing of the login was sent to it), or a login refusal it alone may give.
   */
  private nodeRefusal(server: string, error: unknown): ServerRefusal | undefined {
    if (error instanceof ServerTrustError) return { server, code: error.code, reason: error.message };
    if (error instanceof LoginRejectedError && !this.retries(error.code)) return { server, code: error.code, reason: error.reason };
    return undefined;
  }

  /** A refused login is retried when it is temporary, or when the user asked to keep retrying. */
  private retries(code: LoginRejectCode): boolean {
    // A cluster node that cannot take the group now: another node can, or this one later.
    if (code === 'GROUP_ACTIVE_ELSEWHERE' || code === 'NODE_UNAVAILABLE') return true;
    return code === 'RATE_LIMITED' || this.options.keepRetrying === true;
  }

  /**
   * Applies an edited group file: the next work conns dial the new local targets (the server's
   * apps, once it sent them, stay in force: the returned warnings name each app the file says
   * otherwise), running relays keep flowing, and the secret and app list are sent at the next
   * login. The server address and TLS settings were fixed when this client was built: the
   * event says so.
   */
  updateSpec(spec: GroupSpec): string[] {
    if (spec.name !== this.options.spec.name) {
      throw new Error(`the group file now names group "${spec.name}", not "${this.options.spec.name}": restart the groupclient to change group`);
    }
    const edits = specChanges(this.options.spec, spec);
    this.options = { ...this.options, spec };
    const overridden = this.session?.updateSpec(spec);
    // Once the server has sent its apps, an edit of the file's apps changes nothing served: say
    // so, naming each app the file says otherwise, instead of "served from now on".
    const changes = describeChanges(overridden === undefined ? edits : edits.filter(({ field }) => !field.startsWith('apps.')), 'client');
    const warnings = overridden ?? [];
    this.emit({ type: 'spec-reloaded', apps: spec.apps.map((app) => app.name), changes, ...(warnings.length ? { warnings } : {}) });
    return [...changes, ...warnings.map((warning) => `warning: ${warning}`)];
  }

  /** The group file as last loaded. */
  get spec(): GroupSpec {
    return this.options.spec;
  }

  /** What the client serves now: the current session's apps (the server's, when it sends them), else the group file's. */
  get servedSpec(): GroupSpec {
    return this.session?.servedSpec ?? this.options.spec;
  }

  /** Says goodbye to the server and tears down every relay. */
  stop(reason = 'the groupclient is stopping'): void {
    this.stopController.abort();
    this.session?.close(reason);
  }

  /** One attempt: connect, Hello, Challenge, Login, LoginResp. Resolves with a live session. */
  private async login(attempt: number): Promise<ClientSession> {
    const { spec, clientId } = this.options;
    const { server } = this.endpoint;
    this.emit({ type: 'connecting', server: formatHostPort(server), attempt });
    const socket = await this.dialUnlessStopped(server);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('error', (error) => debug('common conn: %s', error.message));
    const channel = new ControlChannel(socket);
    // The login deadline: the exchange below fails with the channel destroyed under it.
    const loggedIn$ = new Subject<void>();
    deadline(this.dialTimeoutMs, loggedIn$, this.options.scheduler).subscribe(() => channel.destroy());
    const onStop = (): void => channel.destroy();
    this.stopController.signal.addEventListener('abort', onStop, { once: true });
    try {
      // An unknown group or a version mismatch is refused before any Challenge.
      const challenge = channel.next('Challenge', 'LoginResp');
      channel.send({ type: 'Hello', version: PROTOCOL_VERSION, group: spec.name, clientId });
      const first = await challenge.catch((error: Error) => {
        // A TLS server drops a plaintext Hello without a word: say what the likely cause is.
        if (this.transport.kind === 'plain') error.message += ' (plaintext: if the server uses TLS, drop --plaintext and pin its fingerprint)';
        throw error;
      });
      if (first.type === 'LoginResp') {
        throw first.error ? this.rejection(first.error) : new ProtocolError('UNEXPECTED_MESSAGE', 'LoginResp accepted a login before any Challenge');
      }
      const reply = channel.next('LoginResp');
      channel.send({
        type: 'Login',
        proof: loginProof(spec.secret.reveal(), first.nonce, spec.name, clientId),
        apps: declaredApps(spec),
        // Always offered: the server's config decides (LoginResp.mux, then ReqMuxConn).
        mux: true,
        // This client serves the server's apps (GroupApps) inside its allowLocal.
        takesApps: true,
      });
      const resp = await reply;
      if (resp.error !== undefined) throw this.rejection(resp.error);
      const session = new ClientSession({
        channel,
        spec,
        server,
        transport: this.transport,
        sessionId: resp.sessionId!,
        heartbeatIntervalMs: resp.heartbeatIntervalMs!,
        heartbeatTimeoutMs: resp.heartbeatTimeoutMs!,
        dialTimeoutMs: this.dialTimeoutMs,
        maxPooledWorkConns: this.options.maxPooledWorkConns ?? DEFAULT_MAX_POOLED_WORK_CONNS,
        muxLimits: muxLimitsFor(this.options.maxMuxStreams ?? MUX_LIMITS_DEFAULTS.maxStreams),
        emit: this.emit,
        scheduler: this.options.scheduler,
      });
      session.start();
      this.emit({ type: 'login-accepted', server: formatHostPort(server), apps: resp.apps ?? [], warnings: resp.warnings ?? [] });
      return session;
    } catch (error) {
      channel.destroy();
      throw error;
    } finally {
      loggedIn$.next();
      loggedIn$.complete();
      this.stopController.signal.removeEventListener('abort', onStop);
    }
  }

  /**
   * Dials the common port; a stop meanwhile does not wait for the dial (up to its timeout, on
   * a path that drops packets): the late socket is destroyed when it comes.
   */
  private async dialUnlessStopped(server: HostPort): Promise<Socket> {
    const { signal } = this.stopController;
    const dial = dialCommon(server, this.transport, this.dialTimeoutMs);
    const stopped = firstValueFrom(fromEvent(signal, 'abort'));
    const first = await Promise.race([dial, stopped]);
    if (!signal.aborted) return first as Socket;
    void dial.then(
      (late) => late.destroy(),
      () => {},
    );
    throw new Error('stopped while dialing the server');
  }

  /** What to throw for a refused login (`run` decides whether it is retried). */
  private rejection({ code, reason }: { code: LoginRejectCode; reason: string }): Error {
    const tryingNext = this.endpoints.length > 1 && (NODE_OWN_REFUSALS.has(code) || code === 'GROUP_ACTIVE_ELSEWHERE' || code === 'NODE_UNAVAILABLE');
    const server = formatHostPort(this.endpoint.server);
    this.emit({ type: 'login-rejected', server, code, reason, willRetry: tryingNext || this.retries(code), ...(tryingNext ? { tryingNext } : {}) });
    return new LoginRejectedError(code, reason);
  }
}

/** The apps of the client's own group file as its Login declares them (local targets stay here). */
export function declaredApps(spec: GroupSpec): AppDeclaration[] {
  return spec.apps.map((app) => ({
    name: app.name,
    remotePort: app.remotePort,
    ...protocolMark(app),
    ...(app.proxyProtocol ? { proxyProtocol: app.proxyProtocol } : {}),
  }));
}
