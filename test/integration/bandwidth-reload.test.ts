import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { after, test } from 'node:test';
import { skip } from 'rxjs';
import { DirectoryRegistry, GroupsHotReload } from '../../src/server/index.js';
import { loadGroupFile } from '../../src/config/index.js';
import { startAdmin } from '../helpers/admin.js';
import { startApp } from '../helpers/apps.js';
import { groupYaml, makeConfigDir, randomSecret, type TestGroup } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { connectTo, waitForEvent } from '../helpers/net.js';

const MB = 1024 * 1024;

/** Bytes a user received in a window, and its length. */
interface Window {
  bytes: number;
  seconds: number;
  rate: number;
}

/** Counts what a user receives; `measure(n)` is the window in which the next n bytes arrive. */
function download(socket: Socket) {
  let received = 0;
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    wake?.();
  });
  const reached = (target: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const onClose = (): void => reject(new Error(`the download closed after ${received} bytes`));
      socket.once('close', onClose);
      wake = () => {
        if (received < target) return;
        wake = undefined;
        socket.off('close', onClose);
        resolve();
      };
      wake();
    });
  return {
    get received(): number {
      return received;
    },
    async measure(bytes: number): Promise<Window> {
      const from = received;
      const started = performance.now();
      await reached(from + bytes);
      const seconds = (performance.now() - started) / 1000;
      return { bytes: received - from, seconds, rate: (received - from) / seconds };
    },
    settle: (bytes: number) => reached(received + bytes),
  };
}

/**
 * A token bucket's own bound: in any window, at most the rate times its length, plus the burst
 * (250 ms), plus a chunk read before the bucket could say stop and one already on its way.
 */
function assertNotAbove(window: Window, limit: number, what: string): void {
  const bound = limit * window.seconds + 0.25 * limit + 2 * 64 * 1024;
  assert.ok(
    window.bytes <= bound,
    `${what}: ${window.bytes} bytes in ${window.seconds.toFixed(3)} s, more than the ${limit} B/s bucket lets through (${Math.round(bound)})`,
  );
}

/** A local app that sends for ever, as fast as the tunnel takes it (backpressure honoured). */
function startEndlessSource() {
  return startApp((socket) => {
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = (): void => {
      while (!socket.destroyed && socket.write(chunk));
    };
    socket.on('drain', pump);
    pump();
  });
}

