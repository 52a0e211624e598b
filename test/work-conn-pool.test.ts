import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { loadGroupFile, loadServerConfig, type ConfigError } from '../src/config/index.js';
import { ControlChannel } from '../src/net/index.js';
import { encodeFrame, joinProof, loginProof, PROTOCOL_VERSION } from '../src/protocol/index.js';
import type { ServerEvent } from '../src/server/index.js';
import { startBannerApp, startEchoApp, unusedPort, type TestApp } from './helpers/apps.js';
import { makeConfigDir, randomSecret } from './helpers/configs.js';
import { startClient, startServer } from './helpers/in-process.js';
import { connectTo, echoRoundTrip, readAll, readBytes, waitForEvent } from './helpers/net.js';

/** A server with `workConnPool: pool` and a client for one app, both in process. */
async function tunnel(name: string, localPort: number, pool: number) {
  const config = makeConfigDir([{ name, secret: randomSecret(), apps: [{ name: 'app', localPort }] }], {
    pairingTimeout: '10s',
    extra: { workConnPool: pool },
  });
  const { server, events } = await startServer(config);
  const client = startClient(loadGroupFile(config.groupFile(name)), server.address().port);
  after(async () => {
    client.client.stop();
    await server.close();
  });
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  return { server, events, clientEvents: client.events, port: activated.apps[0]!.remotePort };
}

/** A promise for the next live event (not a replayed one) matching `predicate`. */
function nextEvent(server: { events$: import('rxjs').Observable<ServerEvent> }, predicate: (e: ServerEvent) => boolean, what: string) {
  return waitForEvent(server.events$, predicate, what);
}

const poolFull = (size: number) => (e: ServerEvent) => e.type === 'work-conn-pooled' && e.idle === size;

