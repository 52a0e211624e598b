import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { loadGroupFile } from '../src/config/index.js';
import { startBannerApp, startEchoApp } from './helpers/apps.js';
import { makeConfigDir, randomSecret } from './helpers/configs.js';
import { startClient, startServer } from './helpers/in-process.js';
import { connectTo, echoRoundTrip, readBytes, sha256, waitForEvent } from './helpers/net.js';

test('an echo app and a server-speaks-first app answer through the tunnel', { timeout: 20_000 }, async () => {
  const echo = await startEchoApp();
  const banner = await startBannerApp('SSH-2.0-TestBanner\r\n');
  const config = makeConfigDir([
    { name: 'smoke', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }, { name: 'banner', localPort: banner.port }] },
  ]);
  const { server, events } = await startServer(config);
  const { client, events: clientEvents } = startClient(loadGroupFile(config.groupFile('smoke')), server.address().port);
  after(async () => {
    client.stop();
    await server.close();
    await echo.close();
    await banner.close();
  });
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'login accepted');
  const ports = new Map(activated.apps.map((app) => [app.name, app.remotePort]));

  const payload = randomBytes(256 * 1024);
  const back = await echoRoundTrip(ports.get('echo')!, payload);
  assert.equal(sha256(back), sha256(payload));

  // The user sends nothing: the banner must still arrive.
  const user = await connectTo(ports.get('banner')!);
  const greeting = await readBytes(user, 'SSH-2.0-TestBanner\r\n'.length);
  assert.equal(greeting.toString(), 'SSH-2.0-TestBanner\r\n');
  user.destroy();
});
