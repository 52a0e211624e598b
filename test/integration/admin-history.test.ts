import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { HISTORY_DAYS, HISTORY_MINUTES, MAX_HISTORY_APPS, TrafficHistory } from '../../src/admin/traffic-history.js';
import { loadGroupFile } from '../../src/config/index.js';
import { startAdmin } from '../helpers/admin.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { echoRoundTrip, waitForEvent } from '../helpers/net.js';

const TOKEN = 'history-test-token-0123456789';

test(
  'the traffic history survives a restart of the server (an atomic file beside the registry, mode 600); lifecycle events outlive user churn',
  { timeout: 40_000 },
  async () => {
    const echo = await startEchoApp();
    const config = makeConfigDir([{ name: 'office', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }]);
    const historyFile = join(config.dir, 'traffic-history.json');
    after(() => echo.close());

    const first = await startServer(config);
    const api = await startAdmin(first.server, config, { token: TOKEN, historyFile });
    const { client } = startClient(loadGroupFile(config.groupFile('office')), first);
    let firstStopped = false;
    const stopFirst = async (): Promise<void> => {
      if (firstStopped) return;
      firstStopped = true;
      client.stop();
      await api.admin.close();
      await first.server.close();
    };
    after(stopFirst);
    const activated = await waitForEvent(first.events, (e) => e.type === 'group-activated', 'activation');
    assert.equal(activated.type, 'group-activated');
    const port = activated.apps[0]!.remotePort;
    // Well over 200 user events (accepted, joined, traffic, closed per user): the activation must stay listed.
    const users = 80;
    let closed = 0;
    const allClosed = waitForEvent(first.events, (e) => e.type === 'conn-closed' && ++closed === users, 'every user closed');
    for (let i = 0; i < users; i++) await echoRoundTrip(port, Buffer.alloc(1000, i));
    await allClosed;
    const recent = (await api.request('GET', '/api/events/recent')).body.events as { type: string; group?: string }[];
    assert.ok(
      recent.filter((e) => e.type !== 'group-activated' && e.type !== 'group-registered' && e.type !== 'client-connected').length >= 200,
      `${recent.length} events`,
    );
    assert.ok(
      recent.some((e) => e.type === 'group-activated' && e.group === 'office'),
      'the activation is still listed',
    );

    const before = (await api.request('GET', '/api/history/office/echo')).body as { minutes: number[][]; days: number[][] };
    const sum = (points: number[][], i: number): number => points.reduce((total, point) => total + point[i]!, 0);
    assert.equal(sum(before.minutes, 1), users * 1000);
    assert.equal(sum(before.minutes, 2), users * 1000);
    assert.equal(sum(before.days, 1), users * 1000);
    const today = (await api.request('GET', '/api/groups/office')).body.group.apps[0].today;
    assert.deepEqual(today, { bytesIn: users * 1000, bytesOut: users * 1000 });
    await stopFirst();
    assert.equal(statSync(historyFile).mode & 0o777, 0o600);

    // A new server process's admin reads it back: the past is there before any new traffic.
    const second = await startServer(config);
    const again = await startAdmin(second.server, config, { token: TOKEN, historyFile });
    after(async () => {
      await again.admin.close();
      await second.server.close();
    });
    const restored = (await again.request('GET', '/api/history/office/echo')).body as { minutes: number[][]; days: number[][] };
    assert.deepEqual(restored.minutes, before.minutes);
    assert.deepEqual(restored.days, before.days);
    assert.deepEqual((await again.request('GET', '/api/groups/office')).body.group.apps[0].today, today);
    assert.equal((await again.request('GET', '/api/history/office/nothing')).status, 404);
  },
);

test('the traffic history is bounded: 24 h of minutes, 30 days, MAX_HISTORY_APPS apps; a damaged file starts it empty', async () => {
  let now = new Date(2026, 0, 1, 12, 0, 0).getTime();
  const history = new TrafficHistory({ now: () => now });
  for (let minute = 0; minute < 40 * 24 * 60; minute += 7) {
    now += 7 * 60_000;
    history.add('g', 'a', 10, 20);
  }
  const kept = history.of('g', 'a');
  assert.ok(kept.minutes.length <= HISTORY_MINUTES && kept.minutes.length > 200, `${kept.minutes.length} minutes`);
  assert.ok(now - kept.minutes[0]![0] < 24 * 3_600_000);
  assert.equal(kept.days.length, HISTORY_DAYS);
  for (let i = 0; i < MAX_HISTORY_APPS + 10; i++) history.add('g', `app${i}`, 1, 1);
  assert.equal(history.of('g', `app${MAX_HISTORY_APPS + 5}`).minutes.length, 0, 'apps past the bound are not recorded');

  const dir = makeConfigDir([]).dir;
  const file = join(dir, 'traffic-history.json');
  writeFileSync(file, '{"apps": {"g/a": {"minutes": [[1, 2, "x"], [5, 1, 1]], "days": "nope"}}}');
  const damaged = new TrafficHistory({ file, now: () => 5 });
  await damaged.load();
  assert.deepEqual(damaged.of('g', 'a'), { minutes: [[5, 1, 1]], days: [] }, 'bad points dropped');
  writeFileSync(file, 'not json');
  const unreadable = new TrafficHistory({ file });
  await unreadable.load();
  assert.deepEqual(unreadable.of('g', 'a'), { minutes: [], days: [] });
});
