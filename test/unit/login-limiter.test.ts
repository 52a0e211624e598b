import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppAccessControl } from '../../src/server/public/policy.js';
import { LoginLimiter } from '../../src/server/session/login-limiter.js';

const CONFIG = { windowMs: 10_000, slowAfter: 2, slowByMs: 500, blockAfter: 4, blockForMs: 60_000 };

test('LoginLimiter: ok → slow → blocked → released from zero, per address, on a fake clock', () => {
  let now = 1_000_000;
  const limiter = new LoginLimiter(CONFIG, () => now);
  assert.equal(limiter.check('a').verdict, 'ok');
  assert.equal(limiter.failed('a'), undefined);
  assert.deepEqual(limiter.failed('a'), { state: 'slowed', failures: 2 });
  assert.deepEqual(limiter.check('a'), { verdict: 'slow', delayMs: 500 });
  assert.equal(limiter.check('b').verdict, 'ok', 'another address is unaffected');
  limiter.failed('a');
  assert.deepEqual(limiter.failed('a'), { state: 'blocked', failures: 4 });
  assert.deepEqual(limiter.check('a'), { verdict: 'blocked', retryInMs: 60_000 });
  now += 59_999;
  assert.equal(limiter.check('a').verdict, 'blocked');
  now += 1;
  assert.equal(limiter.check('a').verdict, 'ok', 'a served block releases completely');
  // And it can block again after a release.
  for (let i = 0; i < 3; i++) limiter.failed('a');
  assert.deepEqual(limiter.failed('a'), { state: 'blocked', failures: 4 });
});

test('LoginLimiter: failures outside the window are forgotten; a success clears the record', () => {
  let now = 0;
  const limiter = new LoginLimiter(CONFIG, () => now);
  limiter.failed('a');
  limiter.failed('a');
  now += 10_000;
  assert.equal(limiter.check('a').verdict, 'ok');
  limiter.failed('b');
  limiter.failed('b');
  limiter.succeeded('b');
  assert.equal(limiter.check('b').verdict, 'ok');
  assert.equal(limiter.trackedSources, 0);
});

test('LoginLimiter: attempts count when admitted, so attempts in flight together never pass blockAfter; abandoned ones give their place back', () => {
  const limiter = new LoginLimiter(CONFIG, () => 0);
  const verdicts = Array.from({ length: 10 }, () => limiter.begin('a').verdict);
  assert.deepEqual(verdicts, ['ok', 'ok', 'slow', 'slow', 'blocked', 'blocked', 'blocked', 'blocked', 'blocked', 'blocked']);
  limiter.abandoned('a');
  assert.equal(limiter.begin('a').verdict, 'slow', 'an abandoned attempt frees its place');
  assert.equal(limiter.begin('b').verdict, 'ok', 'another address is unaffected');
  // Four admitted attempts failing one after another block once, reported once.
  const changes = [1, 2, 3, 4].map(() => limiter.failed('a'));
  assert.deepEqual(changes, [undefined, { state: 'slowed', failures: 2 }, undefined, { state: 'blocked', failures: 4 }]);
  assert.deepEqual(limiter.check('a'), { verdict: 'blocked', retryInMs: 60_000 });
});

test('LoginLimiter: memory is bounded however many addresses fail', () => {
  const limiter = new LoginLimiter(CONFIG, () => 0);
  for (let i = 0; i < 25_000; i++) limiter.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  assert.ok(limiter.trackedSources <= 10_000, `${limiter.trackedSources} tracked`);
});

test('AppAccessControl: CIDRs of both families, IPv4-mapped users, and the connection cap', () => {
  const access = new AppAccessControl({
    name: 'a',
    local: { host: '127.0.0.1', port: 1 },
    remotePort: 0,
    allow: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.7'],
    maxConnections: 2,
  });
  assert.equal(access.refusal('10.1.2.3', 0), undefined);
  assert.equal(access.refusal('::ffff:10.1.2.3', 0), undefined);
  assert.equal(access.refusal('2001:db8::1', 0), undefined);
  assert.equal(access.refusal('192.0.2.7', 1), undefined);
  assert.match(access.refusal('192.0.2.8', 0)!, /not in the app's allow list/);
  assert.match(access.refusal('2001:db9::1', 0)!, /not in the app's allow list/);
  assert.match(access.refusal(undefined, 0)!, /unknown address/);
  assert.match(access.refusal('10.0.0.1', 2)!, /maximum of 2 connections/);
});
