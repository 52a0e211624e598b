import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import type { ServerEvent } from '../../src/server/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { parsePrometheus, sampleValue, startAdmin } from '../helpers/admin.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { echoRoundTrip, sha256, waitForEvent } from '../helpers/net.js';

test(
  'a throwing observer of events$ (an injected one, the metrics themselves) is logged once with its stack, counted, and the server keeps serving',
  { timeout: 30_000 },
  async () => {
    const echo = await startEchoApp();
    const config = makeConfigDir([{ name: 'observed', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }]);
    const started = await startServer(config);
    const { server, events } = started;
    const api = await startAdmin(server, config);
    const logged: { where: string; error: Error }[] = [];
    server.internalErrors.logTo((where, error) => logged.push({ where, error }));
    const injected = server.observe('injected', (event) => {
      if (event.type === 'conn-closed') throw new Error('injected observer failure');
    });
    // The metrics' own observer broken too: its failures must be counted without going through it.
    (api.admin.metrics as unknown as { onEvent(event: ServerEvent): void }).onEvent = () => {
      throw new Error('metrics observer failure');
    };
    const { client } = startClient(loadGroupFile(config.groupFile('observed')), started);
    after(async () => {
      injected.unsubscribe();
      client.stop();
      await api.admin.close();
      await server.close();
      await echo.close();
    });
    const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
    assert.ok(activated.type === 'group-activated');
    const port = activated.apps.find((a) => a.name === 'echo')!.remotePort;

    const users = 3;
    for (let i = 0; i < users; i++) {
      const payload = randomBytes(16 * 1024);
      assert.equal(sha256(await echoRoundTrip(port, payload)), sha256(payload), `user ${i} served`);
    }
    let closed = 0;
    await waitForEvent(events, (e) => e.type === 'conn-closed' && ++closed === users, 'every conn closed');

    assert.deepEqual(logged.map(({ where }) => where).sort(), ['injected', 'metrics'], 'one line per failing observer, however often it failed');
    for (const { where, error } of logged) {
      assert.match(error.message, new RegExp(`${where} observer failure`));
      assert.match(error.stack ?? '', /\n\s+at /, 'the stack comes with it');
    }
    const { samples } = parsePrometheus((await api.request('GET', '/metrics')).body as string);
    assert.equal(sampleValue(samples, 'ntp_internal_errors_total', { where: 'injected' }), users);
    assert.ok((sampleValue(samples, 'ntp_internal_errors_total', { where: 'metrics' }) ?? 0) >= users, 'every failure of the metrics observer counted');
    assert.equal(sampleValue(samples, 'ntp_internal_errors_total', { where: 'admin-state' }), undefined, 'the healthy observers did not fail');
    // The other observers kept going: the dashboard's totals saw every byte.
    const view = (await api.request('GET', '/api/groups/observed')).body as { group: { bytesIn: number } };
    assert.equal(view.group.bytesIn, users * 16 * 1024);
  },
);
