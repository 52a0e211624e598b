import createDebug from 'debug';
import type { Socket } from 'node:net';
import { MuxSession, retryWithBackoff, type MuxLimits, type MuxStream } from '../../net/index.js';
import { randomId, type Message, type ProtocolError, type StartWorkConn } from '../../protocol/index.js';
import type { EmitServerEvent } from '../events.js';
import type { Pairings } from './pairings.js';

const debug = createDebug('ntp:server:users:mux-link');

export interface ServerMuxLinkOptions {
  group: string;
  /** The session's pairing ids: the mux conn's waits there like any work conn's. */
  pairings: Pairings;
  /** Streams and unread bytes the mux conn may hold (`limits.maxMuxStreams`, `limits.muxBudgetBytes`). */
  limits: MuxLimits;
  send: (message: Message) => void;
  /** The client broke the mux conn's frame format: the session is over. */
  onProtocolError: (error: ProtocolError) => void;
  emit: EmitServerEvent;
}

/**
 * The server's end of one session's mux conn: asks the client for it (ReqMuxConn), takes it
 * when it arrives with the pairing id it was given, opens a stream per user (TCP, or a UDP
 * session) on it, and asks again when it is lost. While there is none (just after login, or
 * after a loss), `open` returns undefined and the caller takes a single-use work conn, as
 * without mux. The asking is a retry loop under the one backoff policy: a client that does not
 * come is asked less and less often, and a lost conn is asked for again after the first delay.
 */
export class ServerMuxLink {
  private session: MuxSession | undefined;
  /** A retry loop is asking for the mux conn. */
  private asking = false;
  private readonly stopping = new AbortController();

  constructor(private readonly options: ServerMuxLinkOptions) {}

  /** Asks the client for the mux conn (once it has its LoginResp). */
  request(): void {
    this.keepAsking(undefined);
  }

  /** Asks until the mux conn is up; `lost`: the one just lost, so the first ask waits. */
  private keepAsking(lost: Error | undefined): void {
    if (this.stopping.signal.aborted || this.session !== undefined || this.asking) return;
    this.asking = true;
    const { group } = this.options;
    retryWithBackoff(
      async () => {
        const conn = await this.ask();
        // Before the conn is in place: a loss from here on starts a new loop.
        this.asking = false;
        this.accept(conn);
      },
      {
        signal: this.stopping.signal,
        ...(lost !== undefined ? { firstFailed: lost } : {}),
        // Users go on over single-use work conns meanwhile.
        onFailedAttempt: ({ error, delayMs }) => debug('%s: no mux conn (%s); asking again in %dms', group, error.message, delayMs),
      },
    ).catch(() => (this.asking = false));
  }

  /** One ReqMuxConn: resolves with the mux conn, rejects if the client did not come with it (or on stop). */
  private async ask(): Promise<Socket> {
    const pairingId = randomId();
    const { conn, cancel } = this.options.pairings.wait(pairingId);
    const onStop = (): void => cancel();
    this.stopping.signal.addEventListener('abort', onStop, { once: true });
    this.options.send({ type: 'ReqMuxConn', pairingId });
    try {
      return await conn;
    } finally {
      this.stopping.signal.removeEventListener('abort', onStop);
    }
  }

  /** The mux conn asked for arrived (its proof already checked). */
  private accept(conn: Socket): void {
    if (this.stopping.signal.aborted) return void conn.destroy();
    const session = new MuxSession(
      conn,
      'opener',
      {
        onClosed: (reason, error) => {
          if (this.session === session) this.session = undefined;
          if (this.stopping.signal.aborted) return;
          if (error !== undefined) return this.options.onProtocolError(error);
          debug('%s: mux conn lost (%s); asking again', this.options.group, reason);
          this.options.emit({ type: 'mux-conn', group: this.options.group, state: 'lost', reason });
          this.keepAsking(new Error(`the mux conn was lost (${reason})`));
        },
      },
      this.options.limits,
    );
    this.session = session;
    this.options.emit({ type: 'mux-conn', group: this.options.group, state: 'up' });
  }

  /** A stream for a user or a UDP session, or undefined while there is no mux conn. */
  open(start: StartWorkConn): MuxStream | undefined {
    const session = this.session;
    if (session === undefined || session.isClosed) return undefined;
    return session.open(start);
  }

  /** The session ended: every stream reset, the conn closed, nothing asked for again. */
  stop(reason: string): void {
    this.stopping.abort(new Error(reason));
    this.session?.destroy(reason);
    this.session = undefined;
  }
}
