import { asyncScheduler, Subject, type SchedulerLike } from 'rxjs';
import { formatDuration, type VisitorSpec } from '../config/index.js';
import { deadline, type MuxStream } from '../net/index.js';
import { randomId, visitProof, type Message, type StartWorkConn, type VisitRefused } from '../protocol/index.js';

/** A visit the server refused (its words), or one that could not be asked or answered here. */
export class VisitFailed extends Error {
  constructor(
    message: string,
    /** The server refused it (VisitRefused), rather than this end giving up. */
    readonly byServer: boolean,
  ) {
    super(message);
  }
}

export interface SessionVisitsOptions {
  /** The visiting group (this client's): bound into a visit's proof. */
  group: string;
  send: (message: Message) => void;
  /** How long a visit waits for the server's stream or refusal. */
  timeoutMs: number;
  /** Visits that may wait at once: one more is refused here, not sent (the mux conn's stream cap). */
  maxPending: number;
  /** The deadlines' clock: real time by default, virtual in a test. */
  scheduler?: SchedulerLike;
}

interface Pending {
  resolve(stream: MuxStream): void;
  reject(error: VisitFailed): void;
  /** Ends the visit's deadline: it was answered or given up. */
  settled$: Subject<void>;
}

/**
 * One session's visits in flight: each Visit sent waits, under a deadline, for the stream the
 * server opens for it (StartWorkConn `visit` with its id) or for its VisitRefused. A stream for
 * a visit that no longer waits is reset; a refusal for one is dropped.
 */
export class SessionVisits {
  private readonly pending = new Map<string, Pending>();
  private closedWith: string | undefined;

  constructor(private readonly options: SessionVisitsOptions) {}

  /** Asks the server for `visitor`'s app: the stream its user is relayed on. */
  ask(visitor: VisitorSpec): Promise<MuxStream> {
    if (this.closedWith !== undefined) return Promise.reject(new VisitFailed(this.closedWith, false));
    if (this.pending.size >= this.options.maxPending) return Promise.reject(new VisitFailed(`${this.pending.size} visits already wait for the server`, false));
    const { group, send, timeoutMs, scheduler = asyncScheduler } = this.options;
    const visitId = randomId();
    return new Promise<MuxStream>((resolve, reject) => {
      const settled$ = new Subject<void>();
      this.pending.set(visitId, { resolve, reject, settled$ });
      deadline(timeoutMs, settled$, scheduler).subscribe(() => {
        if (this.pending.delete(visitId)) reject(new VisitFailed(`no answer from the server within ${formatDuration(timeoutMs)}`, false));
      });
      send({
        type: 'Visit',
        visitId,
        visitor: visitor.name,
        group: visitor.group,
        app: visitor.app,
        ...(visitor.type === 'udp' ? { protocol: 'udp' } : {}),
        ...(visitor.secret === undefined ? {} : { proof: visitProof(visitor.secret.reveal(), group, visitor.group, visitor.app, visitId) }),
      });
    });
  }

  /** The server's stream for a visit (its OPEN said `visit`). */
  onStream(stream: MuxStream, start: StartWorkConn): void {
    const waiting = this.take(start.pairingId);
    if (waiting === undefined) return void stream.resetAndDestroy('no visit of this id waits (it timed out or ended)');
    waiting.resolve(stream);
  }

  /** The server refused a visit of ours. */
  onRefused(refused: VisitRefused & { visitId: string }): void {
    this.take(refused.visitId)?.reject(new VisitFailed(refused.reason, true));
  }

  /** The session ended: every waiting visit fails with `reason`, and later ones at once. */
  closeAll(reason: string): void {
    this.closedWith = reason;
    for (const visitId of [...this.pending.keys()]) this.take(visitId)?.reject(new VisitFailed(reason, false));
  }

  private take(visitId: string): Pending | undefined {
    const waiting = this.pending.get(visitId);
    if (waiting === undefined) return undefined;
    this.pending.delete(visitId);
    waiting.settled$.next();
    return waiting;
  }
}
