import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { LoginRejectedError } from '../../src/client/index.js';
import { loadGroupFile, parseGroupFile, YamlFile } from '../../src/config/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { groupYaml, makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { echoRoundTrip, waitForEvent } from '../helpers/net.js';
import { rawLogin } from '../helpers/raw-client.js';

test('a public port that cannot be bound fails that app alone, and the client is told', { timeout: 15_000 }, async () => {
  const echo = await startEchoApp();
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  const takenPort = (squatter.address() as AddressInfo).port;
  const config = makeConfigDir([
    {
      name: 'ports',
      secret: randomSecret(),
      apps: [
        { name: 'blocked', localPort: echo.port, remotePort: takenPort },
        { name: 'fine', localPort: echo.port },
      ],
    },
  ]);
  const started = await startServer(config);
  const { server, events } = started;
  const { client, events: clientEvents } = startClient(loadGroupFile(config.groupFile('ports')), started);
  after(async () => {
    client.stop();
    await server.close();
    await echo.close();
    squatter.close();
  });

  const failed = await waitForEvent(events, (e) => e.type === 'app-failed', 'app-failed');
  assert.deepEqual(failed.type === 'app-failed' && [failed.group, failed.app, failed.port], ['ports', 'blocked', takenPort]);
  assert.match(failed.type === 'app-failed' ? failed.reason : '', new RegExp(`port ${takenPort} is already in use`));

  const accepted = await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'login accepted');
  assert.ok(accepted.type === 'login-accepted');
  const blocked = accepted.apps.find((app) => app.name === 'blocked')!;
  const fine = accepted.apps.find((app) => app.name === 'fine')!;
  assert.equal(blocked.state, 'failed');
  assert.match(blocked.error ?? '', /already in use/);
  assert.equal(fine.state, 'listening');
  const payload = Buffer.from('the rest of the group keeps working');
  assert.deepEqual(await echoRoundTrip(fine.remotePort, payload), payload);
});

test('registry and host file disagree: the server’s apps win, and each difference is a warning naming the app on both sides', { timeout: 15_000 }, async () => {
  const echo = await startEchoApp();
  const secret = randomSecret();
  const config = makeConfigDir([
    {
      name: 'drift',
      secret,
      apps: [
        { name: 'shared', localPort: echo.port, extra: { proxyProtocol: 'v1' } },
        { name: 'server-only', localPort: echo.port },
      ],
    },
  ]);
  // The host's own copy of the file: one app the server does not know, one it lacks.
  const clientSpec = parseGroupFile(
    YamlFile.parse(
      'drift.yaml',
      groupYaml({
        name: 'drift',
        secret,
        apps: [
          { name: 'shared', localPort: echo.port },
          { name: 'client-only', localPort: echo.port },
        ],
      }),
    ),
  );
  const started = await startServer(config);
  const { server, events } = started;
  const { client, events: clientEvents } = startClient(clientSpec, started);
  after(async () => {
    client.stop();
    await server.close();
    await echo.close();
  });

  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.ok(activated.type === 'group-activated');
  // The client takes its apps from the server: an app missing from its file is no drift.
  assert.equal(activated.warnings.length, 2, activated.warnings.join('\n'));
  assert.ok(activated.warnings.some((w) => w.includes('"shared"') && w.includes('proxyProtocol v1') && w.includes("the server's applies")));
  assert.ok(activated.warnings.some((w) => w.includes('"client-only"') && w.includes('not exposed')));
  const accepted = await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'login accepted');
  assert.ok(accepted.type === 'login-accepted');
  assert.deepEqual(accepted.warnings, activated.warnings);
  const received = await waitForEvent(clientEvents, (e) => e.type === 'apps-received', 'the server’s apps');
  assert.ok(received.type === 'apps-received');
  assert.deepEqual(
    received.apps.map((app) => app.name),
    ['shared', 'server-only'],
  );
  assert.deepEqual(received.warnings, [
    'app "shared": this host\'s file says proxyProtocol none where the server says v1; the server\'s applies',
    'app "client-only" is in this host\'s file but not in the server\'s registry: not served',
  ]);

  const serverOnly = activated.apps.find((app) => app.name === 'server-only')!;
  assert.equal((await echoRoundTrip(serverOnly.remotePort, Buffer.from('from the registry'))).toString(), 'from the registry');
});

test('a live group refuses another client until the old session times out, then serves the new one', { timeout: 20_000 }, async () => {
  const echo = await startEchoApp();
  const secret = randomSecret();
  const config = makeConfigDir([{ name: 'busy', secret, apps: [{ name: 'echo', localPort: echo.port }] }], {
    heartbeatInterval: '200ms',
    heartbeatTimeout: '1500ms',
  });
  const started = await startServer(config);
  const { server, events } = started;
  const spec = loadGroupFile(config.groupFile('busy'));
  after(async () => {
    await server.close();
    await echo.close();
  });

  // Logged in by hand and then silent: no pings, like a client whose path died.
  const old = await rawLogin(started, 'busy', secret, { clientId: 'host-one' });
  assert.ok(old.resp.sessionId, 'the first client is logged in');

  const rival = startClient(spec, started, { clientId: 'host-two' });
  const rejection = await rival.done.then(
    () => assert.fail('the second client must be rejected'),
    (error: unknown) => error,
  );
  assert.ok(rejection instanceof LoginRejectedError);
  assert.equal(rejection.code, 'GROUP_IN_USE');
  assert.match(rejection.reason, /already active from 127\.0\.0\.1:\d+ since \d{4}-\d\d-\d\dT/);

  await waitForEvent(events, (e) => e.type === 'heartbeat-timeout' && e.group === 'busy', 'heartbeat timeout', 5000);
  const successor = startClient(spec, started, { clientId: 'host-two' });
  after(() => successor.client.stop());
  const accepted = await waitForEvent(successor.events, (e) => e.type === 'login-accepted', 'login of the successor');
  assert.ok(accepted.type === 'login-accepted');
  const payload = Buffer.from('served by the new client');
  assert.deepEqual(await echoRoundTrip(accepted.apps[0]!.remotePort, payload), payload);
  old.channel.destroy();
});
