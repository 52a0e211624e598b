import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { DirectoryRegistry, GroupsHotReload } from '../../src/server/index.js';
import { unusedPort } from '../helpers/apps.js';
import { hostIdentity, makeConfigDir, randomSecret, type TestGroup } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { fromNow, waitForEvent } from '../helpers/net.js';

// A pooled app's health check is part of the app, so it comes from the registry like the local
// target: the host runs the server's check, and a registry edit of it is followed live.
test(
  "a registry edit restarts a pooled app's health checks on the host with the server's new check, from the verdict last reported",
  { timeout: 15_000 },
  async (t) => {
    // GET /health fails, GET /ok passes: the edit moves the check from one to the other.
    const app = createServer((req, res) => {
      res.statusCode = req.url === '/ok' ? 204 : 503;
      res.end();
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const localPort = (app.address() as AddressInfo).port;
    const remotePort = await unusedPort();
    const secret = randomSecret();
    const group = (path: string, more: TestGroup['apps'] = []): TestGroup => ({
      name: 'x',
      secret,
      apps: [
        {
          name: 'web',
          localPort,
          pool: 'web',
          remotePort,
          healthCheck: { type: 'http', path, interval: '100ms', timeout: '100ms', failures: 1, successes: 1 },
        },
        ...more,
      ],
    });
    const config = makeConfigDir([group('/health')]);
    const started = await startServer(config);
    const registry = new DirectoryRegistry({ server: started.server, groupsDir: config.groupsDir });
    const reload = new GroupsHotReload(registry, config.groupsDir, { debounceMs: 50 });
    // The host's file names the group only: the check comes with the app from the server.
    const { client, events } = startClient(hostIdentity('x', secret), started);
    t.after(async () => {
      reload.close();
      client.stop();
      await started.server.close();
      await new Promise((resolve) => app.close(resolve));
    });
    const changes: boolean[] = [];
    events.subscribe((e) => e.type === 'health-changed' && changes.push(e.healthy));

    await waitForEvent(events, (e) => e.type === 'health-changed' && !e.healthy, 'unhealthy on /health');
    // An edit that keeps the failing check (another app added) restarts it from "unhealthy": nothing to report again.
    config.writeGroup(group('/health', [{ name: 'other', localPort }]));
    await waitForEvent(events, (e) => e.type === 'apps-received' && e.apps.some((one) => one.name === 'other'), 'the edited apps on the host');
    // Let the restarted checks run a few times (every 100 ms; a heartbeat is 500 ms) before the next edit.
    await waitForEvent(fromNow(events), (e) => e.type === 'heartbeat', 'a heartbeat after the edit');
    config.writeGroup(group('/ok', [{ name: 'other', localPort }]));
    await waitForEvent(events, (e) => e.type === 'health-changed' && e.healthy, 'healthy on /ok');
    assert.deepEqual(changes, [false, true]);
  },
);
