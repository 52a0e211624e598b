import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { eventually } from '../helpers/eventually.js';

describe('eventually, the one poller of the tests', () => {
  test('resolves with what the first passing try returned', { timeout: 5000 }, async () => {
    let tries = 0;
    const value = await eventually(() => (++tries === 3 ? 'third' : false), { message: 'the third try', interval: 1 });
    assert.equal(value, 'third');
    assert.equal(tries, 3);
  });

  test('a check that throws is tried again, and passes once it stops throwing', { timeout: 5000 }, async () => {
    let tries = 0;
    await eventually(
      () => {
        tries++;
        assert.ok(tries > 2, 'not yet');
      },
      { message: 'an assertion to hold', interval: 1 },
    );
    assert.equal(tries, 3);
  });

  test('at the timeout, the failure names what was awaited and the last try', { timeout: 5000 }, async () => {
    let seen = 0;
    await assert.rejects(
      eventually(
        () => {
          seen++;
          throw new Error(`still ${seen}`);
        },
        { message: 'the counter to settle', timeout: 50, interval: 5 },
      ),
      (error: Error) => {
        assert.match(error.message, /^timed out after 50ms waiting for the counter to settle \(last try: still \d+\)$/);
        assert.ok(error.cause instanceof Error);
        return true;
      },
    );
    assert.ok(seen > 1, 'tried more than once');
  });

  test('a message given as a function is read at the timeout, with the state then', { timeout: 5000 }, async () => {
    let count = 0;
    await assert.rejects(
      eventually(() => ++count > 1e9, { message: () => `the count to pass 1e9 (at ${count})`, timeout: 30, interval: 1 }),
      (error: Error) => {
        assert.equal(error.message, `timed out after 30ms waiting for the count to pass 1e9 (at ${count})`);
        return true;
      },
    );
  });

  test('a try that never settles fails at the timeout instead of hanging', { timeout: 5000 }, async () => {
    await assert.rejects(
      eventually(() => new Promise<boolean>(() => {}), { message: 'an answer that never comes', timeout: 50 }),
      /timed out after 50ms waiting for an answer that never comes$/,
    );
  });
});
