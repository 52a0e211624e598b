import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startFaultRelay } from '../helpers/fault-relay.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { echoRoundTrip, waitForEvent } from '../helpers/net.js';

test('a silently dead path is noticed by heartbeats on both ends, and the client comes back by itself', { timeout: 20_000 }, async () => {
  const echo = await startEchoApp();
  const config = makeConfigDir([{ name: 'flaky', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }], {
    heartbeatInterval: '100ms',
    heartbeatTimeout: '800ms',
  });
  const started = await startServer(config);
  const { server, events } = started;
  const relay = await startFaultRelay(started.port);
  const { client, events: clientEvents } = startClient(loadGroupFile(config.groupFile('flaky')), { ...started, port: relay.port });
  after(async () => {
    client.stop();
    await relay.close();
    await server.close();
    await echo.close();
  });

  const first = await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'first login');
  assert.ok(first.type === 'login-accepted');
  const payload = Buffer.from('before the path died');
  assert.deepEqual(await echoRoundTrip(first.apps[0]!.remotePort, payload), payload);

  relay.blackhole();
  // Neither end sees a close: only silence. Both must notice it on their own.
  const clientNoticed = waitForEvent(clientEvents, (e) => e.type === 'heartbeat-timeout', 'client heartbeat timeout', 5000);
  const serverNoticed = waitForEvent(events, (e) => e.type === 'group-deactivated', 'server deactivation', 5000);
  await clientNoticed;
  const deactivated = await serverNoticed;
  assert.ok(deactivated.type === 'group-deactivated');
  // The client's new session may take over before the server's own watchdog fires.
  assert.ok(['HEARTBEAT_TIMEOUT', 'TAKEN_OVER'].includes(deactivated.code), deactivated.code);

  relay.heal();
  let logins = 0;
  const second = await waitForEvent(clientEvents, (e) => e.type === 'login-accepted' && ++logins === 2, 'second login', 5000);
  assert.ok(second.type === 'login-accepted');
  const again = Buffer.from('after the client came back');
  assert.deepEqual(await echoRoundTrip(second.apps[0]!.remotePort, again), again);
});
