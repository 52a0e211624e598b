import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { startFaultRelay, type FaultRelay } from '../helpers/fault-relay.js';
import { LINKS, type Link } from '../helpers/link.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { echoRoundTrip, sha256 } from '../helpers/net.js';
import { CliProcess, ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

/** The server restarted or out of reach, over TLS (the default link) and over plaintext. */
function serverRestart(link: Link): void {
  const processes = new ProcessSet();
  let echo: TestApp;
  const relays: FaultRelay[] = [];
  let config: TestConfigDir;
  let commonPort = 0;
  /** The first start's fingerprint: a restarted server must present the same certificate. */
  let fingerprint: string | undefined;
  let client: CliProcess;

  async function assertServes(ports: Map<string, number>): Promise<void> {
    const payload = Buffer.from(`hello at ${Date.now()}`);
    assert.equal(sha256(await echoRoundTrip(ports.get('echo')!, payload)), sha256(payload));
  }

  async function startServer(): Promise<CliProcess> {
    const started = await startCommonServerProcess(config.serverFile);
    assert.equal(started.port, commonPort);
    assert.equal(started.fingerprint === undefined, link === 'plaintext');
    fingerprint ??= started.fingerprint;
    assert.equal(started.fingerprint, fingerprint);
    return processes.add(started.process);
  }

  before(async () => {
    echo = await startEchoApp();
    commonPort = await unusedPort(); // fixed: the restarted server must come back where the client looks
    config = makeConfigDir(
      [
        { name: 'steady', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] },
        { name: 'quiet', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] },
      ],
      { bindPort: commonPort, tls: link === 'tls' },
    );
  });

  after(async () => {
    await processes.stopAll();
    await Promise.all(relays.map((relay) => relay.close()));
    await echo.close();
  });

  test('the server is killed and restarted: the client reconnects by itself and traffic flows', { timeout: 30_000 }, async () => {
    const server = await startServer();
    client = processes.add(startGroupClientProcess({ group: 'steady', groupsDir: config.groupsDir, server: { port: commonPort, fingerprint } }));
    await assertServes(await waitForGroupActive(client, 'steady'));

    const fromLine = client.lines.length;
    await server.killHard();
    await client.waitForLine(/group steady lost: .*; reconnecting/, { fromLine });
    await startServer();
    // p-retry's backoff starts at 0.5 s; a few attempts at most while the server comes back.
    const ports = await waitForGroupActive(client, 'steady', { fromLine, timeoutMs: 20_000 });
    assert.equal(client.running, true);
    await assertServes(ports);
  });

  test('the path to the server goes silent: the client notices by heartbeat and reconnects once it heals', { timeout: 30_000 }, async () => {
    const relay = await startFaultRelay(commonPort);
    relays.push(relay);
    const viaRelay = processes.add(startGroupClientProcess({ group: 'quiet', groupsDir: config.groupsDir, server: { port: relay.port, fingerprint } }));
    await assertServes(await waitForGroupActive(viaRelay, 'quiet'));

    const fromLine = viaRelay.lines.length;
    relay.blackhole();
    // No FIN and no error: only the client's own heartbeat watchdog can tell.
    await viaRelay.waitForLine(/group quiet lost: no heartbeat from the server for \d+(\.\d)?(ms|s); reconnecting/, { fromLine });
    relay.heal();
    const ports = await waitForGroupActive(viaRelay, 'quiet', { fromLine, timeoutMs: 20_000 });
    await assertServes(ports);
  });
}

for (const link of LINKS) describe(`server restart over the ${link} link`, () => serverRestart(link));
