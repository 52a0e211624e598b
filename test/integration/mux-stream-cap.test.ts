import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { connectTo, echoRoundTrip, waitForEvent } from '../helpers/net.js';

test('a user past the cap of mux streams takes a single-use work conn; once streams are free, users travel on the mux again', { timeout: 20_000 }, async () => {
  const echo = await startEchoApp();
  const config = makeConfigDir([{ name: 'capped', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }], {
    tls: true,
    extra: { limits: { maxMuxStreams: 2 } },
  });
  const started = await startServer(config);
  const { server, events } = started;
  const muxUp = waitForEvent(events, (e) => e.type === 'mux-conn' && e.state === 'up', 'the mux conn up', 10_000);
  const { client, events: clientEvents } = startClient(loadGroupFile(config.groupFile('capped')), started.port, {
    transport: { kind: 'tls', fingerprint: started.fingerprint! },
  });
  after(async () => {
    client.stop();
    await server.close();
    await echo.close();
  });
  const login = await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'the login');
  assert.ok(login.type === 'login-accepted');
  const port = login.apps[0]!.remotePort;
  await muxUp;

  // Two users hold the two streams the cap allows (each answered once: its stream is open).
  const holders = await Promise.all([connectTo(port), connectTo(port)]);
  for (const holder of holders) {
    holder.write('x');
    await new Promise((resolve) => holder.once('data', resolve));
  }
  // Before the fix, the refused stream's unheard 'error' ended the process here.
  const asked = waitForEvent(events, (e) => e.type === 'work-conn-requested', 'a single-use work conn asked for');
  const payload = Buffer.from('past the cap');
  assert.deepEqual(await echoRoundTrip(port, payload), payload);
  await asked;

  for (const holder of holders) holder.destroy();
  // Their streams are retired once the resets crossed: then a new user travels on the mux again.
  const again = Buffer.from('on the mux again');
  let asks = 0;
  const counting = events.subscribe((e) => {
    if (e.type === 'work-conn-requested') asks++;
  });
  after(() => counting.unsubscribe());
  await eventually(
    async () => {
      const before = asks;
      assert.deepEqual(await echoRoundTrip(port, again), again);
      return asks === before;
    },
    { message: 'a user served on a stream again once the holders left' },
  );
});
