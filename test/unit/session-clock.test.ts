import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { Observable, takeUntil } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { deadline, heartbeat, heartbeatWatchdog, type HeartbeatTick } from '../../src/net/index.js';
import { Pairings } from '../../src/server/users/pairings.js';

/**
 * The session's timers on virtual time (RxJS's TestScheduler): the heartbeat's cadence and
 * its watch for silence, the login deadline, the pairing deadline, and that the session's end
 * leaves none of them behind. One frame is one ms; the real-socket tests of each behaviour
 * are in heartbeat.test.ts, session.test.ts, pairing.test.ts and common-port.test.ts.
 */
function virtualTime(): TestScheduler {
  return new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));
}

const ticks: Record<string, HeartbeatTick> = { p: { type: 'ping' } };
const silentFor = (silentMs: number): Record<string, HeartbeatTick> => ({ ...ticks, s: { type: 'silent', silentMs } });

test('the client pings every heartbeatInterval, and a server silent for heartbeatTimeout ends the heartbeat', { timeout: 5000 }, () => {
  const scheduler = virtualTime();
  scheduler.run(({ hot, expectObservable }) => {
    const messages$ = hot('-');
    // Pings at 10, 20, 30; nothing came by 35: silent, and no ping after.
    expectObservable(heartbeat(messages$, { intervalMs: 10, timeoutMs: 35, scheduler })).toBe('10ms p 9ms p 9ms p 4ms (s|)', silentFor(35));
  });
});

test('every message from the peer restarts the silence watch; the end that only answers never pings', { timeout: 5000 }, () => {
  const scheduler = virtualTime();
  scheduler.run(({ hot, expectObservable }) => {
    // Any frame counts, not only Pong: messages at 20 and 45, then silence for 30 ms.
    const messages$ = hot('20ms m 24ms m');
    expectObservable(heartbeat(messages$, { timeoutMs: 30, scheduler })).toBe('75ms (s|)', silentFor(30));
  });
});

test('the watchdog fires once, with the silence measured from the last beat (or from subscription without one)', { timeout: 5000 }, () => {
  const scheduler = virtualTime();
  scheduler.run(({ hot, cold, expectObservable }) => {
    expectObservable(hot('a 5ms a 5ms a 5ms a').pipe(heartbeatWatchdog(12, scheduler))).toBe('30ms (w|)', { w: 12 });
    expectObservable(cold('-').pipe(heartbeatWatchdog(50, scheduler))).toBe('50ms (w|)', { w: 50 });
  });
});

test('an error of the messages reaches the heartbeat, which never reports it as silence', { timeout: 5000 }, () => {
  const scheduler = virtualTime();
  scheduler.run(({ hot, expectObservable }) => {
    expectObservable(heartbeat(hot('12ms #', undefined, new Error('bad frame')), { intervalMs: 5, timeoutMs: 30, scheduler })).toBe(
      '5ms p 4ms p 1ms #',
      ticks,
      new Error('bad frame'),
    );
  });
});

test('once the session is lost, no timer of its heartbeat is left to fire', { timeout: 5000 }, () => {
  const scheduler = virtualTime();
  scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
    const messages$ = hot('-');
    const lost$ = hot('25ms x');
    expectObservable(heartbeat(messages$, { intervalMs: 10, timeoutMs: 1000, scheduler }).pipe(takeUntil(lost$))).toBe('10ms p 9ms p 4ms |', ticks);
    expectSubscriptions(messages$.subscriptions).toBe('^ 24ms !');
    // Right after the loss: neither the next ping (30) nor the watch (1000) is still scheduled.
    scheduler.schedule(() => assert.deepEqual(scheduler.actions, [], 'timers left after the loss'), 26);
  });
});

test('the login deadline fires at its time unless the login settled first', { timeout: 5000 }, () => {
  const scheduler = virtualTime();
  scheduler.run(({ hot, expectObservable }) => {
    expectObservable(deadline(40, hot('-'), scheduler)).toBe('40ms (d|)', { d: 40 });
    expectObservable(deadline(40, hot('39ms s'), scheduler)).toBe('39ms |');
  });
});

/** A pairing's outcome as an observable: the conn (`c`), or why it failed. */
function pairing(pairings: Pairings, pairingId: string): Observable<string> {
  return new Observable<string>((subscriber) => {
    pairings.expect(pairingId, {
      onWorkConn: () => subscriber.next('c'),
      onFailed: (reason, byClient) => subscriber.next(`${byClient ? 'client' : 'deadline'}: ${reason}`),
    });
  });
}

test('a user waiting for a work conn fails at the pairing deadline, and one whose conn came is left alone', { timeout: 5000 }, () => {
  const scheduler = virtualTime();
  scheduler.run(({ cold, expectObservable }) => {
    const pairings = new Pairings(100, scheduler);
    expectObservable(pairing(pairings, 'late')).toBe('100ms f', { f: 'deadline: no work conn within 100ms' });
    expectObservable(pairing(pairings, 'served')).toBe('60ms c');
    expectObservable(pairing(pairings, 'refused')).toBe('30ms r', { r: 'client: local app unreachable' });
    cold('30ms r 29ms c').subscribe((what) => (what === 'r' ? pairings.fail('refused', 'local app unreachable') : pairings.deliver('served', {} as Socket)));
    // Each id left the table at its outcome, its timer with it: only the late one's (due at 100)
    // is still scheduled, beside the check at 101.
    scheduler.schedule(() => assert.deepEqual([pairings.size, scheduler.actions.map((action) => action.delay)], [1, [100, 101]]), 61);
    scheduler.schedule(() => assert.deepEqual([pairings.has('late'), pairings.size], [false, 0]), 101);
  });
});

test("a session's end fails every waiter at once, with no deadline left to fire", { timeout: 5000 }, () => {
  const scheduler = virtualTime();
  scheduler.run(({ cold, expectObservable }) => {
    const pairings = new Pairings(100, scheduler);
    const ended = { e: 'deadline: group deactivated' };
    expectObservable(pairing(pairings, 'a')).toBe('40ms e', ended);
    expectObservable(pairing(pairings, 'b')).toBe('40ms e', ended);
    cold('40ms x').subscribe(() => pairings.failAll('group deactivated'));
    scheduler.schedule(() => assert.deepEqual(scheduler.actions, []), 41);
  });
});
