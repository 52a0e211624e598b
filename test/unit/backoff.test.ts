import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { backoffDelayMs, giveUp, retryWithBackoff, type BackoffPolicy, type FailedAttempt } from '../../src/net/backoff.js';

const POLICY: BackoffPolicy = { firstMs: 100, maxMs: 800, factor: 2 };
/** A long wait: a run that sleeps through it would need the clock to move, and it does not. */
const LONG: BackoffPolicy = { firstMs: 3_600_000, maxMs: 3_600_000, factor: 2 };

// p-retry and the policy's own wait use the global setTimeout: the mock clock moves only when told.
beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
afterEach(() => mock.timers.reset());

/** Lets every promise callback that is ready run (setImmediate is not mocked). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** An attempt that fails its first `failures` calls, then resolves with 'done'. */
function failing(
  failures: number,
  make: (n: number) => Error = (n) => new Error(`failure ${n}`),
): { calls: number[]; attempt: (n: number) => Promise<string> } {
  const calls: number[] = [];
  return {
    calls,
    attempt: async (n) => {
      calls.push(n);
      if (n <= failures) throw make(n);
      return 'done';
    },
  };
}

test('the delay doubles from firstMs to the cap, and jitter only takes off (at most a fifth)', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((failures) => backoffDelayMs(POLICY, failures, () => 0)),
    [100, 200, 400, 800, 800],
  );
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((failures) => backoffDelayMs(POLICY, failures, () => 1)),
    [80, 160, 320, 640, 640],
  );
});

test('each counted failure waits the delay it announces before the next attempt, growing to the cap', { timeout: 10_000 }, async () => {
  const { calls, attempt } = failing(5);
  const told: FailedAttempt[] = [];
  const run = retryWithBackoff(attempt, { signal: new AbortController().signal, policy: POLICY, onFailedAttempt: (failed) => told.push(failed) });
  for (let failure = 1; failure <= 5; failure++) {
    await settle();
    assert.equal(calls.length, failure);
    const { delayMs, failures } = told[failure - 1]!;
    assert.equal(failures, failure);
    const base = Math.min(POLICY.maxMs, POLICY.firstMs * 2 ** (failure - 1));
    assert.ok(delayMs >= base * 0.8 && delayMs <= base, `failure ${failure}: ${delayMs}ms, expected ${base * 0.8}..${base}`);
    mock.timers.tick(delayMs - 1);
    await settle();
    assert.equal(calls.length, failure, `attempt ${failure + 1} came before its ${delayMs}ms`);
    mock.timers.tick(1);
  }
  assert.equal(await run, 'done');
  assert.deepEqual(calls, [1, 2, 3, 4, 5, 6]);
});

test('a failure that does not count is tried again at once and does not grow the delay', { timeout: 10_000 }, async () => {
  // Three servers: the first two failures of each round do not count, the third does.
  const { calls, attempt } = failing(6);
  const told: FailedAttempt[] = [];
  const run = retryWithBackoff(attempt, {
    signal: new AbortController().signal,
    policy: { ...POLICY, firstMs: 100, maxMs: 100_000 },
    counts: (error) => Number(error.message.split(' ')[1]) % 3 === 0,
    onFailedAttempt: (failed) => told.push(failed),
  });
  await settle();
  assert.equal(calls.length, 3, 'the round goes on without waiting');
  mock.timers.tick(told[2]!.delayMs);
  await settle();
  assert.equal(calls.length, 6);
  mock.timers.tick(told[5]!.delayMs);
  assert.equal(await run, 'done');
  assert.deepEqual(
    told.map(({ failures }) => failures),
    [0, 0, 1, 1, 1, 2],
  );
  assert.deepEqual(
    told.map(({ delayMs }) => delayMs > 0),
    [false, false, true, false, false, true],
  );
  assert.ok(told[2]!.delayMs <= 100 && told[5]!.delayMs > 100, JSON.stringify(told));
});

test('aborting the signal during a long wait ends the run at once: no more attempts', { timeout: 10_000 }, async () => {
  const { calls, attempt } = failing(Infinity);
  const controller = new AbortController();
  const run = retryWithBackoff(attempt, { signal: controller.signal, policy: LONG });
  await settle();
  assert.equal(calls.length, 1);
  const stopped = new Error('the owner is stopping');
  controller.abort(stopped);
  // The mock clock has not moved: only the abort can have ended the wait.
  await assert.rejects(run, (error) => error === stopped);
  mock.timers.tick(2 * LONG.maxMs);
  await settle();
  assert.equal(calls.length, 1, 'an attempt ran after the abort');
});

test('firstFailed: the owner already tried once, so the run starts with the first wait', { timeout: 10_000 }, async () => {
  const { calls, attempt } = failing(0);
  const told: FailedAttempt[] = [];
  const run = retryWithBackoff(attempt, {
    signal: new AbortController().signal,
    policy: POLICY,
    firstFailed: new Error('EADDRINUSE'),
    onFailedAttempt: (failed) => told.push(failed),
  });
  await settle();
  assert.equal(calls.length, 0);
  assert.equal(told[0]?.error.message, 'EADDRINUSE');
  mock.timers.tick(told[0]!.delayMs);
  assert.equal(await run, 'done');
  assert.deepEqual(calls, [2]);
});

test('giveUp ends the run with its error at once; a TypeError is one more failure (p-retry alone would give up)', { timeout: 10_000 }, async () => {
  const fatal = new Error('bad secret');
  const told: FailedAttempt[] = [];
  await assert.rejects(
    retryWithBackoff(
      async () => {
        throw giveUp(fatal);
      },
      { signal: new AbortController().signal, onFailedAttempt: (failed) => told.push(failed) },
    ),
    (error) => error === fatal,
  );
  assert.equal(told.length, 0);

  const { calls, attempt } = failing(1, () => new TypeError('a bug, or a bad argument'));
  const run = retryWithBackoff(attempt, { signal: new AbortController().signal, policy: POLICY, onFailedAttempt: (failed) => told.push(failed) });
  await settle();
  mock.timers.tick(POLICY.firstMs);
  assert.equal(await run, 'done');
  assert.deepEqual(calls, [1, 2]);
  assert.ok(told[0]!.error.cause instanceof TypeError);
});
