import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { filter, firstValueFrom, map, take, timeout, toArray } from 'rxjs';
import type { ClientEvent } from '../../src/client/index.js';
import { clientEntry } from '../../src/cli/client-lines.js';
import { loadGroupFile } from '../../src/config/index.js';
import { unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';

const RECONNECT = { minDelayMs: 100, maxDelayMs: 1000, factor: 2 };

/** Each event with the time it was seen (the replay is subscribed to at once, so in real time). */
function timeline(events: ReturnType<typeof startClient>['events']): { event: ClientEvent; at: number }[] {
  const seen: { event: ClientEvent; at: number }[] = [];
  events.subscribe((event) => seen.push({ event, at: Date.now() }));
  return seen;
}

/** The delay the backoff may pick after `failures` in a row (jitter takes up to 20% off). */
function bounds(failures: number): [number, number] {
  const base = Math.min(RECONNECT.maxDelayMs, RECONNECT.minDelayMs * RECONNECT.factor ** (failures - 1));
  return [Math.floor(base * 0.8), base];
}

test(
  'sessions that die soon after login back off more each time; one that lived long starts afresh; the delay announced is the one waited',
  { timeout: 40_000 },
  async () => {
    const config = makeConfigDir([{ name: 'flaky', secret: randomSecret(), apps: [{ name: 'echo', localPort: 1 }] }], { tls: true });
    const { server, port, events, fingerprint } = await startServer(config);
    const transport = { kind: 'tls' as const, fingerprint: fingerprint! };
    // A server that drops the session as soon as it is up, until told to let it live.
    let kick = true;
    const kicker = events.subscribe((e) => {
      if (e.type === 'group-activated' && kick) setImmediate(() => server.inUseGroup.get('flaky')?.deactivate('KICKED', 'test: dropped at once'));
    });
    const { client, events: clientEvents } = startClient(loadGroupFile(config.groupFile('flaky')), port, {
      transport,
      reconnect: RECONNECT,
      stableSessionMs: 1500,
    });
    const seen = timeline(clientEvents);
    after(async () => {
      kicker.unsubscribe();
      client.stop();
      await server.close();
    });

    const lost = await firstValueFrom(
      clientEvents.pipe(
        filter((e) => e.type === 'session-lost'),
        map((e) => (e.type === 'session-lost' ? e.retryInMs : -1)),
        take(5),
        toArray(),
        timeout(20_000),
      ),
    );
    lost.forEach((retryInMs, i) => {
      const [low, high] = bounds(i + 1);
      assert.ok(
        retryInMs >= low && retryInMs <= high,
        `session ${i + 1} died young: waited ${retryInMs}ms, expected ${low}..${high} (all: ${lost.join(', ')})`,
      );
    });
    // Each announced delay is really waited before the next attempt (never less).
    const losses = seen.filter(({ event }) => event.type === 'session-lost');
    for (const loss of losses) {
      const next = seen.find(({ event, at }) => event.type === 'connecting' && at >= loss.at);
      if (next === undefined) continue; // the last one may not have reconnected yet
      const announced = loss.event.type === 'session-lost' ? loss.event.retryInMs : 0;
      assert.ok(next.at - loss.at >= announced - 2, `announced ${announced}ms, reconnected after ${next.at - loss.at}ms`);
    }
    assert.match(clientEntry('flaky', losses[0]!.event)?.text ?? '', /group flaky lost: KICKED: .*; reconnecting in \d+(\.\d)?(ms|s)$/);

    // Now a session lives past stableSessionMs (its heartbeats show it) before it is dropped:
    // the next login is at once, and the one after a young death starts from the minimum again.
    kick = false;
    // The age of the current session, from the client's last login (one kicked just before
    // `kick` turned false may still be replaced by a new one: that one is measured).
    const lastLoginAt = (): number => seen.filter(({ event }) => event.type === 'login-accepted').at(-1)?.at ?? Date.now();
    await waitForEvent(clientEvents, (e) => e.type === 'heartbeat' && Date.now() - lastLoginAt() > 1700, 'a session to live 1.7 s', 10_000);
    kick = true;
    server.inUseGroup.get('flaky')!.deactivate('KICKED', 'test: dropped after a long life');
    const afterLong = await waitForEvent(clientEvents, (e) => e.type === 'session-lost' && e.reason.includes('long life'), 'the long session lost');
    assert.equal(afterLong.type === 'session-lost' && afterLong.retryInMs, 0);
    const mark = seen.findIndex(({ event }) => event === afterLong);
    const young = await waitForEvent(
      clientEvents,
      (e) => e.type === 'session-lost' && seen.findIndex(({ event }) => event === e) > mark,
      'the next young death',
    );
    const [low, high] = bounds(1);
    assert.ok(young.type === 'session-lost' && young.retryInMs >= low && young.retryInMs <= high, JSON.stringify(young));
  },
);

test('a server that is down: each connect-failed announces the delay the client then waits', { timeout: 20_000 }, async () => {
  const spec = loadGroupFile(makeConfigDir([{ name: 'nowhere', secret: randomSecret(), apps: [{ name: 'echo', localPort: 1 }] }]).groupFile('nowhere'));
  const { client, events } = startClient(spec, { port: await unusedPort() }, { reconnect: RECONNECT });
  const seen = timeline(events);
  after(() => client.stop());
  const failures = await firstValueFrom(
    events.pipe(
      filter((e) => e.type === 'connect-failed'),
      take(4),
      toArray(),
      timeout(15_000),
    ),
  );
  failures.forEach((failure, i) => {
    const [low, high] = bounds(i + 1);
    assert.ok(failure.type === 'connect-failed' && failure.retryInMs >= low && failure.retryInMs <= high, JSON.stringify(failure));
  });
  for (const [i, entry] of seen.entries()) {
    if (entry.event.type !== 'connect-failed') continue;
    const next = seen.slice(i).find(({ event }) => event.type === 'connecting');
    if (next === undefined) continue;
    assert.ok(next.at - entry.at >= entry.event.retryInMs - 2, `announced ${entry.event.retryInMs}ms, retried after ${next.at - entry.at}ms`);
  }
  assert.match(clientEntry('nowhere', failures[0]!)?.text ?? '', /retrying in \d+(\.\d)?(ms|s)$/);
});

test('stop() during a long backoff ends run() at once, not after the delay', { timeout: 20_000 }, async () => {
  const spec = loadGroupFile(makeConfigDir([{ name: 'patient', secret: randomSecret(), apps: [{ name: 'echo', localPort: 1 }] }]).groupFile('patient'));
  // An hour between attempts: a run that slept through it would end this test by its timeout.
  const hour = { minDelayMs: 3_600_000, maxDelayMs: 3_600_000, factor: 2 };
  const { client, events, done } = startClient(spec, { port: await unusedPort() }, { reconnect: hour });
  after(() => client.stop());
  const failed = await waitForEvent(events, (e) => e.type === 'connect-failed', 'the first failed connect', 10_000);
  assert.ok(failed.type === 'connect-failed' && failed.retryInMs >= 0.8 * hour.minDelayMs, JSON.stringify(failed));
  client.stop();
  await done;
  const stopped = await waitForEvent(events, (e) => e.type === 'stopped', 'stopped');
  assert.deepEqual(stopped, { type: 'stopped', reason: 'on request', fatal: false });
});
