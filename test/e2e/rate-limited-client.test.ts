import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { echoRoundTrip, sha256 } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

const processes = new ProcessSet();
after(() => processes.stopAll());

// Hosts behind one NAT share an address: someone else's wrong logins from there block it for
// a while. The real host must wait the block out, not exit until someone restarts it.
test(
  'a groupclient refused RATE_LIMITED keeps retrying with backoff and gets in once the block is over; BAD_SECRET still exits 3',
  { timeout: 40_000 },
  async () => {
    const echo = await startEchoApp();
    after(() => echo.close());
    const secret = randomSecret();
    const config = makeConfigDir([{ name: 'office', secret, apps: [{ name: 'echo', localPort: echo.port }] }], {
      tls: true,
      heartbeatInterval: '1s',
      heartbeatTimeout: '10s',
      extra: { loginLimit: { window: '1m', slowAfter: 2, slowBy: '10ms', blockAfter: 3, blockFor: '3s' } },
    });
    const started = await startCommonServerProcess(config.serverFile);
    const server = processes.add(started.process);
    const link = { fingerprint: started.fingerprint! };

    // Three hosts with a wrong secret, from the same address: each is refused for good (exit 3).
    const wrong = makeConfigDir([{ name: 'office', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }]);
    const guessers = [1, 2, 3].map((i) =>
      processes.add(startGroupClientProcess({ configFile: wrong.groupFile('office'), serverPort: started.port, clientId: `wrong-${i}`, link })),
    );
    for (const guesser of guessers) {
      const { code } = await guesser.exited;
      assert.equal(code, 3, guesser.output);
      assert.match(guesser.output, /login rejected: BAD_SECRET: /);
    }
    await server.waitForLine(/login refused from 127\.0\.0\.1 for 3s: 3 failed logins/);

    // The real host, same address, right secret: refused for now, and it keeps trying.
    const owner = processes.add(startGroupClientProcess({ group: 'office', groupsDir: config.groupsDir, serverPort: started.port, clientId: 'owner', link }));
    await owner.waitForLine(/login rejected: RATE_LIMITED: too many failed logins from 127\.0\.0\.1; try again in \d+s \(retrying\)$/);
    await owner.waitForLine(/connection to the server failed \(attempt 1\): login rejected \(RATE_LIMITED\).*; retrying in \d/);
    const ports = await waitForGroupActive(owner, 'office', { timeoutMs: 25_000 });
    assert.ok(owner.running, 'the rate-limited client did not exit');
    const payload = Buffer.from('served after the block');
    assert.equal(sha256(await echoRoundTrip(ports.get('echo')!, payload)), sha256(payload));
  },
);