describe('work-conn pool', () => {
  const apps: TestApp[] = [];
  after(async () => {
    for (const app of apps) await app.close();
  });

  test('user conns take pooled work conns, and each taken one is replaced', { timeout: 15_000 }, async () => {
    const echo = await startEchoApp();
    apps.push(echo);
    const { server, events, port } = await tunnel('pool-used', echo.port, 2);
    await waitForEvent(events, poolFull(2), 'the pool to fill');
    for (let i = 0; i < 4; i++) {
      const joined = nextEvent(server, (e) => e.type === 'work-conn-joined', 'a join');
      const refilled = nextEvent(server, poolFull(2), 'the pool to be refilled');
      const payload = Buffer.from(`user ${i}`);
      assert.deepEqual(await echoRoundTrip(port, payload), payload);
      const event = await joined;
      assert.ok(event.type === 'work-conn-joined' && event.pooled === true, `user ${i} was not served from the pool`);
      await refilled;
    }
    // Two pooled conns at first, one more per user: the app saw only the users' conns.
    assert.equal(echo.accepted, 4);
  });

  test('a failed local dial on a pooled conn closes the user at once and says why', { timeout: 15_000 }, async () => {
    const { server, events, clientEvents, port } = await tunnel('pool-dead-app', await unusedPort(), 1);
    await waitForEvent(events, poolFull(1), 'the pool to fill');
    const failed = nextEvent(server, (e) => e.type === 'work-conn-failed', 'the failure report');
    const user = await connectTo(port);
    user.on('error', () => {});
    // The user sees its conn end far below the 10 s pairing timeout: it is not left waiting.
    const started = Date.now();
    assert.equal((await readAll(user)).length, 0);
    assert.ok(Date.now() - started < 5000);
    user.destroy();
    const event = await failed;
    assert.ok(event.type === 'work-conn-failed' && /local app unreachable/.test(event.reason), JSON.stringify(event));
    await waitForEvent(clientEvents, (e) => e.type === 'local-dial-failed', 'the client to report the dead app');
  });

  test('a server-speaks-first app is dialed only once its user exists', { timeout: 15_000 }, async () => {
    const banner = await startBannerApp('220 banner ready\r\n');
    apps.push(banner);
    const { events, port } = await tunnel('pool-banner', banner.port, 2);
    await waitForEvent(events, poolFull(2), 'the pool to fill');
    assert.equal(banner.accepted, 0, 'a pooled conn must not open the local app ahead of a user');
    const user = await connectTo(port);
    const greeting = await readBytes(user, '220 banner ready\r\n'.length);
    assert.equal(greeting.toString(), '220 banner ready\r\n');
    user.write('ping');
    assert.equal((await readBytes(user, 4)).toString(), 'ping');
    user.destroy();
    assert.equal(banner.accepted, 1);
  });

  test('with workConnPool: 0 every user is paired through ReqWorkConn', { timeout: 15_000 }, async () => {
    const echo = await startEchoApp();
    apps.push(echo);
    const { server, events, port } = await tunnel('pool-off', echo.port, 0);
    for (let i = 0; i < 3; i++) {
      const joined = nextEvent(server, (e) => e.type === 'work-conn-joined', 'a join');
      assert.deepEqual(await echoRoundTrip(port, Buffer.from('x')), Buffer.from('x'));
      const event = await joined;
      assert.ok(event.type === 'work-conn-joined' && event.pooled !== true);
    }
    let pooled = 0;
    events.subscribe((e) => void (e.type === 'work-conn-pooled' && pooled++)).unsubscribe();
    assert.equal(pooled, 0);
  });

  test('a pooled work conn needs the server-issued id and a proof bound to this session, once', { timeout: 15_000 }, async () => {
    const secret = randomSecret();
    const config = makeConfigDir([{ name: 'pool-proof', secret, apps: [{ name: 'app', localPort: await unusedPort() }] }], {
      heartbeatInterval: '1s',
      heartbeatTimeout: '10s',
      extra: { workConnPool: 2 },
    });
    const { server } = await startServer(config);
    const channel = new ControlChannel(await connectTo(server.address().port));
    after(async () => {
      channel.destroy();
      await server.close();
    });
    // A hand-written client, so the test can see the pool's ids and forge NewWorkConns.
    const challenge = channel.next('Challenge');
    channel.send({ type: 'Hello', version: PROTOCOL_VERSION, group: 'pool-proof', clientId: 'raw' });
    const { nonce } = await challenge;
    const loginResp = channel.next('LoginResp');
    channel.send({ type: 'Login', proof: loginProof(secret, nonce, 'pool-proof', 'raw'), apps: [{ name: 'app', remotePort: 0 }] });
    const { sessionId } = await loginResp;
    const { pairingIds } = await channel.next('ReqPooledWorkConns');
    assert.equal(pairingIds.length, 2);
    const id = pairingIds[0]!;

    const present = async (pairingId: string, proof: string): Promise<ServerEvent> => {
      const outcome = nextEvent(server, (e) => e.type === 'bad-peer' || e.type === 'work-conn-pooled', 'the work conn to be judged');
      const workConn = await connectTo(server.address().port);
      workConn.on('error', () => {});
      workConn.write(encodeFrame({ type: 'NewWorkConn', sessionId: sessionId!, pairingId, proof }));
      return outcome;
    };
    const refused = (e: ServerEvent): boolean => e.type === 'bad-peer' && e.code === 'BAD_WORK_CONN';
    assert.ok(refused(await present(id, joinProof('not-the-secret-at-all', sessionId!, id))), 'wrong secret');
    assert.ok(refused(await present(id, joinProof(secret, 'another-session', id))), 'proof of another session');
    assert.ok(refused(await present('made-up-id', joinProof(secret, sessionId!, 'made-up-id'))), 'id the server never issued');
    const accepted = await present(id, joinProof(secret, sessionId!, id));
    assert.ok(accepted.type === 'work-conn-pooled' && accepted.idle === 1, JSON.stringify(accepted));
    assert.ok(refused(await present(id, joinProof(secret, sessionId!, id))), 'the same id twice');
  });

  test('workConnPool must be a whole number in range, named in the error', { timeout: 15_000 }, () => {
    const config = makeConfigDir([], { extra: { workConnPool: -1 } });
    assert.throws(() => loadServerConfig(config.serverFile), (error: ConfigError) => error.code === 'CONFIG_INVALID' && /workConnPool/.test(error.message));
  });
});
