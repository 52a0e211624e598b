import type { LoginLimitConfig } from '../config/index.js';

export type LoginGate = { verdict: 'ok' } | { verdict: 'slow'; delayMs: number } | { verdict: 'blocked'; retryInMs: number };

interface SourceRecord {
  failures: number;
  windowStart: number;
  blockedUntil: number;
}

/** Beyond this many tracked sources, expired records are swept and the oldest dropped. */
const MAX_TRACKED_SOURCES = 10_000;

/**
 * Failed logins counted per source address (not per group: an attacker guesses names too).
 * From `slowAfter` failures in the window each new attempt waits `slowByMs` first; at
 * `blockAfter` the address is refused outright for `blockForMs`. A success clears the record.
 * Other addresses are never affected. Bounded: at most MAX_TRACKED_SOURCES records.
 */
export class LoginLimiter {
  private readonly sources = new Map<string, SourceRecord>();

  constructor(
    private readonly config: LoginLimitConfig,
    private readonly now: () => number = Date.now,
  ) {}

  get trackedSources(): number {
    return this.sources.size;
  }

  /** What to do with a new login attempt from `address`. */
  check(address: string): LoginGate {
    const record = this.current(address);
    if (record === undefined) return { verdict: 'ok' };
    const now = this.now();
    if (record.blockedUntil > now) return { verdict: 'blocked', retryInMs: record.blockedUntil - now };
    if (record.failures >= this.config.slowAfter) return { verdict: 'slow', delayMs: this.config.slowByMs };
    return { verdict: 'ok' };
  }

  /** Counts a failure; returns the new state when it changed (for the log line). */
  failed(address: string): { state: 'slowed' | 'blocked'; failures: number } | undefined {
    const now = this.now();
    let record = this.current(address);
    if (record === undefined) {
      this.makeRoom();
      record = { failures: 0, windowStart: now, blockedUntil: 0 };
      this.sources.set(address, record);
    }
    record.failures++;
    if (record.failures >= this.config.blockAfter) {
      record.blockedUntil = now + this.config.blockForMs;
      return { state: 'blocked', failures: record.failures };
    }
    if (record.failures === this.config.slowAfter) return { state: 'slowed', failures: record.failures };
    return undefined;
  }

  succeeded(address: string): void {
    this.sources.delete(address);
  }

  /** The live record, after dropping one whose window and block are both over. */
  private current(address: string): SourceRecord | undefined {
    const record = this.sources.get(address);
    if (record !== undefined && this.expired(record)) {
      this.sources.delete(address);
      return undefined;
    }
    return record;
  }

  private expired(record: SourceRecord): boolean {
    const now = this.now();
    // A served block releases the address completely: it starts again from zero failures.
    if (record.blockedUntil !== 0) return record.blockedUntil <= now;
    return now - record.windowStart >= this.config.windowMs;
  }

  private makeRoom(): void {
    if (this.sources.size < MAX_TRACKED_SOURCES) return;
    for (const [address, record] of this.sources) if (this.expired(record)) this.sources.delete(address);
    // Still full: forget the oldest (insertion order) rather than grow without bound.
    while (this.sources.size >= MAX_TRACKED_SOURCES) this.sources.delete(this.sources.keys().next().value!);
  }
}
