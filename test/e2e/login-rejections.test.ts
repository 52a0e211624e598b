import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { startFaultRelay, type FaultRelay } from '../helpers/fault-relay.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import type { ServerLink } from '../helpers/link.js';
import { echoRoundTrip, expectRefused, sha256 } from '../helpers/net.js';
import { CliProcess, ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

const processes = new ProcessSet();
let echo: TestApp;
const relays: FaultRelay[] = [];
let config: TestConfigDir;
let server: CliProcess;
let serverLink: ServerLink;
/** The fixed public port of group "guarded", which no rejected client may open. */
let guardedPort = 0;

before(async () => {
  echo = await startEchoApp();
  guardedPort = await unusedPort();
  config = makeConfigDir([
    { name: 'guarded', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort: guardedPort }] },
    { name: 'shared', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] },
    { name: 'contested', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] },
  ]);
  const started = await startCommonServerProcess(config.serverFile);
  server = processes.add(started.process);
  serverLink = started;
});

after(async () => {
  await processes.stopAll();
  await Promise.all(relays.map((relay) => relay.close()));
  await echo.close();
});

// Each case: a groupclient whose own group file the server refuses; its fixed remotePort is
// the guarded group's, which must stay closed.
const refusals = [
  { title: 'wrong secret', group: 'guarded', clientId: 'intruder', code: 'BAD_SECRET' },
  { title: 'unknown group', group: 'nobody-knows-me', clientId: 'stranger', code: 'UNKNOWN_GROUP' },
];
for (const { title, group, clientId, code } of refusals) {
  test(`${title}: the groupclient exits 3 with ${code} and no port opens`, { timeout: 10_000 }, async () => {
    const own = makeConfigDir([{ name: group, secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort: guardedPort }] }]);
    const client = processes.add(startGroupClientProcess({ configFile: own.groupFile(group), server: serverLink, clientId }));
    const { code: exitCode } = await client.exited;
    assert.equal(exitCode, 3, client.output);
    assert.match(client.output, new RegExp(`login rejected: ${code}: `));
    await server.waitForLine(new RegExp(`login rejected from 127\\.0\\.0\\.1:\\d+ for group ${group}: ${code}`));
    await expectRefused(guardedPort);
  });
}

test('a second client for a live group exits 3 with GROUP_IN_USE naming where and since when', { timeout: 15_000 }, async () => {
  const owner = processes.add(startGroupClientProcess({ group: 'shared', groupsDir: config.groupsDir, server: serverLink, clientId: 'owner' }));
  const ports = await waitForGroupActive(owner, 'shared');
  await server.waitForLine(/group shared activated/);
  const activations = server.lines.filter((line) => /group shared activated/.test(line)).length;

  const intruder = processes.add(startGroupClientProcess({ group: 'shared', groupsDir: config.groupsDir, server: serverLink, clientId: 'someone-else' }));
  const { code } = await intruder.exited;
  assert.equal(code, 3, intruder.output);
  assert.match(intruder.output, /GROUP_IN_USE.*active from 127\.0\.0\.1:\d+ since \d{4}-\d\d-\d\dT/);
  // Nothing was opened or re-opened for the intruder; the owner's session still serves.
  assert.equal(server.lines.filter((line) => /group shared activated/.test(line)).length, activations);
  const payload = Buffer.from('owner still served');
  assert.equal(sha256(await echoRoundTrip(ports.get('echo')!, payload)), sha256(payload));
  await owner.stop();
});

test('another client with --keep-retrying gets the group once the silent owner times out', { timeout: 25_000 }, async () => {
  const relay = await startFaultRelay(serverLink.port);
  relays.push(relay);
  const owner = processes.add(
    startGroupClientProcess({ group: 'contested', groupsDir: config.groupsDir, server: { ...serverLink, port: relay.port }, clientId: 'first' }),
  );
  await waitForGroupActive(owner, 'contested');
  const standby = processes.add(
    startGroupClientProcess({ group: 'contested', groupsDir: config.groupsDir, server: serverLink, clientId: 'standby', extraArgs: ['--keep-retrying'] }),
  );
  await standby.waitForLine(/login rejected: GROUP_IN_USE: .* \(retrying\)$/);

  relay.blackhole();
  await owner.killHard();
  // Heartbeat timeout (1 s) plus a few backoff steps of the standby.
  const ports = await waitForGroupActive(standby, 'contested', { timeoutMs: 15_000 });
  await server.waitForLine(/group contested deactivated \(HEARTBEAT_TIMEOUT\)/);
  const payload = Buffer.from('standby took over');
  assert.equal(sha256(await echoRoundTrip(ports.get('echo')!, payload)), sha256(payload));
});

test('the same client restarted takes its group over at once, on the same port', { timeout: 20_000 }, async () => {
  // A heartbeat timeout far beyond this test's own timeout: passing proves takeover, not expiry.
  const remotePort = await unusedPort();
  const slow = makeConfigDir([{ name: 'roaming', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort }] }], {
    heartbeatInterval: '1s',
    heartbeatTimeout: '30s',
  });
  const slowServer = await startCommonServerProcess(slow.serverFile);
  processes.add(slowServer.process);
  // The first agent reaches the server through a relay that will turn into a dead path.
  const relay = await startFaultRelay(slowServer.port);
  relays.push(relay);
  const start = (server: ServerLink): CliProcess =>
    processes.add(startGroupClientProcess({ group: 'roaming', groupsDir: slow.groupsDir, server, clientId: 'agent-1' }));

  const first = start({ ...slowServer, port: relay.port });
  assert.equal((await waitForGroupActive(first, 'roaming')).get('echo'), remotePort);
  // The agent dies and its path with it: no FIN reaches the server, the session looks alive.
  relay.blackhole();
  await first.killHard();

  const restarted = start(slowServer);
  const startedAt = Date.now();
  const ports = await waitForGroupActive(restarted, 'roaming', { timeoutMs: 15_000 });
  const tookMs = Date.now() - startedAt;
  assert.ok(tookMs < 15_000, `takeover took ${tookMs}ms`);
  assert.equal(ports.get('echo'), remotePort);
  await slowServer.process.waitForLine(/group roaming deactivated \(TAKEN_OVER\)/);
  assert.doesNotMatch(slowServer.process.output, /CONNECTION_LOST|HEARTBEAT_TIMEOUT/);
  assert.doesNotMatch(restarted.output, /already in use|✗/);
  const payload = Buffer.from('after the takeover');
  assert.equal(sha256(await echoRoundTrip(remotePort, payload)), sha256(payload));
});