test('a reloaded bandwidth applies to a user already downloading: slower, faster, unlimited, limited again', { timeout: 60_000 }, async (t) => {
  const source = await startEndlessSource();
  const group = (bandwidth: Record<string, string> | undefined): TestGroup => ({
    name: 'reload-bw',
    secret,
    apps: [{ name: 'download', localPort: source.port, ...(bandwidth ? { extra: { bandwidth } } : {}) }],
  });
  const secret = randomSecret();
  const config = makeConfigDir([group({ out: '1MB' })]);
  const started = await startServer(config);
  const { server, events } = started;
  const registry = new DirectoryRegistry({ server, groupsDir: config.groupsDir });
  const reload = new GroupsHotReload(registry, config.groupsDir, { debounceMs: 50 });
  const { client } = startClient(loadGroupFile(config.groupFile('reload-bw')), started);
  const api = await startAdmin(server, config);
  const appView = async (): Promise<{ bandwidth: { in: number | null; out: number | null; throttled: { in: number; out: number } | null } }> =>
    (await api.request('GET', '/api/groups/reload-bw')).body.group.apps[0];
  let user: Socket | undefined;
  after(async () => {
    user?.destroy();
    await api.admin.close();
    reload.close();
    client.stop();
    await server.close();
    await source.close();
  });
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  user = await connectTo(activated.apps[0]!.remotePort);
  const flow = download(user);
  let seen = 0;
  events.subscribe(() => seen++);
  const setLimit = async (bandwidth: Record<string, string> | undefined): Promise<void> => {
    // `events` replays from the start: only an update after this edit counts.
    const updated = waitForEvent(
      events.pipe(skip(seen)),
      (e) => e.type === 'group-updated' && (e.changes ?? []).some((change) => change.includes('bandwidth')),
      'the reload',
    );
    writeFileSync(config.groupFile('reload-bw'), groupYaml(group(bandwidth)));
    await updated;
  };

  await flow.settle(256 * 1024);
  const atOne = await flow.measure(1 * MB);
  const limited = await appView();
  assert.deepEqual([limited.bandwidth.in, limited.bandwidth.out], [null, MB], 'the admin API shows the limit, in bytes per second');
  assert.ok(
    limited.bandwidth.throttled!.out > 0 && limited.bandwidth.throttled!.in === 0,
    `the admin API shows the limit is hit: ${JSON.stringify(limited.bandwidth)}`,
  );
  await setLimit({ out: '4MB' });
  await flow.settle(256 * 1024);
  const atFour = await flow.measure(4 * MB);
  assert.equal((await appView()).bandwidth.out, 4 * MB, 'the admin API shows the reloaded limit');
  await setLimit(undefined);
  await flow.settle(MB);
  const unlimited = await flow.measure(16 * MB);
  await setLimit({ out: '1MB' });
  await flow.settle(256 * 1024);
  const atOneAgain = await flow.measure(1 * MB);
  const mb = (window: Window): string => (window.rate / MB).toFixed(2);
  t.diagnostic(`MB/s: 1MB limit ${mb(atOne)}, 4MB ${mb(atFour)}, none ${mb(unlimited)}, 1MB again ${mb(atOneAgain)}`);

  // Never faster than the limit in force...
  assertNotAbove(atOne, MB, 'at 1MB');
  assertNotAbove(atFour, 4 * MB, 'at 4MB');
  assertNotAbove(atOneAgain, MB, 'at 1MB again');
  // ...and the same live user follows each new one (loose lower bounds: a busy machine may lag).
  assert.ok(atFour.rate > 2 * atOne.rate, `raising the limit did not speed the live user up: ${mb(atOne)} → ${mb(atFour)}`);
  assert.ok(unlimited.rate > 2 * atFour.rate, `removing the limit did not free the live user: ${mb(atFour)} → ${mb(unlimited)}`);
});

test('a throttled user that is reset mid-download leaves the whole limit to the user still there', { timeout: 60_000 }, async (t) => {
  const source = await startEndlessSource();
  const config = makeConfigDir([
    { name: 'shared-bw', secret: randomSecret(), apps: [{ name: 'download', localPort: source.port, extra: { bandwidth: { out: '2MB' } } }] },
  ]);
  const started = await startServer(config);
  const { server, events } = started;
  const { client } = startClient(loadGroupFile(config.groupFile('shared-bw')), started);
  const users: Socket[] = [];
  after(async () => {
    for (const user of users) user.destroy();
    client.stop();
    await server.close();
    await source.close();
  });
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  const port = activated.apps[0]!.remotePort;
  users.push(await connectTo(port), await connectTo(port));
  const [leaving, staying] = [download(users[0]!), download(users[1]!)];
  await Promise.all([leaving.settle(256 * 1024), staying.settle(256 * 1024)]);
  const leavingBefore = leaving.received;
  const shared = await staying.measure(MB);
  const leavingShare = leaving.received - leavingBefore;
  users[0]!.resetAndDestroy();
  const closed = await waitForEvent(events, (e) => e.type === 'conn-closed' && e.error !== undefined, "the reset user's conn closed");
  assert.equal(closed.type, 'conn-closed');
  await staying.settle(256 * 1024);
  const alone = await staying.measure(2 * MB);
  t.diagnostic(
    `MB/s of a 2MB limit: shared ${(shared.rate / MB).toFixed(2)} (the other user meanwhile: ${(leavingShare / MB).toFixed(2)} MB in ${shared.seconds.toFixed(2)} s), alone ${(alone.rate / MB).toFixed(2)}`,
  );
  // Sharing: the two users' bytes in the same window are about even, and together within the bucket.
  const share = shared.bytes / (shared.bytes + leavingShare);
  assert.ok(share > 0.35 && share < 0.65, `two users of one limit: one got ${(share * 100).toFixed(0)} % of it`);
  assertNotAbove({ ...shared, bytes: shared.bytes + leavingShare }, 2 * MB, 'two users together');
  assertNotAbove(alone, 2 * MB, 'alone');
  assert.ok(alone.rate > 1.4 * shared.rate, `the user left alone did not get the freed share: ${shared.rate} → ${alone.rate}`);
});
