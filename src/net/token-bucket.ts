import { asyncScheduler, timer, type SchedulerLike, type Subscription } from 'rxjs';

/** A reader the bucket holds back: it forwards nothing until the bucket grants it bytes. */
export interface ThrottledReader {
  /** `bytes` more of what it asked for are paid for: it may forward them now. */
  granted(bytes: number): void;
}

/** Time and timers of a bucket: the real ones, or a virtual scheduler in a model test. */
export interface BucketClock {
  /** Milliseconds, monotonic. */
  now(): number;
  readonly scheduler: SchedulerLike;
}

const REAL_CLOCK: BucketClock = { now: () => performance.now(), scheduler: asyncScheduler };

/**
 * A token bucket shared by every reader of one direction of one app: together they move at most
 * `rate` bytes per second, after a burst of at most 250 ms of traffic. The burst also keeps the
 * rate when the event loop runs late (a busy machine, another app at full speed): tokens are
 * capped at it, so with a smaller one a late wake-up would lose the time beyond it (frp allows
 * a whole second).
 *
 * Bytes are paid for before they are forwarded, never after: a reader asks for the chunk it just
 * read and forwards it only once granted, its socket paused meanwhile (so TCP slows the sender
 * down). Tokens never go below zero, so no reader can leave a debt for others to repay: in any
 * window the readers together forward at most rate × its length + one burst, however many
 * conns they are and however short. A reader that goes away while it waits (`forget`) takes its
 * claim with it. Waiting readers are served in turn, a burst at most each: a chunk larger than
 * the burst (a slow rate) is granted in pieces, the reader going to the back of the queue after
 * each, so a reader with a deep socket buffer cannot take every refill while the others starve.
 */
export class TokenBucket {
  private rateBytes: number | undefined;
  private tokens = 0;
  private lastRefill: number;
  /** In arrival order: Map keeps insertion order, so this is the queue. Value: bytes still owed to it. */
  private readonly waiting = new Map<ThrottledReader, number>();
  private wake: Subscription | undefined;
  /** Times a reader was held back so far (for the admin surfaces: is the limit being hit?). */
  throttledReads = 0;

  constructor(
    rate: number | undefined,
    private readonly clock: BucketClock = REAL_CLOCK,
  ) {
    this.rateBytes = rate;
    this.lastRefill = clock.now();
    this.tokens = this.burst;
  }

  /**
   * A new rate for readers already waiting and new ones (undefined: unlimited). Waiting readers
   * keep their place and are served at the new rate; an unlimited bucket grants them all at once.
   */
  setRate(rate: number | undefined): void {
    if (rate === this.rateBytes) return;
    this.refill();
    this.rateBytes = rate;
    this.cancelWake();
    if (rate === undefined) {
      this.tokens = 0;
      this.grantAll();
      return;
    }
    this.tokens = Math.min(this.tokens, this.burst);
    this.schedule();
  }

  /**
   * `reader` read `bytes` and asks to forward them. True: paid for, forward them now. False: it
   * must hold them (and read no more); `granted` hands them out, in one or more pieces, when its
   * turn comes, unless `forget` is called first. A reader asking again while it waits (more
   * bytes read before its pause took effect) adds them to what it is owed, keeping its place.
   */
  request(reader: ThrottledReader, bytes: number): boolean {
    if (this.rateBytes === undefined || bytes <= 0) return true;
    const owed = this.waiting.get(reader);
    if (owed !== undefined) {
      this.waiting.set(reader, owed + bytes);
      return false;
    }
    this.refill();
    if (this.waiting.size === 0 && this.tokens >= bytes) {
      this.tokens -= bytes;
      return true;
    }
    this.waiting.set(reader, bytes);
    this.throttledReads++;
    this.schedule();
    return false;
  }

  /**
   * Tokens granted but not spent (the reader turned out to be gone before it forwarded them):
   * they are back, up to the burst, for the readers still waiting.
   */
  refund(bytes: number): void {
    if (this.rateBytes === undefined || bytes <= 0) return;
    this.refill();
    this.tokens = Math.min(this.burst, this.tokens + bytes);
    this.cancelWake();
    this.schedule();
  }

  /** The reader is gone (its relay ended, or it stopped reading this side): what it was owed is dropped. */
  forget(reader: ThrottledReader): void {
    if (!this.waiting.delete(reader)) return;
    // The head of the queue, and so the time it can be paid, may have changed.
    this.cancelWake();
    this.schedule();
  }

  private get burst(): number {
    return this.rateBytes === undefined ? 0 : this.rateBytes * BURST_SECONDS;
  }

  /** The most one grant hands out: tokens never exceed the burst, so a larger piece could never be paid. */
  private get maxPiece(): number {
    return Math.max(1, Math.floor(this.burst));
  }

  private refill(): void {
    const at = this.clock.now();
    if (this.rateBytes !== undefined) this.tokens = Math.min(this.burst, this.tokens + ((at - this.lastRefill) / 1000) * this.rateBytes);
    this.lastRefill = at;
  }

  /** One timer per bucket, due when the reader at the head of the queue can be paid its next piece. */
  private schedule(): void {
    if (this.wake !== undefined || this.rateBytes === undefined) return;
    const head = this.waiting.values().next();
    if (head.done === true) return;
    const needed = Math.min(head.value, this.maxPiece) - this.tokens;
    const delayMs = needed <= 0 ? 0 : Math.ceil((needed / this.rateBytes) * 1000);
    this.wake = timer(delayMs, this.clock.scheduler).subscribe(() => {
      this.wake = undefined;
      this.grantInTurn();
    });
  }

  private cancelWake(): void {
    this.wake?.unsubscribe();
    this.wake = undefined;
  }

  /** Pays readers from the head of the queue, a piece each, while the tokens cover the next piece. */
  private grantInTurn(): void {
    this.refill();
    for (let head = this.waiting.entries().next(); head.done !== true; head = this.waiting.entries().next()) {
      const [reader, owed] = head.value;
      const piece = Math.min(owed, this.maxPiece);
      if (this.tokens < piece) break;
      this.tokens -= piece;
      this.waiting.delete(reader);
      if (owed > piece) this.waiting.set(reader, owed - piece);
      // It may forget or ask again from here: the loop reads the queue afresh each turn.
      reader.granted(piece);
    }
    // A reader that asked from `granted` may have set a timer for a head since paid: set it anew.
    this.cancelWake();
    this.schedule();
  }

  private grantAll(): void {
    const owed = [...this.waiting];
    this.waiting.clear();
    for (const [reader, bytes] of owed) reader.granted(bytes);
  }
}

const BURST_SECONDS = 0.25;
