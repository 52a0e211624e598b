import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import type { AppView, GroupView } from '../../src/admin/state.js';
import { parsePrometheus, sampleValue, startAdmin } from '../helpers/admin.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';
import { startUdpEchoApp, unusedUdpPort, UdpUser } from '../helpers/udp.js';

/**
 * The admin surfaces treat UDP apps like TCP ones: listed with their type, state, sessions
 * and counters (the API), counted (Prometheus); and the server's policy applies to them.
 */
test('admin API and /metrics: a UDP app with its sessions, datagrams and drops by reason; allow and allowPorts apply', { timeout: 30_000 }, async () => {
  const echo = await startUdpEchoApp();
  const [echoPort, fencedPort, outsidePort] = [await unusedUdpPort(), await unusedUdpPort(), await unusedUdpPort()];
  const config = makeConfigDir(
    [
      {
        name: 'gauged',
        secret: randomSecret(),
        apps: [
          { name: 'echo', localPort: echo.port, remotePort: echoPort, type: 'udp', udp: { maxSessions: 2, maxDatagramBytes: 100 } },
          // Nobody on loopback may start a session here.
          { name: 'fenced', localPort: echo.port, remotePort: fencedPort, type: 'udp', allow: ['10.0.0.0/8'] },
          { name: 'outside', localPort: echo.port, remotePort: outsidePort, type: 'udp' },
        ],
      },
    ],
    { extra: { allowPorts: [`${echoPort}`, `${fencedPort}`] } },
  );
  const started = await startServer(config, { trafficSampleMs: 50 });
  const api = await startAdmin(started.server, config);
  const { client } = startClient(loadGroupFile(config.groupFile('gauged')), started);
  const users = await Promise.all([UdpUser.open(), UdpUser.open(), UdpUser.open()]);
  after(async () => {
    await Promise.all(users.map((user) => user.close()));
    client.stop();
    await api.admin.close();
    await started.server.close();
    await echo.close();
  });
  const activated = await waitForEvent(started.events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  const outside = activated.apps.find((app) => app.name === 'outside')!;
  assert.equal(outside.state, 'failed');
  assert.equal(outside.error, `refused by server: gauged/outside: port ${outsidePort} is outside allowPorts (${echoPort}, ${fencedPort})`);

  const [first, second, third] = users as [UdpUser, UdpUser, UdpUser];
  let sent = 0;
  let returned = 0;
  for (const user of [first, second]) {
    const reply = await user.request(echoPort, 'ping');
    sent += 4;
    returned += reply.length;
  }
  await third.send(echoPort, 'over the cap');
  await first.send(echoPort, Buffer.alloc(101));
  await first.send(fencedPort, 'fenced off');
  const dropped = new Map<string, number>();
  await waitForEvent(
    started.events,
    (e) => {
      if (e.type === 'udp-dropped')
        for (const [reason, count] of Object.entries(e.dropped)) dropped.set(`${e.app}/${reason}`, (dropped.get(`${e.app}/${reason}`) ?? 0) + count);
      return dropped.get('echo/sessionCap') === 1 && dropped.get('echo/oversize') === 1 && dropped.get('fenced/notAllowed') === 1;
    },
    'the three drops sampled',
  );

  const view = ((await (await fetch(`${api.url}/api/groups/gauged`)).json()) as { group: GroupView }).group;
  const apps = new Map<string, AppView>(view.apps.map((app) => [app.name, app]));
  const echoView = apps.get('echo')!;
  assert.equal(echoView.type, 'udp');
  assert.equal(echoView.state, 'listening');
  assert.equal(echoView.publicPort, echoPort);
  assert.equal(echoView.liveConns, 2, 'two sessions');
  assert.deepEqual(echoView.udp, {
    sessions: 2,
    sessionsTotal: 2,
    datagramsIn: 2,
    datagramsOut: 2,
    dropped: { oversize: 1, sessionCap: 1, notAllowed: 0, backlog: 0 },
  });
  assert.deepEqual(apps.get('fenced')!.udp, {
    sessions: 0,
    sessionsTotal: 0,
    datagramsIn: 0,
    datagramsOut: 0,
    dropped: { oversize: 0, sessionCap: 0, notAllowed: 1, backlog: 0 },
  });
  assert.match(apps.get('outside')!.state, /^refused by server: gauged\/outside: port \d+ is outside allowPorts/);
  assert.equal(apps.get('outside')!.udp, null);

  const labels = { group: 'gauged', app: 'echo' };
  // The byte counters add up the traffic samples: wait until those carried every byte.
  const moved = { in: 0, out: 0 };
  await waitForEvent(
    started.events,
    (e) => {
      if (e.type === 'traffic' && e.app === 'echo') {
        moved.in += e.bytesIn;
        moved.out += e.bytesOut;
      }
      return moved.in === sent && moved.out === returned;
    },
    'the traffic sampled',
  );
  const { samples } = parsePrometheus(await (await fetch(`${api.url}/metrics`)).text());
  assert.equal(sampleValue(samples, 'ntp_bytes_in_total', labels), sent);
  assert.equal(sampleValue(samples, 'ntp_bytes_out_total', labels), returned);
  assert.equal(sampleValue(samples, 'ntp_udp_sessions', labels), 2);
  assert.equal(sampleValue(samples, 'ntp_udp_sessions_total', labels), 2);
  assert.equal(sampleValue(samples, 'ntp_udp_dropped_total', { ...labels, reason: 'oversize' }), 1);
  assert.equal(sampleValue(samples, 'ntp_udp_dropped_total', { ...labels, reason: 'sessionCap' }), 1);
  assert.equal(sampleValue(samples, 'ntp_udp_dropped_total', { group: 'gauged', app: 'fenced', reason: 'notAllowed' }), 1);
  assert.equal(sampleValue(samples, 'ntp_apps_listening'), 2);
});

test('maxAppsPerGroup counts UDP apps like TCP ones', { timeout: 15_000 }, async () => {
  const echo = await startUdpEchoApp();
  const config = makeConfigDir(
    [
      {
        name: 'crowded',
        secret: randomSecret(),
        apps: [
          { name: 'tcp', localPort: echo.port },
          { name: 'udp', localPort: echo.port, type: 'udp' },
        ],
      },
    ],
    { extra: { maxAppsPerGroup: 1 } },
  );
  const started = await startServer(config);
  const { client, events } = startClient(loadGroupFile(config.groupFile('crowded')), started, { keepRetrying: false });
  after(async () => {
    client.stop();
    await started.server.close();
    await echo.close();
  });
  const rejected = await waitForEvent(events, (e) => e.type === 'login-rejected', 'the login refused');
  assert.equal(rejected.type === 'login-rejected' && rejected.code, 'POLICY');
  assert.match(rejected.type === 'login-rejected' ? rejected.reason : '', /has 2 apps; this server allows at most 1 per group/);
});
