import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startEchoApp } from '../helpers/apps.js';
import { parsePrometheus, sampleValue } from '../helpers/admin.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { CliProcess, COMMONSERVER_BIN, serverLinkOf, startGroupClientProcess } from '../helpers/processes.js';

const TOKEN = 'cli-admin-token-0123456789abcdef';

test('commonserver serves the admin API from its config; a frozen client shows as lost with a heartbeat timeout', { timeout: 40_000 }, async () => {
  const echo = await startEchoApp();
  const config = makeConfigDir([{ name: 'frozen', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }], {
    heartbeatInterval: '100ms',
    heartbeatTimeout: '600ms',
    extra: { admin: { bind: '127.0.0.1:0', token: '${NTP_TEST_ADMIN_TOKEN}' } },
  });
  const server = new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile], { NTP_TEST_ADMIN_TOKEN: TOKEN });
  const link = await serverLinkOf(server);
  const adminUrl = (await server.waitForLine(/admin listening on (http:\/\/\S+) \(token required\)/))[1]!;
  const client = startGroupClientProcess({ groupsDir: config.groupsDir, group: 'frozen', server: link });
  after(async () => {
    client.kill('SIGKILL');
    await client.exited;
    await server.stop();
    await echo.close();
  });
  assert.equal(server.output.includes(TOKEN), false, 'the token is never printed');
  const get = async (path: string): Promise<{ status: number; text: string }> => {
    const res = await fetch(`${adminUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return { status: res.status, text: await res.text() };
  };
  assert.equal((await fetch(`${adminUrl}/api/groups`)).status, 401);

  await client.waitForLine(/group frozen active/);
  assert.equal(JSON.parse((await get('/api/groups/frozen')).text).group.state, 'in-use');

  // A client that stops answering (a frozen host, a dead path): the heartbeat watchdog ends it.
  client.kill('SIGSTOP');
  await server.waitForLine(/group frozen deactivated \(HEARTBEAT_TIMEOUT\): no heartbeat for \d+(\.\d)?(ms|s)/);
  await server.waitForLine(/group frozen deactivated \(HEARTBEAT_TIMEOUT\)/);
  const view = JSON.parse((await get('/api/groups/frozen')).text).group;
  assert.equal(view.state, 'lost');
  assert.equal(view.lastDeactivation.code, 'HEARTBEAT_TIMEOUT');
  assert.equal(view.client, null);
  const { samples } = parsePrometheus((await get('/metrics')).text);
  assert.equal(sampleValue(samples, 'ntp_heartbeat_timeouts_total', { group: 'frozen' }), 1);
  assert.equal(sampleValue(samples, 'ntp_clients_connected'), 0);
});
