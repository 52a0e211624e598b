import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { loadGroupFile, type GroupSpec } from '../../src/config/index.js';
import { unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';

test("a reloaded group file restarts a pooled app's health checks with its new check, from the verdict last reported", { timeout: 15_000 }, async (t) => {
  // GET /health fails, GET /ok passes: the reload moves the check from one to the other.
  const app = createServer((req, res) => {
    res.statusCode = req.url === '/ok' ? 204 : 503;
    res.end();
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const check = { type: 'http' as const, path: '/health', interval: '100ms', timeout: '100ms', failures: 1, successes: 1 };
  const config = makeConfigDir([
    {
      name: 'x',
      secret: randomSecret(),
      apps: [{ name: 'web', localPort: (app.address() as AddressInfo).port, pool: 'web', remotePort: await unusedPort(), healthCheck: check }],
    },
  ]);
  const started = await startServer(config);
  const spec = loadGroupFile(config.groupFile('x'));
  const { client, events } = startClient(spec, started);
  t.after(async () => {
    client.stop();
    await started.server.close();
    await new Promise((resolve) => app.close(resolve));
  });
  const changes: boolean[] = [];
  events.subscribe((e) => e.type === 'health-changed' && changes.push(e.healthy));

  await waitForEvent(events, (e) => e.type === 'health-changed' && !e.healthy, 'unhealthy on /health');
  // A reload that keeps the failing check restarts it from "unhealthy": nothing to report again.
  client.updateSpec({ ...spec });
  await waitForEvent(events, (e) => e.type === 'spec-reloaded', 'the same file reloaded');
  const moved: GroupSpec = { ...spec, apps: spec.apps.map((a) => ({ ...a, healthCheck: { ...a.healthCheck!, path: '/ok' } })) };
  // Let the restarted checks run a few times before the next reload.
  await waitForEvent(started.events, (e) => e.type === 'heartbeat', 'a heartbeat after the reload');
  client.updateSpec(moved);
  await waitForEvent(events, (e) => e.type === 'health-changed' && e.healthy, 'healthy on /ok');
  assert.deepEqual(changes, [false, true]);
});
