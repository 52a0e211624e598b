import createDebug from 'debug';
import pRetry, { AbortError } from 'p-retry';
import { Subject, type Observable } from 'rxjs';
import { describeChanges, formatHostPort, specChanges, type GroupSpec, type HostPort } from '../config/index.js';
import { ControlChannel, dialCommon, ServerTrustError, type ClientTransport } from '../net/index.js';
import { loginProof, PROTOCOL_VERSION, ProtocolError, type LoginRejectCode } from '../protocol/index.js';
import { ClientSession } from './client-session.js';
import { LoginRejectedError, TakenOverError } from './errors.js';
import type { ClientEvent } from './events.js';

const debug = createDebug('ntp:client:group-client');

export interface ReconnectPolicy {
  minDelayMs: number;
  maxDelayMs: number;
  factor: number;
}

export interface GroupClientOptions {
  spec: GroupSpec;
  server: HostPort;
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
  /** Limit for dialing the server, a local app, and for each login step. */
  dialTimeoutMs?: number;
  /**
   * Pooled work conns the server may make this client hold (being opened or idle); a
   * ReqPooledWorkConns beyond it is trimmed and reported. Default DEFAULT_MAX_POOLED_WORK_CONNS.
   */
  maxPooledWorkConns?: number;
}

/** Four times the server's default pool (16): room for its batches and conns coming back. */
export const DEFAULT_MAX_POOLED_WORK_CONNS = 64;

export const RECONNECT_DEFAULTS: ReconnectPolicy = { minDelayMs: 500, maxDelayMs: 20_000, factor: 2 };

/**
 * The groupclient: logs its group in over the common conn, serves the session, and when the
 * session is lost logs in again with capped exponential backoff and jitter, forever. The
 * backoff starts afresh after every successful login.
 */
export class GroupClient {
  private readonly events = new Subject<ClientEvent>();
  readonly events$: Observable<ClientEvent> = this.events.asObservable();
  private readonly stopController = new AbortController();
  private session: ClientSession | undefined;
  private readonly reconnect: ReconnectPolicy;
  private readonly dialTimeoutMs: number;
  private readonly transport: ClientTransport;

  constructor(private options: GroupClientOptions) {
    this.reconnect = { ...RECONNECT_DEFAULTS, ...options.reconnect };
    this.dialTimeoutMs = options.dialTimeoutMs ?? 10_000;
    this.transport = options.transport ?? { kind: 'tls' };
  }

  private readonly emit = (event: ClientEvent): void => {
    debug('%o', event);
    this.events.next(event);
  };

  /**
   * Runs until `stop()` (resolves), or until the server rejects the login without
   * `keepRetrying` (rejects with LoginRejectedError), or another session of this client
   * takes the group over (rejects with TakenOverError).
   */
  async run(): Promise<void> {
    const { signal } = this.stopController;
    const server = formatHostPort(this.options.server);
    try {
      while (!signal.aborted) {
        const session = await pRetry((attempt) => this.login(attempt), {
          retries: Number.POSITIVE_INFINITY,
          factor: this.reconnect.factor,
          minTimeout: this.reconnect.minDelayMs,
          maxTimeout: this.reconnect.maxDelayMs,
          randomize: true,
          signal,
          onFailedAttempt: ({ error, attemptNumber }) => {
            if (signal.aborted) return;
            const base = Math.min(this.reconnect.maxDelayMs, this.reconnect.minDelayMs * this.reconnect.factor ** (attemptNumber - 1));
            this.emit({ type: 'connect-failed', server, attempt: attemptNumber, reason: error.message, retryInMs: base });
          },
        });
        this.session = session;
        const end = await session.ended;
        this.session = undefined;
        if (signal.aborted) break;
        // Taken over: this session must not fight back, so it is not "lost; reconnecting".
        if (end.code === 'TAKEN_OVER') throw new TakenOverError(end.reason);
        this.emit({ type: 'session-lost', ...(end.code ? { code: end.code } : {}), reason: end.reason });
      }
      this.emit({ type: 'stopped', reason: 'on request' });
    } catch (error) {
      const cause = error instanceof AbortError ? error.originalError : error;
      if (signal.aborted && !(cause instanceof LoginRejectedError)) {
        this.emit({ type: 'stopped', reason: 'on request' });
        return;
      }
      // A rejection's reason was just printed with its login-rejected event: name only the code.
      const reason = cause instanceof LoginRejectedError ? `login rejected (${cause.code})` : (cause as Error).message;
      this.emit({ type: 'stopped', reason });
      throw cause;
    } finally {
      this.events.complete();
    }
  }

  /**
   * Applies an edited group file: the next work conns dial the new local targets, running
   * relays keep flowing, and the secret and app list are sent at the next login. The server
   * address and TLS settings were fixed when this client was built: the event says so.
   */
  updateSpec(spec: GroupSpec): void {
    if (spec.name !== this.options.spec.name) {
      throw new Error(`the group file now names group "${spec.name}", not "${this.options.spec.name}": restart the groupclient to change group`);
    }
    const changes = describeChanges(specChanges(this.options.spec, spec), 'client');
    this.options = { ...this.options, spec };
    this.session?.updateSpec(spec);
    this.emit({ type: 'spec-reloaded', apps: spec.apps.map((app) => app.name), changes });
  }

  /** Says goodbye to the server and tears down every relay. */
  stop(reason = 'the groupclient is stopping'): void {
    this.stopController.abort();
    this.session?.close(reason);
  }

  /** One attempt: connect, Hello, Challenge, Login, LoginResp. Resolves with a live session. */
  private async login(attempt: number): Promise<ClientSession> {
    const { spec, server, clientId } = this.options;
    this.emit({ type: 'connecting', server: formatHostPort(server), attempt });
    let socket;
    try {
      socket = await dialCommon(server, this.transport, this.dialTimeoutMs);
    } catch (error) {
      // A server we cannot verify is not a network hiccup: retrying would only hide it.
      if (error instanceof ServerTrustError) throw new AbortError(error);
      throw error;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('error', (error) => debug('common conn: %s', error.message));
    const channel = new ControlChannel(socket);
    const giveUp = setTimeout(() => channel.destroy(), this.dialTimeoutMs);
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
        apps: spec.apps.map((app) => ({ name: app.name, remotePort: app.remotePort })),
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
        emit: this.emit,
      });
      session.start();
      this.emit({ type: 'login-accepted', server: formatHostPort(server), apps: resp.apps ?? [], warnings: resp.warnings ?? [] });
      return session;
    } catch (error) {
      channel.destroy();
      throw error;
    } finally {
      clearTimeout(giveUp);
      this.stopController.signal.removeEventListener('abort', onStop);
    }
  }

  /** What to throw for a refused login: retried only when the user asked to keep retrying. */
  private rejection({ code, reason }: { code: LoginRejectCode; reason: string }): Error {
    this.emit({ type: 'login-rejected', code, reason, willRetry: this.options.keepRetrying === true });
    const rejected = new LoginRejectedError(code, reason);
    return this.options.keepRetrying ? rejected : new AbortError(rejected);
  }
}
