import createDebug from 'debug';
import type { Socket } from 'node:net';
import { timer, type Subscription } from 'rxjs';
import { randomId } from '../protocol/index.js';

const debug = createDebug('ntp:server:work-conn-pool');

/**
 * One session's pool of pre-opened work conns (frp's poolCount): the server asks the client
 * for `size` of them ahead of any user, so a new UserConn is joined at once instead of
 * waiting for a ReqWorkConn round trip and a fresh dial. Taken conns are asked for again in
 * the background, in batches; a lost one at once.
 *
 * Pool pairing ids are server-issued and one-time, like a user's: a NewWorkConn presenting
 * one is accepted into the pool only while the id is outstanding (the caller checks the
 * session-bound join proof).
 */
export class WorkConnPool {
  /** Issued ids whose work conn has not arrived yet, each under a deadline. */
  private readonly requested = new Map<string, Subscription>();
  /** Idle work conns, oldest first; each watched for a close or a stray byte. */
  private readonly idle = new Map<Socket, () => void>();
  private destroyed = false;
  private topUpScheduled = false;

  constructor(
    private readonly size: number,
    private readonly timeoutMs: number,
    private readonly request: (pairingIds: string[]) => void,
    /** `servedPairingId`: the user a conn coming back (WorkConnIdle) served last. */
    private readonly onPooled: (idle: number, servedPairingId?: string) => void,
  ) {}

  get idleCount(): number {
    return this.idle.size;
  }

  /** Asks for as many work conns as the pool lacks (counting those already asked for). */
  topUp(): void {
    if (this.destroyed) return;
    const missing = this.size - this.idle.size - this.requested.size;
    if (missing <= 0) return;
    const ids: string[] = [];
    for (let i = 0; i < missing; i++) {
      const id = randomId();
      // An id the client never used is dropped; the next take or user asks again.
      this.requested.set(
        id,
        timer(this.timeoutMs).subscribe(() => this.requested.delete(id)),
      );
      ids.push(id);
    }
    this.request(ids);
  }

  isRequested(pairingId: string): boolean {
    return this.requested.has(pairingId);
  }

  /**
   * Puts a work conn that presented a requested id (and a valid proof) into the pool; closes it
   * when conns handed back by users filled the pool while it was on its way, so the client
   * never holds more than `size` idle conns for this session.
   */
  add(pairingId: string, workConn: Socket): void {
    this.requested.get(pairingId)?.unsubscribe();
    this.requested.delete(pairingId);
    if (this.destroyed || this.idle.size >= this.size) {
      workConn.destroy();
      return;
    }
    this.park(workConn);
  }

  /**
   * A work conn whose user is through on both ends (WorkConnIdle) comes back: idle again,
   * unless the pool is already full (more users at once than its size), then it is closed.
   */
  giveBack(workConn: Socket, servedPairingId: string): void {
    if (this.destroyed || this.idle.size >= this.size || workConn.destroyed || !workConn.writable) {
      workConn.destroy();
      return;
    }
    this.park(workConn, servedPairingId);
  }

  private park(workConn: Socket, servedPairingId?: string): void {
    // Read while idle, so that a FIN or reset from the client is noticed before a user is
    // put on this conn. Nothing may arrive before StartWorkConn: a byte is a protocol error.
    const drop = (): void => {
      if (!this.idle.delete(workConn)) return;
      unwatch();
      workConn.destroy();
      debug('pooled work conn lost (%d idle)', this.idle.size);
      this.topUp();
    };
    const unwatch = (): void => {
      workConn.off('data', drop);
      workConn.off('end', drop);
      workConn.off('close', drop);
    };
    workConn.on('data', drop);
    workConn.on('end', drop);
    workConn.on('close', drop);
    this.idle.set(workConn, unwatch);
    workConn.resume();
    this.onPooled(this.idle.size, servedPairingId);
  }

  /** The oldest idle work conn, paused and unwatched (the caller owns it), or undefined. */
  take(): Socket | undefined {
    let taken: Socket | undefined;
    for (const [workConn, unwatch] of this.idle) {
      this.idle.delete(workConn);
      unwatch();
      workConn.pause();
      if (!workConn.destroyed && workConn.writable) {
        taken = workConn;
        break;
      }
      workConn.destroy();
    }
    // Replacements are asked for in batches, once the pool is below half: one control frame
    // per few users rather than one each, and none while users come and go one after the
    // other, each handing its conn back (WorkConnIdle) before the next takes one. After this
    // turn, so that the user's own StartWorkConn goes out first and the client dials the
    // user's app before the batch.
    if (!this.topUpScheduled && (this.idle.size + this.requested.size) * 2 < this.size) {
      this.topUpScheduled = true;
      setImmediate(() => {
        this.topUpScheduled = false;
        this.topUp();
      });
    }
    return taken;
  }

  /** The session ended: every idle conn closed, every outstanding id forgotten. Idempotent. */
  destroy(): void {
    this.destroyed = true;
    for (const deadline of this.requested.values()) deadline.unsubscribe();
    this.requested.clear();
    for (const [workConn, unwatch] of this.idle) {
      unwatch();
      workConn.destroy();
    }
    this.idle.clear();
  }
}
