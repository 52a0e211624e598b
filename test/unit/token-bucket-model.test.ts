import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { VirtualTimeScheduler } from 'rxjs';
import { TokenBucket, type ThrottledReader } from '../../src/net/index.js';

/**
 * The bucket on a virtual clock, driven by generated conn patterns (many short conns, a few long
 * ones with deep buffers, idle gaps, conns that go away while they wait). Each model conn does
 * what a shaped side of a relay does: asks before it forwards a read, holds it until granted,
 * reads on only once it is all forwarded, and (as the relay's probe can find its user gone)
 * may turn out gone between a grant and forwarding it, then refunds it. Deterministic: no wall
 * clock anywhere.
 */

const KIB = 1024;
/** The bucket's burst: 250 ms of its rate. */
const burstOf = (rate: number): number => rate / 4;

interface ConnScript {
  startMs: number;
  /** Each read, and how long after the previous one was all forwarded it arrives (0: a deep socket buffer). */
  reads: { bytes: number; gapMs: number }[];
  /** Gone this long after it started (a reset), dropping what it holds; undefined: stays until the stop. */
  leaveAfterMs: number | undefined;
  /** Between a grant and forwarding it (the relay's probe of a paused socket). */
  probeMs: number;
}

interface Pattern {
  rate: number;
  conns: ConnScript[];
  /** Every conn still there goes away at this time... */
  stopAtMs: number;
  /** ...and this long after, a fresh conn reads this much. */
  freshAfterMs: number;
  freshBytes: number;
}

interface Forwarded {
  atMs: number;
  bytes: number;
}

class ModelConn implements ThrottledReader {
  private next = 0;
  private held = 0;
  private gone = false;
  firstForwardMs: number | undefined;
  doneMs: number | undefined;

  constructor(
    private readonly script: ConnScript,
    private readonly bucket: TokenBucket,
    private readonly scheduler: VirtualTimeScheduler,
    private readonly log: Forwarded[],
  ) {
    scheduler.schedule(() => this.read(), script.startMs);
    if (script.leaveAfterMs !== undefined) scheduler.schedule(() => this.leave(), script.startMs + script.leaveAfterMs);
  }

  leave(): void {
    if (this.gone) return;
    this.gone = true;
    this.held = 0;
    this.bucket.forget(this);
  }

  granted(bytes: number): void {
    if (this.script.probeMs === 0) return this.forward(bytes);
    this.scheduler.schedule(() => (this.gone ? this.bucket.refund(bytes) : this.forward(bytes)), this.script.probeMs);
  }

  private read(): void {
    const read = this.script.reads[this.next++];
    if (this.gone || read === undefined) return;
    if (this.bucket.request(this, read.bytes)) {
      this.held = read.bytes;
      this.forward(read.bytes);
    } else {
      this.held = read.bytes;
    }
  }

  private forward(bytes: number): void {
    assert.ok(bytes <= this.held, `granted ${bytes} bytes to a conn holding ${this.held}`);
    this.held -= bytes;
    const atMs = this.scheduler.now();
    this.log.push({ atMs, bytes });
    this.firstForwardMs ??= atMs;
    if (this.held > 0) return;
    if (this.next >= this.script.reads.length) this.doneMs = atMs;
    else this.scheduler.schedule(() => this.read(), this.script.reads[this.next]!.gapMs);
  }
}

/**
 * The most bytes `log` carried in any window, beyond rate × its length: a window's excess is
 * (S_j − rate·t_j) − (S_{i−1} − rate·t_i), so one pass keeps the least second term so far.
 */
function worstExcess(log: Forwarded[], rate: number): number {
  const perMs = rate / 1000;
  let before = 0;
  let least = Infinity;
  let worst = 0;
  for (const { atMs, bytes } of log) {
    least = Math.min(least, before - perMs * atMs);
    before += bytes;
    worst = Math.max(worst, before - perMs * atMs - least);
  }
  return worst;
}

function run(pattern: Pattern): { log: Forwarded[]; fresh: ModelConn; freshFromMs: number } {
  const scheduler = new VirtualTimeScheduler();
  const bucket = new TokenBucket(pattern.rate, { now: () => scheduler.now(), scheduler });
  const log: Forwarded[] = [];
  const conns = pattern.conns.map((script) => new ModelConn(script, bucket, scheduler, log));
  scheduler.schedule(() => {
    for (const conn of conns) conn.leave();
  }, pattern.stopAtMs);
  const freshFromMs = pattern.stopAtMs + pattern.freshAfterMs;
  const fresh = new ModelConn(
    { startMs: freshFromMs, reads: [{ bytes: pattern.freshBytes, gapMs: 0 }], leaveAfterMs: undefined, probeMs: 0 },
    bucket,
    scheduler,
    log,
  );
  scheduler.flush();
  return { log, fresh, freshFromMs };
}

const read = (maxBytes: number, maxGapMs: number) => fc.record({ bytes: fc.integer({ min: 1, max: maxBytes }), gapMs: fc.integer({ min: 0, max: maxGapMs }) });
const PROBE_MS = 5;
const probeMs = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: PROBE_MS }));
const shortConn = fc.record({
  startMs: fc.integer({ min: 0, max: 3000 }),
  reads: fc.array(read(64 * KIB, 0), { minLength: 1, maxLength: 1 }),
  leaveAfterMs: fc.option(fc.integer({ min: 0, max: 2000 }), { nil: undefined }),
  probeMs,
});
const longConn = fc.record({
  startMs: fc.integer({ min: 0, max: 1000 }),
  reads: fc.array(read(64 * KIB, 20), { minLength: 2, maxLength: 12 }),
  leaveAfterMs: fc.option(fc.integer({ min: 0, max: 20_000 }), { nil: undefined }),
  probeMs,
});
const idleConn = fc.record({
  startMs: fc.integer({ min: 0, max: 3000 }),
  reads: fc.array(read(16 * KIB, 3000), { minLength: 1, maxLength: 6 }),
  leaveAfterMs: fc.option(fc.integer({ min: 0, max: 20_000 }), { nil: undefined }),
  probeMs,
});

