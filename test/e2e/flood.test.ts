import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, test } from 'node:test';
import { randomId } from '../../src/protocol/index.js';
import { startApp, startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestGroup } from '../helpers/configs.js';
import { floodPings, startHostileServer, type HostileServer } from '../helpers/hostile-server.js';
import { echoRoundTrip, endedByReset, streamEnding, withDeadline, type StreamEnding } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';
import { watchRss } from '../helpers/proc-usage.js';
import { rawLogin } from '../helpers/raw-client.js';
import { eventually } from '../helpers/eventually.js';

const processes = new ProcessSet();
const apps: TestApp[] = [];
const hostiles: HostileServer[] = [];
after(async () => {
  await processes.stopAll();
  await Promise.all([...apps.map((app) => app.close()), ...hostiles.map((server) => server.close())]);
});

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const FLOOD_MS = 15_000;

test(
  'a logged-in client that floods Pings and never reads is cut off as SLOW_PEER; the server stays small and another group keeps its session and its echo fast',
  { timeout: 60_000 },
  async (t) => {
    const echo = await startEchoApp();
    apps.push(echo);
    const good: TestGroup = { name: 'good', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] };
    const flood: TestGroup = { name: 'flood', secret: randomSecret(), apps: [{ name: 'none', localPort: await unusedPort() }] };
    // Heartbeats loose enough for a loaded 2-core machine; the flooder is cut off within the timeout.
    const config = makeConfigDir([good, flood], { tls: true, heartbeatInterval: '1s', heartbeatTimeout: '4s' });
    const { process: server, port, fingerprint } = await startCommonServerProcess(config.serverFile);
    processes.add(server);
    assert.ok(fingerprint, 'the server printed its fingerprint');
    const client = processes.add(startGroupClientProcess({ groupsDir: config.groupsDir, group: 'good', serverPort: port, link: { fingerprint } }));
    const echoPort = (await waitForGroupActive(client, 'good', { timeoutMs: 20_000 })).get('echo')!;
    await echoRoundTrip(echoPort, Buffer.from('warm up'));

    const rss = watchRss(server.pid);
    const until = Date.now() + FLOOD_MS;
    let floods = 0;
    let cutOff = 0;
    const flooding = (async () => {
      while (Date.now() < until) {
        const { channel } = await rawLogin({ port, fingerprint }, 'flood', flood.secret, { clientId: 'flooder' });
        floods++;
        // The reader is held since LoginResp: nothing more is read from the server.
        await floodPings(channel.socket, until);
        if (channel.socket.destroyed) cutOff++;
        channel.socket.destroy();
      }
    })();

    const payload = Buffer.from(randomId(48));
    const latenciesMs: number[] = [];
    while (Date.now() < until) {
      const started = performance.now();
      const back = await echoRoundTrip(echoPort, payload);
      latenciesMs.push(performance.now() - started);
      assert.deepEqual(back, payload);
    }
    await flooding;
    rss.stop();

    const p50 = percentile(latenciesMs, 50);
    const p99 = percentile(latenciesMs, 99);
    t.diagnostic(
      `flood: ${floods} logins, ${cutOff} cut off; server RSS max ${rss.maxMb.toFixed(0)} MB; other group's echo: ${latenciesMs.length} round trips, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`,
    );
    assert.ok(cutOff >= 1, `the flooder was cut off (${cutOff} of ${floods} logins)`);
    await server.waitForLine(/closed \S+: SLOW_PEER: the client read none of the \d+ bytes queued for it/);
    await server.waitForLine(/group flood deactivated \(SLOW_PEER\)/);
    assert.ok(rss.maxMb < 300, `server RSS stayed under 300 MB (max ${rss.maxMb.toFixed(0)} MB)`);
    assert.ok(p99 < 500, `other group's echo p99 ${p99.toFixed(1)} ms`);
    assert.ok(latenciesMs.length >= 20, `the other group was served throughout (${latenciesMs.length} round trips)`);
    assert.doesNotMatch(server.output, /group good deactivated/);
    assert.doesNotMatch(client.output, /group good lost/);
    assert.ok(server.running && client.running);
  },
);

/** A group file for a groupclient pointed at a hostile server (the app is never dialed). */
async function hostileClient(server: HostileServer, extraArgs: string[] = []) {
  const group: TestGroup = { name: 'victim', secret: randomSecret(), apps: [{ name: 'app', localPort: await unusedPort() }] };
  const config = makeConfigDir([group]);
  return processes.add(
    startGroupClientProcess({ groupsDir: config.groupsDir, group: 'victim', serverPort: server.port, link: { fingerprint: server.fingerprint }, extraArgs }),
  );
}

