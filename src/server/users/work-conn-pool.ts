import createDebug from 'debug';
import type { Socket } from 'node:net';
import { randomId } from '../../protocol/index.js';
import type { Pairings } from './pairings.js';

const debug = createDebug('ntp:server:users:work-conn-pool');

/**
 * One session's pool of pre-opened single-use work conns (frp's poolCount): the server asks
 * the client for `size` of them ahead of any user, so a new user is put on one at once instead
 * of waiting for a ReqWorkConn round trip and a fresh dial. Each carries one user (TCP or UDP)
 * and is closed after it; taken conns are asked for again in the background, in batches, a
 * lost one at once. Used with `mux: false`, and while a session's mux conn is not up.
 *
 * Pool pairing ids are server-issued and one-time, like a user's, and wait in the session's
 * `Pairings` like any other: a NewWorkConn presenting one (with a valid join proof) is put in
 * the pool.
 */
export class WorkConnPool {
  /** Ids issued whose work conn has not arrived yet. */
  private requested = 0;
  /** Idle work conns, oldest first; each watched for a close or a stray byte. */
  private readonly idle = new Map<Socket, () => void>();
  private destroyed = false;
  private topUpScheduled = false;

  constructor(
    private readonly size: number,
    private readonly pairings: Pairings,
    private readonly request: (pairingIds: string[]) => void,
    private readonly onPooled: (idle: number) => void,
  ) {}

  get idleCount(): number {
    return this.idle.size;
  }

  /** Asks for as many work conns as the pool lacks (counting those already asked for). */
  topUp(): void {
    if (this.destroyed) return;
    const missing = this.size - this.idle.size - this.requested;
    if (missing <= 0) return;
    const ids: string[] = [];
    for (let i = 0; i < missing; i++) {
      const id = randomId();
      this.requested++;
      // An id the client never used expires; the next take or user asks again.
      this.pairings.expect(id, {
        onWorkConn: (workConn) => {
          this.requested--;
          this.add(workConn);
        },
        onFailed: () => this.requested--,
      });
      ids.push(id);
    }
    this.request(ids);
  }

  /** Closes a conn that comes when the pool is full or gone, so the client never holds more than `size` idle. */
  private add(workConn: Socket): void {
    if (this.destroyed || this.idle.size >= this.size) {
      workConn.destroy();
      return;
    }
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
    this.onPooled(this.idle.size);
  }

  /** The oldest idle work conn, paused and unwatched (the caller owns it, and closes it after its user), or undefined. */
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
    // per few users rather than one each. After this turn, so that the user's own
    // StartWorkConn goes out first and the client dials the user's app before the batch.
    if (!this.topUpScheduled && (this.idle.size + this.requested) * 2 < this.size) {
      this.topUpScheduled = true;
      setImmediate(() => {
        this.topUpScheduled = false;
        this.topUp();
      });
    }
    return taken;
  }

  /** The session ended: every idle conn closed (its outstanding ids fail with the session's `Pairings`). Idempotent. */
  destroy(): void {
    this.destroyed = true;
    for (const [workConn, unwatch] of this.idle) {
      unwatch();
      workConn.destroy();
    }
    this.idle.clear();
  }
}