/** Rates from the least a config takes (1KB) up; the slow ones grant a 64 KiB read in many pieces. */
const patterns: fc.Arbitrary<Pattern> = fc.record({
  rate: fc.oneof(fc.integer({ min: 1024, max: 16 * KIB }), fc.integer({ min: 16 * KIB, max: 64 * 1024 * KIB })),
  conns: fc.array(fc.oneof(shortConn, shortConn, longConn, idleConn), { minLength: 1, maxLength: 40 }),
  stopAtMs: fc.integer({ min: 0, max: 30_000 }),
  freshAfterMs: fc.integer({ min: 0, max: 3000 }),
  freshBytes: fc.integer({ min: 1, max: 64 * KIB }),
});

describe('token bucket model (virtual clock, generated conn patterns)', () => {
  test(
    'in any window the conns together carry at most rate × its length + one burst; a fresh conn is served within a second once the others stop',
    { timeout: 60_000 },
    () => {
      fc.assert(
        fc.property(patterns, (pattern) => {
          const { log, fresh, freshFromMs } = run(pattern);
          const excess = worstExcess(log, pattern.rate);
          // A piece forwarded after its probe was paid for up to PROBE_MS earlier; and one byte of
          // slack: tokens are fractional, a grant is whole bytes.
          const slack = (pattern.rate * PROBE_MS) / 1000 + 1;
          assert.ok(excess <= burstOf(pattern.rate) + slack, `${excess.toFixed(0)} bytes above rate × time, more than the ${burstOf(pattern.rate)}-byte burst`);
          assert.ok(
            fresh.firstForwardMs !== undefined && fresh.firstForwardMs - freshFromMs <= 1000,
            `the fresh conn waited ${(fresh.firstForwardMs ?? Infinity) - freshFromMs} ms`,
          );
          // No debt left by the others: its whole read takes what the rate alone asks, plus that second.
          const allowedMs = (pattern.freshBytes / pattern.rate) * 1000 + 1000;
          assert.ok(
            fresh.doneMs !== undefined && fresh.doneMs - freshFromMs <= allowedMs,
            `the fresh conn's ${pattern.freshBytes} bytes took ${(fresh.doneMs ?? Infinity) - freshFromMs} ms`,
          );
        }),
        { numRuns: 200 },
      );
    },
  );

  test("the issue's pattern: 50 conns of 64 KiB at 5KB, all gone after 8 s; a fresh upload is served at once", () => {
    const rate = 5 * KIB;
    const conns = Array.from({ length: 50 }, () => ({ startMs: 0, reads: [{ bytes: 64 * KIB, gapMs: 0 }], leaveAfterMs: undefined, probeMs: 0 }));
    const { log, fresh, freshFromMs } = run({ rate, conns, stopAtMs: 8000, freshAfterMs: 0, freshBytes: 64 * KIB });
    const beforeStop = log.filter((entry) => entry.atMs < 8000).reduce((sum, entry) => sum + entry.bytes, 0);
    assert.ok(beforeStop <= rate * 8 + burstOf(rate), `${beforeStop} bytes in 8 s at ${rate} B/s`);
    assert.ok(fresh.firstForwardMs! - freshFromMs <= 1000, `the fresh upload waited ${fresh.firstForwardMs! - freshFromMs} ms`);
  });

  test('two conns with deep buffers share the rate in turn: neither gets much more than the other', () => {
    const rate = 64 * KIB;
    const deep = (): ConnScript => ({
      startMs: 0,
      reads: Array.from({ length: 40 }, () => ({ bytes: 64 * KIB, gapMs: 0 })),
      leaveAfterMs: undefined,
      probeMs: 0,
    });
    const scheduler = new VirtualTimeScheduler();
    const bucket = new TokenBucket(rate, { now: () => scheduler.now(), scheduler });
    const logs: Forwarded[][] = [[], []];
    const conns = logs.map((log) => new ModelConn(deep(), bucket, scheduler, log));
    scheduler.schedule(() => conns.forEach((conn) => conn.leave()), 10_000);
    scheduler.flush();
    const [a, b] = logs.map((log) => log.reduce((sum, entry) => sum + entry.bytes, 0));
    assert.ok(Math.abs(a! - b!) <= 64 * KIB, `one got ${a}, the other ${b} bytes`);
  });

  test('a new rate applies to the conns waiting; unlimited grants them all at once', () => {
    const scheduler = new VirtualTimeScheduler();
    const bucket = new TokenBucket(4 * KIB, { now: () => scheduler.now(), scheduler });
    const log: Forwarded[] = [];
    const conns = Array.from(
      { length: 3 },
      () => new ModelConn({ startMs: 0, reads: [{ bytes: 64 * KIB, gapMs: 0 }], leaveAfterMs: undefined, probeMs: 0 }, bucket, scheduler, log),
    );
    scheduler.schedule(() => bucket.setRate(undefined), 2000);
    scheduler.flush();
    assert.ok(log.filter((entry) => entry.atMs < 2000).reduce((sum, entry) => sum + entry.bytes, 0) <= 4 * KIB * 2 + KIB);
    assert.deepEqual(
      conns.map((conn) => conn.doneMs),
      [2000, 2000, 2000],
    );
  });
});