test('a server that floods Pings and never reads: the groupclient stays small, cuts it off as SLOW_PEER and logs in again', { timeout: 40_000 }, async (t) => {
  const hostile = await startHostileServer((channel) => void floodPings(channel.socket), { heartbeatIntervalMs: 500, heartbeatTimeoutMs: 2000 });
  hostiles.push(hostile);
  const client = await hostileClient(hostile);
  const rss = watchRss(client.pid);
  await client.waitForLine(/group victim lost: SLOW_PEER: the server read none of the \d+ bytes queued for it/, { timeoutMs: 20_000 });
  await eventually(() => hostile.logins >= 2, { message: 'the client to log in again', timeout: 20_000 });
  await eventually(() => (client.output.match(/group victim lost: SLOW_PEER/g) ?? []).length >= 2, { message: 'a second cut-off', timeout: 20_000 });
  rss.stop();
  t.diagnostic(`client RSS max ${rss.maxMb.toFixed(0)} MB over ${hostile.logins} flooded sessions`);
  assert.ok(rss.maxMb < 200, `client RSS stayed under 200 MB (max ${rss.maxMb.toFixed(0)} MB)`);
  assert.ok(client.running);
});

test('a server asking for 20,000 pooled work conns gets at most the cap (64 by default), reported in one line', { timeout: 40_000 }, async () => {
  let pingsSeen = 0;
  const hostile = await startHostileServer((channel) => {
    // Twenty asks of 1000 ids each (the codec takes at most 1024 per frame).
    for (let ask = 0; ask < 20; ask++) channel.send({ type: 'ReqPooledWorkConns', pairingIds: Array.from({ length: 1000 }, () => randomId()) });
    channel.messages$.subscribe((message) => {
      if (message.type === 'Ping') pingsSeen++;
    });
    channel.release();
  });
  hostiles.push(hostile);
  const client = await hostileClient(hostile);
  await client.waitForLine(/the server asked for 1000 pooled work conns; opened 64, at most 64 may be opening or idle/, { timeoutMs: 20_000 });
  await eventually(() => hostile.workConns >= 64, { message: `64 pooled work conns (got ${hostile.workConns})`, timeout: 20_000 });
  // Two more heartbeats from the client: time for any dial beyond the cap to show up.
  const pingsThen = pingsSeen;
  await eventually(() => pingsSeen >= pingsThen + 2, { message: 'two more Pings', timeout: 10_000 });
  assert.equal(hostile.workConns, 64);
  assert.equal((client.output.match(/pooled work conns/g) ?? []).length, 1, 'one line for the session, not one per ask');
});

test('a server repeating ReqMuxConn 5,000 times makes the client open one mux conn at a time, not 5,000 at once', { timeout: 40_000 }, async () => {
  let pingsSeen = 0;
  const hostile = await startHostileServer((channel) => {
    for (let ask = 0; ask < 5000; ask++) channel.send({ type: 'ReqMuxConn', pairingId: randomId() });
    channel.messages$.subscribe((message) => {
      if (message.type === 'Ping') pingsSeen++;
    });
    channel.release();
  });
  hostiles.push(hostile);
  await hostileClient(hostile);
  await eventually(() => hostile.workConns >= 1, { message: 'the first mux conn', timeout: 20_000 });
  // Two more heartbeats: the client is alive, and time for any further dial to show up.
  const pingsThen = pingsSeen;
  await eventually(() => pingsSeen >= pingsThen + 2, { message: 'two more Pings', timeout: 10_000 });
  // The 5,000 asks arrive within a few turns of the loop: only those that find no dial under
  // way are followed (without the guard, every one of them is dialed at once).
  assert.ok(hostile.workConns < 50, `${hostile.workConns} mux conns were dialed`);
});

test(
  'a work conn that cannot reach the server after its app was dialed resets the app conn: the app never sees a clean, empty conn',
  { timeout: 30_000 },
  async () => {
    // Watched from the accept on: the reset may come before the test's next turn.
    const endings: Array<Promise<StreamEnding>> = [];
    const app = await startApp((socket) => endings.push(streamEnding(socket)));
    apps.push(app);
    const hostile = await startHostileServer((channel) => {
      hostile.stopListening();
      channel.send({ type: 'ReqWorkConn', app: 'app', pairingId: randomId() });
      channel.release();
    });
    hostiles.push(hostile);
    const config = makeConfigDir([{ name: 'victim', secret: randomSecret(), apps: [{ name: 'app', localPort: app.port }] }]);
    processes.add(
      startGroupClientProcess({ groupsDir: config.groupsDir, group: 'victim', serverPort: hostile.port, link: { fingerprint: hostile.fingerprint } }),
    );
    await eventually(() => endings.length >= 1, { message: 'the client dialing the app', timeout: 20_000 });
    const ending = await withDeadline(endings[0]!, 10_000, 'the app conn ending');
    assert.ok(endedByReset(ending), `the app saw ${ending.ending} (kernel state ${ending.kernelState ?? 'gone'}) instead of a reset`);
  },
);

test('groupclient --max-pooled-work-conns: a value that is not a count is refused by name', { timeout: 20_000 }, async () => {
  const hostile = await startHostileServer(() => {});
  hostiles.push(hostile);
  const client = await hostileClient(hostile, ['--max-pooled-work-conns', 'lots']);
  const { code } = await client.exited;
  assert.equal(code, 2);
  assert.match(client.output, /--max-pooled-work-conns: expected a whole number from 0 to 4096, got "lots"/);
});
