import { firstValueFrom, timer } from 'rxjs';
import type { LoginLimitConfig } from '../../config/index.js';
import type { ControlChannel } from '../../net/index.js';
import { randomId, type LoginRejectCode } from '../../protocol/index.js';
import type { EmitServerEvent } from '../events.js';

export type LoginGate = { verdict: 'ok' } | { verdict: 'slow'; delayMs: number } | { verdict: 'blocked'; retryInMs: number };

interface SourceRecord {
  failures: number;
  /** Attempts admitted whose proof is not judged yet: each may still turn into a failure. */
  inFlight: number;
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
 *
 * An attempt counts from the moment it is admitted (`begin`), not once its proof has been
 * judged: otherwise many logins sent at once from one address would all pass the check
 * before the first of them failed, and each would get its secret checked.
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

  /** What a new login attempt from `address` would get, without counting it. */
  check(address: string): LoginGate {
    const record = this.current(address);
    if (record === undefined) return { verdict: 'ok' };
    const now = this.now();
    if (record.blockedUntil > now) return { verdict: 'blocked', retryInMs: record.blockedUntil - now };
    const counted = record.failures + record.inFlight;
    // The attempts in flight would reach the block if they failed: refuse the rest now.
    if (counted >= this.config.blockAfter) return { verdict: 'blocked', retryInMs: this.config.blockForMs };
    if (counted >= this.config.slowAfter) return { verdict: 'slow', delayMs: this.config.slowByMs };
    return { verdict: 'ok' };
  }

  /**
   * Admits a new attempt from `address` and counts it at once, unless refused. Every admitted
   * attempt must end in exactly one of `failed`, `succeeded` or `abandoned`.
   */
  begin(address: string): LoginGate {
    const gate = this.check(address);
    if (gate.verdict === 'blocked') return gate;
    this.record(address).inFlight++;
    return gate;
  }

  /** Counts a failure; returns the new state when it changed (for the log line). */
  failed(address: string): { state: 'slowed' | 'blocked'; failures: number } | undefined {
    const record = this.record(address);
    record.inFlight = Math.max(0, record.inFlight - 1);
    record.failures++;
    if (record.failures >= this.config.blockAfter) {
      // Already blocked (attempts admitted together failing one after another): the block
      // runs from the first of them, and is reported once.
      if (record.blockedUntil > this.now()) return undefined;
      record.blockedUntil = this.now() + this.config.blockForMs;
      return { state: 'blocked', failures: record.failures };
    }
    if (record.failures === this.config.slowAfter) return { state: 'slowed', failures: record.failures };
    return undefined;
  }

  /** An admitted attempt that ended without a verdict on its secret (peer gone, group in use...). */
  abandoned(address: string): void {
    const record = this.current(address);
    if (record === undefined) return;
    record.inFlight = Math.max(0, record.inFlight - 1);
    if (record.inFlight === 0 && record.failures === 0 && record.blockedUntil === 0) this.sources.delete(address);
  }

  succeeded(address: string): void {
    this.sources.delete(address);
  }

  private record(address: string): SourceRecord {
    let record = this.current(address);
    if (record === undefined) {
      this.makeRoom();
      record = { failures: 0, inFlight: 0, windowStart: this.now(), blockedUntil: 0 };
      this.sources.set(address, record);
    }
    return record;
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

/** Failed logins that count against the source address. */
const GUESSES: ReadonlySet<LoginRejectCode> = new Set(['BAD_SECRET', 'UNKNOWN_GROUP']);

/**
 * The limiter applied to one common conn's login: `admit` before the real exchange counts
 * the attempt, then exactly one of `record` (the login ran) or `abandon` (it did not).
 */
export class LoginGuard {
  private readonly limiter: LoginLimiter;
  private proofs = 0;

  constructor(
    private readonly config: LoginLimitConfig,
    private readonly emit: EmitServerEvent,
  ) {
    this.limiter = new LoginLimiter(config);
  }

  /** Login proofs checked against a secret since start: what a guesser gets to try. */
  get proofsChecked(): number {
    return this.proofs;
  }

  /** Called by the login just before it checks a proof. */
  readonly countProof = (): void => {
    this.proofs++;
  };

  /**
   * Resolves `proceed` (possibly after the slow-down), `closed` if the peer left meanwhile,
   * or a refusal reason for a blocked source. A blocked source still gets a Challenge and
   * its Login is read, so its client hears why; the proof is never checked.
   */
  async admit(channel: ControlChannel): Promise<'proceed' | 'closed' | { refuse: string }> {
    const source = sourceOf(channel);
    const gate = this.limiter.begin(source);
    if (gate.verdict === 'slow') {
      await firstValueFrom(timer(gate.delayMs));
      if (channel.open) return 'proceed';
      this.limiter.abandoned(source);
      return 'closed';
    }
    if (gate.verdict === 'ok') return 'proceed';
    try {
      const login = channel.next('Login');
      channel.send({ type: 'Challenge', nonce: randomId(32) });
      await login;
    } catch {
      return 'closed';
    }
    return { refuse: `too many failed logins from ${source}; try again in ${Math.ceil(gate.retryInMs / 1000)}s` };
  }

  /** Counts the outcome of a login that ran: a success clears the source, a guess counts. */
  record(channel: ControlChannel, rejection: LoginRejectCode | undefined): void {
    const source = sourceOf(channel);
    if (rejection === undefined) return this.limiter.succeeded(source);
    if (!GUESSES.has(rejection)) return this.limiter.abandoned(source);
    const change = this.limiter.failed(source);
    if (change === undefined) return;
    this.emit({
      type: 'login-throttled',
      remote: source,
      state: change.state,
      failures: change.failures,
      ...(change.state === 'blocked' ? { forMs: this.config.blockForMs } : {}),
    });
  }

  /** An admitted login that ended before any verdict (the peer left, a protocol error). */
  abandon(channel: ControlChannel): void {
    this.limiter.abandoned(sourceOf(channel));
  }
}

function sourceOf(channel: ControlChannel): string {
  return channel.socket.remoteAddress ?? 'unknown';
}
