import createDebug from 'debug';
import type { Socket } from 'node:net';
import { timer, type Subscription } from 'rxjs';
import { MuxSession, type MuxLimits, type MuxStream } from '../../net/index.js';
import { randomId, type Message, type ProtocolError, type StartWorkConn } from '../../protocol/index.js';
import type { EmitServerEvent } from '../events.js';
import type { Pairings } from './pairings.js';

const debug = createDebug('ntp:server:users:mux-link');

/** A lost mux conn is asked for again after this long (users meanwhile get single-use work conns). */
const MUX_RETRY_MS = 1000;

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
 * without mux.
 */
export class ServerMuxLink {
  private session: MuxSession | undefined;
  /** The id the next mux conn must present, while it is on its way. */
  private requested: string | undefined;
  private retry: Subscription | undefined;
  private stopped = false;

  constructor(private readonly options: ServerMuxLinkOptions) {}

  /** Asks the client for the mux conn (once it has its LoginResp). */
  request(): void {
    if (this.stopped || this.session !== undefined || this.requested !== undefined) return;
    const pairingId = randomId();
    this.requested = pairingId;
    this.options.pairings.expect(pairingId, {
      onWorkConn: (conn) => this.accept(conn),
      onFailed: () => {
        // The client did not come: asked again later, users go on without it meanwhile.
        this.requested = undefined;
        this.scheduleRetry();
      },
    });
    this.options.send({ type: 'ReqMuxConn', pairingId });
  }

  /** The mux conn asked for arrived (its proof already checked). */
  private accept(conn: Socket): void {
    this.requested = undefined;
    if (this.stopped) return void conn.destroy();
    const session = new MuxSession(
      conn,
      'opener',
      {
        onClosed: (reason, error) => {
          if (this.session === session) this.session = undefined;
          if (this.stopped) return;
          if (error !== undefined) return this.options.onProtocolError(error);
          debug('%s: mux conn lost (%s); asking again', this.options.group, reason);
          this.options.emit({ type: 'mux-conn', group: this.options.group, state: 'lost', reason });
          this.scheduleRetry();
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
    this.stopped = true;
    if (this.requested !== undefined) this.options.pairings.cancel(this.requested);
    this.requested = undefined;
    this.retry?.unsubscribe();
    this.session?.destroy(reason);
    this.session = undefined;
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retry !== undefined) return;
    this.retry = timer(MUX_RETRY_MS).subscribe(() => {
      this.retry = undefined;
      this.request();
    });
  }
}
