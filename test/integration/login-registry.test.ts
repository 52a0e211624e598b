import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import { LoginRejectedError } from '../../src/client/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestGroup } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { connectTo, echoRoundTrip, readBytes, streamEnding, waitForEvent } from '../helpers/net.js';
import { rawHello } from '../helpers/raw-peer.js';

// The login decides against the registry as it is when the Login arrives, not at Hello.

test('a group removed between Hello and Login is refused UNKNOWN_GROUP and never activated', { timeout: 15_000 }, async () => {
  const secret = randomSecret();
  const config = makeConfigDir([{ name: 'fleeting', secret, apps: [{ name: 'echo', localPort: 1 }] }], { tls: true });
  const started = await startServer(config);
  const { server, events } = started;
  after(() => server.close());
  const hello = await rawHello(started, { group: 'fleeting' });
  server.deregisterGroup('fleeting');
  const { resp, channel } = await hello.login({ secret });
  channel.destroy();
  assert.equal(resp.error?.code, 'UNKNOWN_GROUP');
  assert.match(resp.error!.reason, /removed from this server's registry during the login/);
  assert.equal(server.inUseGroup.has('fleeting'), false);
  const activated: string[] = [];
  events.subscribe((e) => e.type === 'group-activated' && activated.push(e.group));
  assert.deepEqual(activated, []);
});

test('a secret changed between Hello and Login: the old secret is refused, the new one logs in', { timeout: 15_000 }, async () => {
  const [oldSecret, newSecret] = [randomSecret(), randomSecret()];
  const group = (secret: string): TestGroup => ({ name: 'rotating', secret, apps: [{ name: 'echo', localPort: 1 }] });
  const config = makeConfigDir([group(oldSecret)], { tls: true });
  const started = await startServer(config);
  const { server } = started;
  after(() => server.close());
  const withOld = await rawHello(started, { group: 'rotating', clientId: 'old' });
  const withNew = await rawHello(started, { group: 'rotating', clientId: 'new' });
  config.writeGroup(group(newSecret));
  await server.updateGroup(loadGroupFile(config.groupFile('rotating')));

  const refused = await withOld.login({ secret: oldSecret });
  refused.channel.destroy();
  assert.equal(refused.resp.error?.code, 'BAD_SECRET');
  const accepted = await withNew.login({ secret: newSecret });
  assert.ok(accepted.resp.sessionId, JSON.stringify(accepted.resp.error));
  assert.equal(server.inUseGroup.get('rotating')?.clientId, 'new');
  accepted.channel.destroy();
});

// A leaked secret: whoever holds it keeps the group until the secret changes, then loses it
// (and its users) at once, and the real client with the new secret gets in.
test(
  'a new secret ends the session that logged in with the old one at once, its users reset; the new secret logs in; an edit that keeps the secret keeps the session',
  { timeout: 30_000 },
  async () => {
    const echo = await startEchoApp();
    const [leaked, fresh] = [randomSecret(), randomSecret()];
    const group = (secret: string, apps: TestGroup['apps'] = [{ name: 'echo', localPort: echo.port }]): TestGroup => ({ name: 'vault', secret, apps });
    const config = makeConfigDir([group(leaked)], { tls: true, heartbeatInterval: '1s', heartbeatTimeout: '20s' });
    const { server, port, events, fingerprint } = await startServer(config);
    const transport = { kind: 'tls' as const, fingerprint: fingerprint! };
    const leakedSpec = loadGroupFile(config.groupFile('vault'));
    const intruder = startClient(leakedSpec, port, { clientId: 'intruder', transport });
    after(async () => {
      intruder.client.stop();
      await server.close();
      await echo.close();
    });
    const activated = await waitForEvent(events, (e) => e.type === 'group-activated' && e.clientId === 'intruder', 'the intruder activated');
    assert.ok(activated.type === 'group-activated');
    const sessionId = server.inUseGroup.get('vault')!.sessionId;

    // An edit that keeps the secret (a new app) keeps the session and its users.
    const user = await connectTo(activated.apps[0]!.remotePort);
    user.write('ping');
    assert.equal((await readBytes(user, 4)).toString(), 'ping');
    config.writeGroup(
      group(leaked, [
        { name: 'echo', localPort: echo.port },
        { name: 'extra', localPort: echo.port },
      ]),
    );
    await server.updateGroup(loadGroupFile(config.groupFile('vault')));
    assert.equal(server.inUseGroup.get('vault')?.sessionId, sessionId, 'same secret: same session');
    user.write('pong');
    assert.equal((await readBytes(user, 4)).toString(), 'pong');

    // The secret changes: the intruder's session ends at once and its user is reset.
    const ended = streamEnding(user).then((end) => end.ending);
    config.writeGroup(group(fresh));
    await server.updateGroup(loadGroupFile(config.groupFile('vault')));
    const gone = await waitForEvent(events, (e) => e.type === 'group-deactivated' && e.group === 'vault', 'the intruder deactivated');
    assert.equal(gone.type === 'group-deactivated' && gone.code, 'SECRET_CHANGED');
    assert.equal(server.inUseGroup.has('vault'), false);
    assert.equal(await ended, 'reset', 'the user of the ended session sees a reset, not a FIN');
    // The intruder tries again with what it has and is refused for good.
    await assert.rejects(intruder.done, (error: unknown) => error instanceof LoginRejectedError && error.code === 'BAD_SECRET');

    const owner = startClient(loadGroupFile(config.groupFile('vault')), port, { clientId: 'owner', transport });
    after(() => owner.client.stop());
    const back = await waitForEvent(events, (e) => e.type === 'group-activated' && e.clientId === 'owner', 'the owner activated');
    assert.ok(back.type === 'group-activated');
    const payload = Buffer.from('served by the owner');
    assert.deepEqual(await echoRoundTrip(back.apps[0]!.remotePort, payload), payload);
  },
);

test('removing a group ends its session at once and resets its users', { timeout: 20_000 }, async () => {
  const echo = await startEchoApp();
  const config = makeConfigDir([{ name: 'doomed', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }], { tls: true });
  const { server, port, events, fingerprint } = await startServer(config);
  const started = startClient(loadGroupFile(config.groupFile('doomed')), port, { transport: { kind: 'tls', fingerprint: fingerprint! } });
  after(async () => {
    started.client.stop();
    await server.close();
    await echo.close();
  });
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.ok(activated.type === 'group-activated');
  const user = await connectTo(activated.apps[0]!.remotePort);
  user.write('live');
  assert.equal((await readBytes(user, 4)).toString(), 'live');
  const ended = streamEnding(user).then((end) => end.ending);
  server.deregisterGroup('doomed');
  const gone = await waitForEvent(events, (e) => e.type === 'group-deactivated', 'deactivation');
  assert.equal(gone.type === 'group-deactivated' && gone.code, 'DEREGISTERED');
  assert.equal(await ended, 'reset');
});
