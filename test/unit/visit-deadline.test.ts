import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VirtualTimeScheduler } from 'rxjs';
import { SessionVisits, VisitFailed } from '../../src/client/visits.js';
import type { VisitorSpec } from '../../src/config/index.js';
import type { Message } from '../../src/protocol/index.js';
import { advance, settle } from '../helpers/virtual-clock.js';

const VISITOR: VisitorSpec = { name: 'redis', group: 'office-a', app: 'redis', bind: { host: '127.0.0.1', port: 6380 }, type: 'tcp' };

function visitsOnClock(): { visits: SessionVisits; clock: VirtualTimeScheduler; sent: Message[] } {
  const clock = new VirtualTimeScheduler();
  const sent: Message[] = [];
  const visits = new SessionVisits({ group: 'office-b', send: (message) => sent.push(message), timeoutMs: 10_000, maxPending: 8, scheduler: clock });
  return { visits, clock, sent };
}

test('a visit the server never answers fails at its deadline, not a ms before', { timeout: 5_000 }, async () => {
  const { visits, clock, sent } = visitsOnClock();
  let failed: unknown;
  visits.ask(VISITOR).catch((error: unknown) => (failed = error));
  // Read through a call: the compiler would keep an assertion's narrowing across the await.
  const outcome = (): unknown => failed;
  assert.equal(sent[0]?.type, 'Visit');
  advance(clock, 9_999);
  await settle();
  assert.equal(outcome(), undefined, 'still waiting a ms before its deadline');
  advance(clock, 1);
  await settle();
  const error = outcome();
  assert.ok(error instanceof VisitFailed);
  assert.equal(error.message, 'no answer from the server within 10s');
  assert.equal(error.byServer, false);
});

test('a visit answered or ended before its deadline leaves no timer behind', { timeout: 5_000 }, async () => {
  const { visits, clock, sent } = visitsOnClock();
  const refused = visits.ask(VISITOR);
  const dropped = visits.ask(VISITOR);
  assert.equal(clock.actions.length, 2, 'one deadline per waiting visit');
  const first = sent[0];
  assert.ok(first?.type === 'Visit');
  visits.onRefused({
    type: 'VisitRefused',
    visitId: first.visitId,
    visitorGroup: 'office-b',
    visitor: 'redis',
    group: 'office-a',
    app: 'redis',
    reason: 'not allowed',
  });
  await assert.rejects(refused, { message: 'not allowed', byServer: true });
  visits.closeAll('the session ended');
  await assert.rejects(dropped, { message: 'the session ended', byServer: false });
  assert.equal(clock.actions.length, 0);
});
