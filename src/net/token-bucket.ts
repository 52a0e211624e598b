import { timer, type Subscription } from 'rxjs';

/** A reader the bucket paused: resumed by the bucket once its turn comes. */
export interface ThrottledReader {
  resumeAfterThrottle(): void;
}

/**
 * A token bucket shared by every reader of one direction of one app: together they move at most
 * `rate` bytes per second, after a burst of at most 250 ms of traffic. The burst also keeps the
 * rate when the event loop runs late (a busy machine, another app at full speed): tokens are
 * capped at it, so with a smaller one a late wake-up would lose the time beyond it (frp allows
 * a whole second). It never holds bytes: a reader forwards the chunk it just read, is charged
 * for it, and is paused (by its owner, when `take` says so) until the debt is repaid. Paused readers wait in one queue and are let go in
 * turn, each with room for about the chunk it read last, so a reader with a deep socket buffer
 * cannot take every refill while the others starve. A reader that arrives while others wait
 * queues behind them.
 */
export class TokenBucket {
  private rateBytes: number | undefined;
  private tokens = 0;
  private lastRefill = now();
  /** In arrival order: Map keeps insertion order, so this is the queue. Value: last chunk size. */
  private readonly waiting = new Map<ThrottledReader, number>();
  private wake: Subscription | undefined;
  /** Times a reader was paused so far (for the admin surfaces: is the limit being hit?). */
  throttledReads = 0;

  constructor(rate: number | undefined) {
    this.rateBytes = rate;
    this.tokens = this.burst;
  }

  /**
   * A new rate for readers already running and new ones (undefined: unlimited). Debt already
   * run up is kept and repaid at the new rate; an unlimited bucket lets every reader go at once.
   */
  setRate(rate: number | undefined): void {
    if (rate === this.rateBytes) return;
    this.refill();
    this.rateBytes = rate;
    this.wake?.unsubscribe();
    this.wake = undefined;
    if (rate === undefined) {
      this.tokens = 0;
      this.releaseAll();
      return;
    }
    this.tokens = Math.min(this.tokens, this.burst);
    this.schedule();
  }

  /**
   * Charges `bytes` just read by `reader`. True: read on. False: pause now; `resumeAfterThrottle`
   * is called when it may read again (unless `forget` is called first).
   */
  take(bytes: number, reader: ThrottledReader): boolean {
    if (this.rateBytes === undefined) return true;
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0 && this.waiting.size === 0) return true;
    this.waiting.delete(reader);
    this.waiting.set(reader, Math.max(bytes, 1));
    this.throttledReads++;
    this.schedule();
    return false;
  }

  /** The reader is gone (its relay ended, or it stopped reading this side): never resume it. */
  forget(reader: ThrottledReader): void {
    if (!this.waiting.delete(reader) || this.waiting.size > 0) return;
    this.wake?.unsubscribe();
    this.wake = undefined;
  }

  private get burst(): number {
    return this.rateBytes === undefined ? 0 : this.rateBytes * BURST_SECONDS;
  }

  private refill(): void {
    const at = now();
    if (this.rateBytes !== undefined) this.tokens = Math.min(this.burst, this.tokens + ((at - this.lastRefill) / 1000) * this.rateBytes);
    this.lastRefill = at;
  }

  /** One timer per bucket, due when the reader at the head of the queue can be paid for. */
  private schedule(): void {
    if (this.wake !== undefined || this.rateBytes === undefined) return;
    const head = this.waiting.values().next();
    if (head.done === true) return;
    const needed = Math.min(head.value, this.burst) - this.tokens;
    const delayMs = needed <= 0 ? 0 : Math.ceil((needed / this.rateBytes) * 1000);
    this.wake = timer(delayMs).subscribe(() => {
      this.wake = undefined;
      this.releaseInTurn();
    });
  }

  /** Lets readers go from the head of the queue while the tokens cover their next chunk. */
  private releaseInTurn(): void {
    this.refill();
    let budget = this.tokens;
    for (const [reader, chunk] of this.waiting) {
      if (budget < Math.min(chunk, this.burst)) break;
      budget -= chunk;
      this.waiting.delete(reader);
      reader.resumeAfterThrottle();
    }
    this.schedule();
  }

  private releaseAll(): void {
    const readers = [...this.waiting.keys()];
    this.waiting.clear();
    for (const reader of readers) reader.resumeAfterThrottle();
  }
}

const BURST_SECONDS = 0.25;

function now(): number {
  return performance.now();
}
