import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { stringify } from 'yaml';
import { loadGroupFile } from '../../src/config/index.js';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { echoRoundTrip, waitForEvent } from '../helpers/net.js';
import { connectFrom, endedByServer, rawLogin } from '../helpers/raw-peer.js';

async function echoApp() {
  const echo = await startEchoApp();
  after(() => echo.close());
  return echo;
}

test('allowPorts: an app outside the ranges fails with a reason naming group, app and port; the others serve', { timeout: 15_000 }, async () => {
  const echo = await echoApp();
  const inside = await unusedPort();
  const outside = await unusedPort();
  const config = makeConfigDir(
    [
      {
        name: 'ports',
        secret: randomSecret(),
        apps: [
          { name: 'ok', localPort: echo.port, remotePort: inside },
          { name: 'nope', localPort: echo.port, remotePort: outside },
          { name: 'any', localPort: echo.port, remotePort: 0 },
        ],
      },
    ],
    { extra: { allowPorts: [`${inside}`] } },
  );
  const started = await startServer(config);
  const { server } = started;
  const { client, events } = startClient(loadGroupFile(config.groupFile('ports')), started);
  after(async () => {
    client.stop();
    await server.close();
  });
  const accepted = await waitForEvent(events, (e) => e.type === 'login-accepted', 'login');
  assert.equal(accepted.type, 'login-accepted');
  const apps = new Map(accepted.apps.map((app) => [app.name, app]));
  assert.equal(apps.get('ok')!.state, 'listening');
  assert.equal(apps.get('nope')!.state, 'failed');
  assert.equal(apps.get('nope')!.error, `refused by server: ports/nope: port ${outside} is outside allowPorts (${inside})`);
  assert.match(apps.get('any')!.error!, /^refused by server: ports\/any: remotePort 0 \(any port\) is outside allowPorts/);
  assert.equal((await echoRoundTrip(inside, Buffer.from('allowed'))).toString(), 'allowed');
});

test('maxAppsPerGroup and maxGroups refuse the login with the reason (POLICY)', { timeout: 15_000 }, async () => {
  const echo = await echoApp();
  const secrets = { big: randomSecret(), one: randomSecret(), two: randomSecret() };
  const config = makeConfigDir(
    [
      {
        name: 'big',
        secret: secrets.big,
        apps: [
          { name: 'a', localPort: echo.port },
          { name: 'b', localPort: echo.port },
        ],
      },
      { name: 'one', secret: secrets.one, apps: [{ name: 'a', localPort: echo.port }] },
      { name: 'two', secret: secrets.two, apps: [{ name: 'a', localPort: echo.port }] },
    ],
    { heartbeatInterval: '1s', heartbeatTimeout: '20s', tls: true, extra: { maxAppsPerGroup: 1, maxGroups: 1 } },
  );
  const started = await startServer(config);
  const { server } = started;
  after(() => server.close());
  const big = await rawLogin(started, { group: 'big', secret: secrets.big });
  assert.equal(big.resp.error?.code, 'POLICY');
  assert.equal(big.resp.error?.reason, 'group "big" has 2 apps; this server allows at most 1 per group');
  big.channel.destroy();

  const one = await rawLogin(started, { group: 'one', secret: secrets.one });
  assert.ok(one.resp.sessionId);
  const two = await rawLogin(started, { group: 'two', secret: secrets.two });
  assert.equal(two.resp.error?.code, 'POLICY');
  assert.match(two.resp.error!.reason, /at most 1 active group/);
  two.channel.destroy();
  // A takeover of the active group does not count as another group.
  const again = await rawLogin(started, { group: 'one', clientId: 'raw-one', secret: secrets.one });
  assert.ok(again.resp.sessionId, JSON.stringify(again.resp.error));
  again.channel.destroy();
  one.channel.destroy();
});

test('allow: users outside the CIDR list are closed at accept; maxConnections caps the app', { timeout: 15_000 }, async () => {
  const echo = await echoApp();
  const config = makeConfigDir([{ name: 'guarded', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }]);
  // Per-app access lives in the group file: add it to what the helper wrote.
  const spec = loadGroupFile(config.groupFile('guarded'));
  writeFileSync(
    config.groupFile('guarded'),
    stringify({
      name: 'guarded',
      secret: spec.secret.reveal(),
      apps: [{ name: 'echo', local: `127.0.0.1:${echo.port}`, remotePort: 0, allow: ['127.0.0.2/31'], maxConnections: 1 }],
    }),
  );
  const started = await startServer(config);
  const { server, events } = started;
  const { client } = startClient(loadGroupFile(config.groupFile('guarded')), started);
  after(async () => {
    client.stop();
    await server.close();
  });
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  const appPort = activated.apps[0]!.remotePort;

  const stranger = await connectFrom(appPort, '127.0.0.1');
  await endedByServer(stranger);
  const refusal = await waitForEvent(events, (e) => e.type === 'user-conn-refused', 'refusal of 127.0.0.1');
  assert.match(refusal.type === 'user-conn-refused' ? refusal.reason : '', /127\.0\.0\.1 is not in the app's allow list/);

  const first = await connectFrom(appPort, '127.0.0.2');
  first.write('ping');
  await new Promise((resolve) => first.once('data', resolve)); // relayed: it counts now
  const second = await connectFrom(appPort, '127.0.0.3');
  await endedByServer(second);
  const full = await waitForEvent(events, (e) => e.type === 'user-conn-refused' && /maximum of 1 connection/.test(e.reason), 'maxConnections refusal');
  assert.ok(full);
  first.destroy();
  await waitForEvent(events, (e) => e.type === 'conn-closed', 'the first user leaving');
  const third = await connectFrom(appPort, '127.0.0.3');
  third.end('after');
  const back = await new Promise<string>((resolve) => {
    let text = '';
    third.on('data', (chunk: Buffer) => (text += chunk.toString()));
    third.once('end', () => resolve(text));
  });
  assert.equal(back, 'after');
  third.destroy();
});
