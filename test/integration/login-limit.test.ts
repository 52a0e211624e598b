import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { serverEntry } from '../../src/cli/server-lines.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';
import { rawHello, rawLogin } from '../helpers/raw-peer.js';
import { eventually } from '../helpers/eventually.js';

// Windows shrunk so the test is fast: slowed after 2 failures, refused after 4, for 1.5s.
const LIMIT = { window: '30s', slowAfter: 2, slowBy: '300ms', blockAfter: 4, blockFor: '1500ms' };

test('failed logins from one address are slowed, then refused for a while, then released; others are unaffected', { timeout: 30_000 }, async () => {
  const echo = await startEchoApp();
  const secret = randomSecret();
  const otherSecret = randomSecret();
  const config = makeConfigDir(
    [
      { name: 'target', secret, apps: [{ name: 'echo', localPort: echo.port }] },
      { name: 'bystander', secret: otherSecret, apps: [{ name: 'echo', localPort: echo.port }] },
    ],
    // Hand-driven logins from chosen source addresses, over TLS as a real client speaks.
    { heartbeatInterval: '1s', heartbeatTimeout: '20s', tls: true, extra: { loginLimit: LIMIT } },
  );
  const started = await startServer(config);
  const { server, events } = started;
  after(async () => {
    await server.close();
    await echo.close();
  });
  const attacker = '127.0.0.2';

  for (let attempt = 1; attempt <= 4; attempt++) {
    const attemptStarted = Date.now();
    const { resp, channel } = await rawLogin(started, {
      group: 'target',
      clientId: 'guesser',
      secret: `wrong-guess-${attempt}-xxxxxxxx`,
      localAddress: attacker,
    });
    channel.destroy();
    assert.equal(resp.error?.code, 'BAD_SECRET', `attempt ${attempt}`);
    // From the third attempt on, the server waits before it even sends the Challenge.
    if (attempt > 2) assert.ok(Date.now() - attemptStarted >= 300, `attempt ${attempt} was not slowed`);
  }
  const slowed = await waitForEvent(events, (e) => e.type === 'login-throttled' && e.state === 'slowed', 'slowed');
  assert.match(serverEntry(slowed)?.text ?? '', /logins from 127\.0\.0\.2 slowed: 2 failed logins/);
  const blocked = await waitForEvent(events, (e) => e.type === 'login-throttled' && e.state === 'blocked', 'blocked');
  assert.match(serverEntry(blocked)?.text ?? '', /login refused from 127\.0\.0\.2 for 1\.5s: 4 failed logins/);
  const blockedAt = Date.now();

  // Refused even with the right secret while the block lasts.
  const refused = await rawLogin(started, { group: 'target', clientId: 'owner', secret, localAddress: attacker });
  refused.channel.destroy();
  assert.equal(refused.resp.error?.code, 'RATE_LIMITED');
  assert.match(refused.resp.error!.reason, /too many failed logins from 127\.0\.0\.2/);

  // A correct client elsewhere is not affected.
  const bystander = await rawLogin(started, { group: 'bystander', secret: otherSecret, localAddress: '127.0.0.1' });
  assert.ok(bystander.resp.sessionId, `bystander refused: ${JSON.stringify(bystander.resp.error)}`);
  bystander.channel.destroy();

  // Released once blockFor has passed: poll (bounded) until the right secret gets in again.
  const accepted = await eventually(
    async () => {
      const attempt = await rawLogin(started, { group: 'target', clientId: 'owner', secret, localAddress: attacker });
      if (attempt.resp.sessionId) return attempt;
      attempt.channel.destroy();
      // Any refusal but RATE_LIMITED ends the polling, for the assert below to name it.
      return attempt.resp.error?.code === 'RATE_LIMITED' ? false : attempt;
    },
    { message: 'the block to be released', timeout: 15_000, interval: 200 },
  );
  assert.ok(accepted.resp.sessionId, `refused with ${accepted.resp.error?.code} (RATE_LIMITED expected) while the block was held`);
  assert.ok(Date.now() - blockedAt >= 1000, 'released too early');
  accepted.channel.destroy();
});

test(
  '60 wrong logins at once from one address: each is counted before its proof is checked, so at most blockAfter proofs are',
  { timeout: 30_000 },
  async () => {
    const secret = randomSecret();
    const config = makeConfigDir([{ name: 'target', secret, apps: [{ name: 'echo', localPort: 1 }] }], {
      handshakeTimeout: '10s',
      tls: true,
      extra: { loginLimit: { window: '1m', slowAfter: 3, slowBy: '100ms', blockAfter: 10, blockFor: '5m' }, limits: { maxHandshakesPerSource: 200 } },
    });
    const started = await startServer(config);
    const { server } = started;
    after(() => server.close());
    const attacker = '127.0.0.3';

    // Every Hello is sent before any Login: all 60 are in flight together.
    const hellos = await Promise.all(
      Array.from({ length: 60 }, (_, i) => rawHello(started, { group: 'target', clientId: `guesser-${i}`, localAddress: attacker })),
    );
    const answers = await Promise.all(hellos.map((hello, i) => hello.login({ secret: `wrong-guess-${i}-xxxxxxxxxxxx` })));
    for (const { channel } of answers) channel.destroy();
    const codes = answers.map(({ resp }) => resp.error?.code);
    assert.ok(server.loginProofsChecked <= 10, `${server.loginProofsChecked} proofs checked against blockAfter 10`);
    assert.equal(codes.filter((code) => code === 'BAD_SECRET').length, server.loginProofsChecked);
    assert.equal(codes.filter((code) => code === 'RATE_LIMITED').length, 60 - server.loginProofsChecked);
    assert.ok(
      codes.every((code) => code === 'BAD_SECRET' || code === 'RATE_LIMITED'),
      codes.join(' '),
    );

    // The right secret from that address is refused too while the block lasts, without a check.
    const checked = server.loginProofsChecked;
    const owner = await rawLogin(started, { group: 'target', clientId: 'owner', secret, localAddress: attacker });
    owner.channel.destroy();
    assert.equal(owner.resp.error?.code, 'RATE_LIMITED');
    assert.equal(server.loginProofsChecked, checked);
    // Another address is unaffected.
    const elsewhere = await rawLogin(started, { group: 'target', clientId: 'owner', secret, localAddress: '127.0.0.1' });
    assert.ok(elsewhere.resp.sessionId, JSON.stringify(elsewhere.resp.error));
    elsewhere.channel.destroy();
  },
);
