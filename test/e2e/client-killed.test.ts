import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { startFaultRelay, type FaultRelay } from '../helpers/fault-relay.js';
import { LINKS, type Link, type ServerLink } from '../helpers/link.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { canListenOn, echoRoundTrip, expectRefused, sha256 } from '../helpers/net.js';
import { CliProcess, ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

const HEARTBEAT_TIMEOUT_MS = 1000;
/** Slack for a loaded machine on top of the heartbeat timeout the issue demands. */
const MARGIN_MS = 4000;
/** The client killed, over TLS (the default link) and over plaintext. */
function clientKilled(link: Link): void {
  const processes = new ProcessSet();
  let echo: TestApp;
  let config: TestConfigDir;
  let server: CliProcess;
  let serverLink: ServerLink;
  /** The group's fixed public port: freed on deactivation, the same again after a restart. */
  let publicPort = 0;
  let client: CliProcess;

  const relays: FaultRelay[] = [];

  const startClient = (server = serverLink): CliProcess =>
    processes.add(startGroupClientProcess({ group: 'phoenix', groupsDir: config.groupsDir, server, clientId: 'phoenix-agent' }));

  async function assertServes(): Promise<void> {
    const payload = Buffer.from(`through ${publicPort} at ${Date.now()}`);
    assert.equal(sha256(await echoRoundTrip(publicPort, payload)), sha256(payload));
  }

  /** The port is closed and free: nobody answers on it and this process can bind it. */
  async function assertPortFreed(): Promise<void> {
    await expectRefused(publicPort);
    assert.equal(await canListenOn(publicPort), true, `port ${publicPort} cannot be bound again`);
  }

  /** Restarts the client and checks the group comes back on the same port and serves. */
  async function restartAndServe(): Promise<void> {
    client = startClient();
    const ports = await waitForGroupActive(client, 'phoenix');
    assert.equal(ports.get('echo'), publicPort);
    await assertServes();
  }

  before(async () => {
    echo = await startEchoApp();
    publicPort = await unusedPort();
    config = makeConfigDir([{ name: 'phoenix', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort: publicPort }] }], {
      heartbeatInterval: '200ms',
      heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS}ms`,
      tls: link === 'tls',
    });
    const started = await startCommonServerProcess(config.serverFile);
    server = processes.add(started.process);
    serverLink = started;
    client = startClient();
    assert.equal((await waitForGroupActive(client, 'phoenix')).get('echo'), publicPort);
    await assertServes();
  });

  after(async () => {
    await processes.stopAll();
    await Promise.all(relays.map((relay) => relay.close()));
    await echo.close();
  });

  test('kill -9 the client: group deactivated, port freed; restarted, it serves again', { timeout: 20_000 }, async () => {
    const fromLine = server.lines.length;
    await client.killHard();
    await server.waitForLine(/group phoenix deactivated/, { fromLine, timeoutMs: HEARTBEAT_TIMEOUT_MS + MARGIN_MS });
    await assertPortFreed();
    await restartAndServe();
  });

  test('kill -9 a client whose path is dead (no FIN): the heartbeat timeout deactivates the group', { timeout: 20_000 }, async () => {
    // This run reaches the server through a relay that will swallow everything, the FIN included.
    const relay = await startFaultRelay(serverLink.port);
    relays.push(relay);
    await client.stop();
    client = startClient({ ...serverLink, port: relay.port });
    assert.equal((await waitForGroupActive(client, 'phoenix')).get('echo'), publicPort);

    const fromLine = server.lines.length;
    relay.blackhole();
    await client.killHard();
    await server.waitForLine(/group phoenix deactivated \(HEARTBEAT_TIMEOUT\): no heartbeat for \d+(\.\d)?(ms|s)/, {
      fromLine,
      timeoutMs: HEARTBEAT_TIMEOUT_MS + MARGIN_MS,
    });
    await assertPortFreed();
    await restartAndServe();
  });
}

for (const link of LINKS) describe(`client killed over the ${link} link`, () => clientKilled(link));
