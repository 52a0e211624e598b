import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { LINKS, type Link } from '../helpers/link.js';
import { closedWithin, connectTo, echoRoundTrip, sha256, streamEnding } from '../helpers/net.js';
import { CliProcess, ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

/** A group with one local app down, over TLS (the default link) and over plaintext. */
function localAppDown(link: Link): void {
  const processes = new ProcessSet();
  let echo: TestApp;
  let server: CliProcess;
  let client: CliProcess;
  let ports = new Map<string, number>();
  let deadPort = 0;

  before(async () => {
    echo = await startEchoApp();
    deadPort = await unusedPort(); // nobody listens here: the local app is down
    // The pairing deadline is far above the bound under test, so only the client's prompt
    // WorkConnFailed can close the user in time.
    const config = makeConfigDir(
      [
        {
          name: 'half-down',
          secret: randomSecret(),
          apps: [
            { name: 'down', localPort: deadPort },
            { name: 'up', localPort: echo.port },
          ],
        },
      ],
      { pairingTimeout: '10s', tls: link === 'tls' },
    );
    const started = await startCommonServerProcess(config.serverFile);
    server = processes.add(started.process);
    client = processes.add(startGroupClientProcess({ group: 'half-down', groupsDir: config.groupsDir, server: started }));
    ports = await waitForGroupActive(client, 'half-down');
  });

  after(async () => {
    await processes.stopAll();
    await echo.close();
  });

  test('local app down: the user is reset in well under a second, and both sides say why', { timeout: 10_000 }, async () => {
    const user = await connectTo(ports.get('down')!);
    const gone = closedWithin(user);
    const ending = streamEnding(user);
    const closedAfterMs = await gone;
    assert.ok(closedAfterMs < 1000, `user closed after ${closedAfterMs}ms`);
    assert.equal((await ending).ending, 'reset', 'a reset, never an empty answer that looks complete');
    assert.equal((await ending).bytes, 0);
    user.destroy();
    await client.waitForLine(new RegExp(`app down: local app unreachable: 127\\.0\\.0\\.1:${deadPort}: ECONNREFUSED`));
    await server.waitForLine(/user of half-down\/down closed: local app unreachable/);
  });

  test('the rest of the group keeps working while one local app is down', { timeout: 10_000 }, async () => {
    const payload = Buffer.from('still relayed');
    assert.equal(sha256(await echoRoundTrip(ports.get('up')!, payload)), sha256(payload));
  });
}

for (const link of LINKS) describe(`local app down over the ${link} link`, () => localAppDown(link));
