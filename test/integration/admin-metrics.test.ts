import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { loadGroupFile, Secret, SERVER_DEFAULTS } from '../../src/config/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { GroupsHotReload } from '../../src/server/index.js';
import { parsePrometheus, sampleValue, startAdmin, type PromSample, type TestAdmin } from '../helpers/admin.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { echoRoundTrip, waitForEvent } from '../helpers/net.js';

test('/metrics parses as Prometheus text and its counters match the traffic sent', { timeout: 30_000 }, async () => {
  const echo = await startEchoApp();
  const config = makeConfigDir(
    [
      {
        name: 'metered',
        secret: randomSecret(),
        apps: [
          { name: 'echo', localPort: echo.port },
          { name: 'idle', localPort: echo.port },
        ],
      },
      // Without mux, so that the pooled work conns' series are exercised too (mux.test.ts covers the default).
    ],
    { extra: { mux: false } },
  );
  const started = await startServer(config);
  const { server, events } = started;
  const api = await startAdmin(server, config);
  const { client } = startClient(loadGroupFile(config.groupFile('metered')), started);
  // A client with the wrong secret: one auth failure.
  const spec = loadGroupFile(config.groupFile('metered'));
  const intruder = startClient({ ...spec, secret: new Secret(randomSecret()) }, started, { clientId: 'intruder' });
  after(async () => {
    client.stop();
    intruder.client.stop();
    await api.admin.close();
    await server.close();
    await echo.close();
  });
  await waitForEvent(events, (e) => e.type === 'login-rejected', 'the intruder rejected');
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  const port = activated.apps.find((a) => a.name === 'echo')!.remotePort;

  // A full pool first: each user then takes one of its single-use conns (no refill above half).
  await waitForEvent(events, (e) => e.type === 'work-conn-pooled' && e.idle === SERVER_DEFAULTS.workConnPool, 'the pool to fill');
  const sizes = [1, 64 * 1024, 300_000];
  for (const size of sizes) {
    const payload = randomBytes(size);
    assert.equal((await echoRoundTrip(port, payload)).length, size);
  }
  let closed = 0;
  await waitForEvent(events, (e) => e.type === 'conn-closed' && ++closed === sizes.length, 'every conn closed');

  const res = await fetch(`${api.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const { samples, types } = parsePrometheus(await res.text());
  const total = sizes.reduce((a, b) => a + b, 0);
  const labels = { group: 'metered', app: 'echo' };
  assert.equal(sampleValue(samples, 'ntp_bytes_in_total', labels), total);
  assert.equal(sampleValue(samples, 'ntp_bytes_out_total', labels), total);
  assert.equal(sampleValue(samples, 'ntp_connections_total', labels), sizes.length);
  assert.equal(sampleValue(samples, 'ntp_connections', labels), 0);
  assert.equal(sampleValue(samples, 'ntp_pairing_seconds_count', { group: 'metered' }), sizes.length);
  assert.equal(sampleValue(samples, 'ntp_pairing_seconds_bucket', { group: 'metered', le: '+Inf' }), sizes.length);
  assert.equal(sampleValue(samples, 'ntp_clients_connected'), 1);
  assert.equal(sampleValue(samples, 'ntp_groups', { state: 'registered' }), 1);
  assert.equal(sampleValue(samples, 'ntp_groups', { state: 'active' }), 1);
  assert.equal(sampleValue(samples, 'ntp_apps_listening'), 2);
  assert.equal(sampleValue(samples, 'ntp_auth_failures_total', { code: 'BAD_SECRET' }), 1);
  assert.equal(sampleValue(samples, 'ntp_pairing_failures_total', labels), undefined, 'no pairing failed');
  assert.equal(
    sampleValue(samples, 'ntp_work_conns_pooled_total', { group: 'metered' }),
    SERVER_DEFAULTS.workConnPool,
    'the pool opened once, not refilled above half',
  );
  assert.equal(types.get('ntp_bytes_in_total'), 'counter');
  assert.equal(types.get('ntp_pairing_seconds'), 'histogram');
  for (const name of ['ntp_heartbeat_timeouts_total', 'ntp_pairing_failures_total']) assert.equal(types.get(name), 'counter', name);

  // A client that leaves: the gauges follow.
  client.stop();
  await waitForEvent(events, (e) => e.type === 'group-deactivated', 'deactivation');
  const after2 = parsePrometheus(await (await fetch(`${api.url}/metrics`)).text()).samples;
  assert.equal(sampleValue(after2, 'ntp_clients_connected'), 0);
  assert.equal(sampleValue(after2, 'ntp_apps_listening'), 0);
});

/** The samples of /metrics, parsed strictly. */
async function scrape(api: TestAdmin): Promise<{ samples: PromSample[]; types: Map<string, string> }> {
  const res = await api.request('GET', '/metrics');
  assert.equal(res.status, 200);
  return parsePrometheus(res.body as string);
}

/** The distinct label values of `label` over every ntp_ sample. */
function labelValues(samples: PromSample[], label: string): string[] {
  return [...new Set(samples.filter((s) => s.name.startsWith('ntp_') && s.labels[label] !== undefined).map((s) => s.labels[label]!))].sort();
}

test(
  'series of a removed app (hot reload) and of a removed group (admin API) disappear from /metrics; the other series stay',
  { timeout: 30_000 },
  async () => {
    const echo = await startEchoApp();
    const secret = randomSecret();
    const both = {
      name: 'shrinking',
      secret,
      apps: [
        { name: 'kept', localPort: echo.port },
        { name: 'dropped', localPort: echo.port },
      ],
    };
    const config = makeConfigDir([both, { name: 'bystander', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }]);
    const started = await startServer(config);
    const { server, events } = started;
    const api = await startAdmin(server, config);
    const reload = new GroupsHotReload(api.admin.registry, config.groupsDir, { watch: false });
    const { client } = startClient(loadGroupFile(config.groupFile('shrinking')), started);
    after(async () => {
      client.stop();
      reload.close();
      await api.admin.close();
      await server.close();
      await echo.close();
    });
    const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
    assert.equal(activated.type, 'group-activated');
    let closed = 0;
    for (const app of activated.apps) assert.equal((await echoRoundTrip(app.remotePort, randomBytes(5000))).length, 5000);
    await waitForEvent(events, (e) => e.type === 'conn-closed' && ++closed === 2, 'both users closed');

    const before = (await scrape(api)).samples;
    for (const app of ['kept', 'dropped']) {
      const labels = { group: 'shrinking', app };
      assert.equal(sampleValue(before, 'ntp_bytes_in_total', labels), 5000, app);
      assert.equal(sampleValue(before, 'ntp_connections_total', labels), 1, app);
      assert.equal(sampleValue(before, 'ntp_connections', labels), 0, app);
    }
    assert.deepEqual(labelValues(before, 'group'), ['bystander', 'shrinking']);

    // Hot reload: the file loses one app.
    config.writeGroup({ ...both, apps: [both.apps[0]!] });
    reload.reload('test');
    await waitForEvent(events, (e) => e.type === 'group-updated' && e.apps === 1, 'the group updated');
    const shrunk = (await scrape(api)).samples;
    assert.deepEqual(labelValues(shrunk, 'app'), ['echo', 'kept'], 'no series of the removed app');
    assert.equal(sampleValue(shrunk, 'ntp_bytes_in_total', { group: 'shrinking', app: 'kept' }), 5000, 'the kept app keeps its counts');
    assert.equal(sampleValue(shrunk, 'ntp_pairing_seconds_count', { group: 'shrinking' }), 2, 'group series stay');

    // Admin API: the whole group goes.
    assert.equal((await api.request('DELETE', '/api/groups/shrinking')).status, 200);
    await waitForEvent(events, (e) => e.type === 'group-deregistered', 'the group removed');
    const { samples: gone, types } = await scrape(api);
    assert.deepEqual(labelValues(gone, 'group'), ['bystander'], 'no series of the removed group');
    assert.equal(sampleValue(gone, 'ntp_connections', { group: 'bystander', app: 'echo' }), 0);
    assert.equal(sampleValue(gone, 'ntp_groups', { state: 'registered' }), 1);

    // Process metrics, under the names Node.js dashboards expect.
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      assert.ok(types.has(name), `${name} is exported`);
      assert.ok(
        gone.some((s) => s.name === name),
        `${name} has a sample`,
      );
    }
    assert.ok(sampleValue(gone, 'process_resident_memory_bytes')! > 1024 * 1024, 'the resident memory is real');
  },
);

test(
  'ntp_group_up and ntp_app_up: a series per registered group and app, 1 while up and 0 while away; HEAD /metrics; the favicon',
  { timeout: 30_000 },
  async () => {
    const echo = await startEchoApp();
    const config = makeConfigDir([
      { name: 'online', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] },
      { name: 'offline', secret: randomSecret(), apps: [{ name: 'ssh', localPort: echo.port }] },
    ]);
    const started = await startServer(config);
    const api = await startAdmin(started.server, config, { token: 'metrics-up-token-0123456789' });
    const { client } = startClient(loadGroupFile(config.groupFile('online')), started);
    after(async () => {
      client.stop();
      await api.admin.close();
      await started.server.close();
      await echo.close();
    });
    await waitForEvent(started.events, (e) => e.type === 'group-activated' && e.group === 'online', 'online active');
    const scrape = async (): Promise<PromSample[]> => parsePrometheus((await api.request('GET', '/metrics')).body as string).samples;
    let samples = await scrape();
    assert.equal(sampleValue(samples, 'ntp_group_up', { group: 'online' }), 1);
    assert.equal(sampleValue(samples, 'ntp_group_up', { group: 'offline' }), 0);
    assert.equal(sampleValue(samples, 'ntp_app_up', { group: 'online', app: 'echo' }), 1);
    assert.equal(sampleValue(samples, 'ntp_app_up', { group: 'offline', app: 'ssh' }), 0);
    client.stop();
    await waitForEvent(started.events, (e) => e.type === 'group-deactivated' && e.group === 'online', 'online away');
    samples = await scrape();
    assert.equal(sampleValue(samples, 'ntp_group_up', { group: 'online' }), 0);
    assert.equal(sampleValue(samples, 'ntp_app_up', { group: 'online', app: 'echo' }), 0);

    // HEAD: the headers a probe needs, no body; the token is still required.
    const head = await fetch(`${api.url}/metrics`, { method: 'HEAD', headers: { authorization: `Bearer ${api.token}` } });
    assert.equal(head.status, 200);
    assert.match(head.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.equal(await head.text(), '');
    assert.equal((await fetch(`${api.url}/metrics`, { method: 'HEAD' })).status, 401);
    for (const path of ['/favicon.svg', '/favicon.ico']) {
      const icon = await fetch(`${api.url}${path}`);
      assert.equal(icon.status, 200, path);
      assert.equal(icon.headers.get('content-type'), 'image/svg+xml');
      assert.match(await icon.text(), /^<svg /);
    }
  },
);
