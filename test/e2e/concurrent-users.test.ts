import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startBannerApp, startEchoApp, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestGroup } from '../helpers/configs.js';
import { connectTo, echoRoundTrip, readBytes, sha256 } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

// Two groups × three apps through the real CLIs; every app gets USERS_PER_APP users at once.
const USERS_PER_APP = 50;
const BANNER = 'SSH-2.0-E2eBanner\r\n';
const processes = new ProcessSet();
const apps: TestApp[] = [];
/** group → app → public port, as the groupclients printed them. */
const ports = new Map<string, Map<string, number>>();

before(async () => {
  const groups: TestGroup[] = [];
  for (const name of ['alpha', 'beta']) {
    const [one, two, banner] = [await startEchoApp(), await startEchoApp(), await startBannerApp(BANNER)];
    apps.push(one, two, banner);
    groups.push({
      name,
      secret: randomSecret(),
      apps: [
        { name: 'echo1', localPort: one.port },
        { name: 'echo2', localPort: two.port },
        { name: 'banner', localPort: banner.port },
      ],
    });
  }
  // The pairing deadline and the heartbeat are generous: 300 pairings at once on a loaded
  // machine must not expire, and a second without a Pong there is load, not a lost client.
  const config = makeConfigDir(groups, { pairingTimeout: '15s', heartbeatInterval: '1s', heartbeatTimeout: '10s' });
  const server = await startCommonServerProcess(config.serverFile);
  processes.add(server.process);
  const clients = groups.map((group) => processes.add(startGroupClientProcess({ group: group.name, groupsDir: config.groupsDir, server })));
  for (const [index, group] of groups.entries()) ports.set(group.name, await waitForGroupActive(clients[index]!, group.name));
});

after(async () => {
  await processes.stopAll();
  await Promise.all(apps.map((app) => app.close()));
});

test('300 concurrent users over 2 groups × 3 apps each get exactly their own bytes back', { timeout: 60_000 }, async () => {
  const users: Promise<void>[] = [];
  for (const [group, table] of ports) {
    assert.deepEqual([...table.keys()].sort(), ['banner', 'echo1', 'echo2'], `port table of ${group}`);
    for (const [app, port] of table) {
      for (let user = 0; user < USERS_PER_APP; user++) {
        const payload = randomBytes(randomInt(64 * 1024, 256 * 1024 + 1));
        const expected = app === 'banner' ? Buffer.concat([Buffer.from(BANNER), payload]) : payload;
        users.push(
          echoRoundTrip(port, payload).then((back) => {
            // A hash per user: a lost, truncated or swapped stream fails here, naming the user.
            assert.equal(back.length, expected.length, `${group}/${app} user ${user}: byte count`);
            assert.equal(sha256(back), sha256(expected), `${group}/${app} user ${user}: sha-256`);
          }),
        );
      }
    }
  }
  assert.equal(users.length, 2 * 3 * USERS_PER_APP);
  const results = await Promise.allSettled(users);
  const failures = results.filter((result) => result.status === 'rejected');
  assert.equal(failures.length, 0, `${failures.length} users failed, first: ${String((failures[0] as PromiseRejectedResult | undefined)?.reason)}`);
  // Each user became exactly one LocalAppConn on its own app: no pairing went to the wrong app.
  assert.deepEqual(
    apps.map((app) => app.accepted),
    apps.map(() => USERS_PER_APP),
  );
});

test('a server-speaks-first app: the user reads the banner without sending a byte', { timeout: 10_000 }, async () => {
  for (const group of ports.keys()) {
    const user = await connectTo(ports.get(group)!.get('banner')!);
    try {
      const greeting = await readBytes(user, BANNER.length);
      assert.equal(greeting.toString(), BANNER);
    } finally {
      user.destroy();
    }
  }
});
