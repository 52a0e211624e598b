import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { BindRetries } from '../../src/server/public/bind-retry.js';

// The retries wait on the global setTimeout: the mock clock moves only when told.
beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
afterEach(() => mock.timers.reset());

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const busy = (): Error => Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' });

test('a busy port is tried after the first delay, then less and less often, until it binds', { timeout: 10_000 }, async () => {
  const tries: number[] = [];
  let freeAfter = 3;
  const retries = new BindRetries(
    'g',
    async () => {
      tries.push(Date.now());
      if (--freeAfter > 0) throw busy();
    },
    { firstMs: 1000, maxMs: 1500 },
  );
  retries.schedule('web', busy());
  await settle();
  assert.equal(tries.length, 0, 'the caller has just failed: the first try waits');
  for (const waitMs of [1000, 1500, 1500]) {
    mock.timers.tick(waitMs);
    await settle();
  }
  assert.equal(tries.length, 3);
  assert.equal(retries.has('web'), false, 'bound: no longer retried');
});

test('cancel and cancelAll end a long wait at once: no try comes after', { timeout: 10_000 }, async () => {
  let tries = 0;
  const retries = new BindRetries(
    'g',
    async () => {
      tries += 1;
      throw busy();
    },
    { firstMs: 3_600_000, maxMs: 3_600_000 },
  );
  retries.schedule('one', busy());
  retries.schedule('two', busy());
  retries.cancel('one');
  assert.equal(retries.has('one'), false);
  assert.equal(retries.has('two'), true);
  retries.cancelAll();
  assert.equal(retries.has('two'), false);
  mock.timers.tick(2 * 3_600_000);
  await settle();
  assert.equal(tries, 0);
});
