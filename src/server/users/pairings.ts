import type { Socket } from 'node:net';
import { asyncScheduler, timer, type SchedulerLike, type Subscription } from 'rxjs';
import { formatDuration } from '../../config/index.js';

/** What waits for a pairing id: a user, a UDP session, a pooled work conn or the mux conn. */
export interface Waiter {
  /** The work conn that presented the id arrived, its join proof checked: it is the waiter's now. */
  onWorkConn(conn: Socket): void;
  /** No conn came within the deadline, or the client said it could not serve it (WorkConnFailed). */
  onFailed(reason: string, byClient: boolean): void;
}

/**
 * One session's pairing ids, each naming the one thing that waits for a work conn presenting
 * it, under a deadline. An id leaves the table exactly once: its conn arrived, it failed,
 * it expired, or its waiter gave up (`cancel`). The only lookup a NewWorkConn or a
 * WorkConnFailed goes through.
 */
export class Pairings {
  private readonly waiting = new Map<string, { waiter: Waiter; deadline: Subscription }>();

  constructor(
    private readonly timeoutMs: number,
    private readonly scheduler: SchedulerLike = asyncScheduler,
  ) {}

  get size(): number {
    return this.waiting.size;
  }

  /**
   * `waiter` waits for the work conn presenting `pairingId`, until the pairing deadline. The
   * deadline is a timer kept beside the waiter, not a `race` with its answer: every user
   * without a mux conn pairs, and an entry that leaves the table by any way ends its timer.
   */
  expect(pairingId: string, waiter: Waiter): void {
    const deadline = timer(this.timeoutMs, this.scheduler).subscribe(() => {
      if (this.remove(pairingId)) waiter.onFailed(`no work conn within ${formatDuration(this.timeoutMs)}`, false);
    });
    this.waiting.set(pairingId, { waiter, deadline });
  }

  /**
   * A work conn for `pairingId`, which the waiter gets for a Promise (a user's, a UDP session's).
   * Rejects with the reason; `cancel` on the returned handle gives up without a reason reported.
   */
  wait(pairingId: string): { conn: Promise<Socket>; cancel: () => void } {
    let cancel!: () => void;
    const conn = new Promise<Socket>((resolve, reject) => {
      this.expect(pairingId, { onWorkConn: resolve, onFailed: (reason, byClient) => reject(new PairingFailed(reason, byClient)) });
      cancel = () => {
        if (this.remove(pairingId)) reject(new PairingFailed('the waiter gave up', false, true));
      };
    });
    return { conn, cancel };
  }

  /** The waiter is gone (a UDP session closed while it waited): the id is retired, nothing reported. */
  cancel(pairingId: string): void {
    this.remove(pairingId);
  }

  has(pairingId: string): boolean {
    return this.waiting.has(pairingId);
  }

  /** Hands `conn` to the waiter of `pairingId`; false (the conn untouched) when there is none. */
  deliver(pairingId: string, conn: Socket): boolean {
    const entry = this.waiting.get(pairingId);
    if (entry === undefined || !this.remove(pairingId)) return false;
    entry.waiter.onWorkConn(conn);
    return true;
  }

  /** The client could not serve `pairingId`; false when no one waits for it (used, expired, never issued). */
  fail(pairingId: string, reason: string): boolean {
    const entry = this.waiting.get(pairingId);
    if (entry === undefined || !this.remove(pairingId)) return false;
    entry.waiter.onFailed(reason, true);
    return true;
  }

  /** The session ended: every waiter fails with `reason`. */
  failAll(reason: string): void {
    for (const [pairingId, { waiter }] of [...this.waiting]) {
      if (this.remove(pairingId)) waiter.onFailed(reason, false);
    }
  }

  private remove(pairingId: string): boolean {
    const entry = this.waiting.get(pairingId);
    if (entry === undefined) return false;
    this.waiting.delete(pairingId);
    entry.deadline.unsubscribe();
    return true;
  }
}

/**
 * Why a pairing gave no work conn. `byClient`: the client said so (WorkConnFailed), with its
 * reason; `cancelled`: the waiter gave up itself.
 */
export class PairingFailed extends Error {
  constructor(
    message: string,
    readonly byClient: boolean,
    readonly cancelled = false,
  ) {
    super(message);
  }
}
