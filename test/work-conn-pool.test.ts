import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Observable } from 'rxjs';
import type { ClientEvent } from '../src/client/index.js';
import { after, describe, test } from 'node:test';
import { loadGroupFile, loadServerConfig, type ConfigError } from '../src/config/index.js';
import { ControlChannel } from '../src/net/index.js';
import { encodeFrame, joinProof, loginProof, PROTOCOL_VERSION } from '../src/protocol/index.js';
import type { ServerEvent } from '../src/server/index.js';
import { WorkConnPool } from '../src/server/work-conn-pool.js';
import { startApp, startBannerApp, startEchoApp, unusedPort, type TestApp } from './helpers/apps.js';
import { makeConfigDir, randomSecret } from './helpers/configs.js';
import { startClient, startServer } from './helpers/in-process.js';
import { dialServer, LINKS, type Link } from './helpers/link.js';
import { connectTo, echoRoundTrip, readAll, readBytes, sha256, socketPair, streamEnding, waitForEvent, waitUntil } from './helpers/net.js';

/** A server with `workConnPool: pool` and a client for one app per local port, both in process, over `link`. */
async function tunnelOf(link: Link, name: string, localPorts: number[], pool: number) {
  const config = makeConfigDir([{ name, secret: randomSecret(), apps: localPorts.map((localPort, i) => ({ name: `app${i}`, localPort })) }], {
    pairingTimeout: '10s',
    tls: link === 'tls',
    // The pooled work conns are what is tested: without mux (the default carries users on a mux conn).
    extra: { workConnPool: pool, mux: false },
  });
  const started = await startServer(config);
  const { server, events } = started;
  const client = startClient(loadGroupFile(config.groupFile(name)), started);
  after(async () => {
    client.client.stop();
    await server.close();
  });
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  return { server, events, clientEvents: client.events, port: activated.apps.map((app) => app.remotePort) };
}

/** The same, for one app. */
async function tunnel(link: Link, name: string, localPort: number, pool: number) {
  const opened = await tunnelOf(link, name, [localPort], pool);
  return { ...opened, port: opened.port[0]! };
}

/** How many pooled work conns the server has asked the client for, from now on. */
function countPooledConnsAsked(clientEvents: Observable<ClientEvent>): () => number {
  let asked = 0;
  const subscription = clientEvents.subscribe((e) => {
    if (e.type === 'pool-requested') asked += e.count;
  });
  after(() => subscription.unsubscribe());
  return () => asked;
}

/** A promise for the next live event (not a replayed one) matching `predicate`. */
function nextEvent(server: { events$: import('rxjs').Observable<ServerEvent> }, predicate: (e: ServerEvent) => boolean, what: string) {
  return waitForEvent(server.events$, predicate, what);
}

const poolFull = (size: number) => (e: ServerEvent) => e.type === 'work-conn-pooled' && e.idle === size;

/** The pooled path as users run it (TLS, the default link) and its explicit plaintext variant. */
for (const link of LINKS)
  describe(`work-conn pool over the ${link} link`, () => {
    const apps: TestApp[] = [];
    after(async () => {
      for (const app of apps) await app.close();
    });

    test('user after user reuses the pooled work conns: no new dial, no new handshake', { timeout: 15_000 }, async () => {
      const echo = await startEchoApp();
      apps.push(echo);
      const { server, events, clientEvents, port } = await tunnel(link, 'pool-used', echo.port, 4);
      const opened = countPooledConnsAsked(clientEvents);
      await waitForEvent(events, poolFull(4), 'the pool to fill');
      for (let i = 0; i < 20; i++) {
        const joined = nextEvent(server, (e) => e.type === 'work-conn-joined', 'a join');
        const returned = nextEvent(server, poolFull(4), 'the work conn back in the pool');
        const payload = Buffer.from(`user ${i}`);
        assert.deepEqual(await echoRoundTrip(port, payload), payload);
        const event = await joined;
        assert.ok(event.type === 'work-conn-joined' && event.pooled === true, `user ${i} was not served from the pool`);
        await returned;
      }
      assert.equal(opened(), 4, 'the four pooled work conns served all twenty users');
      assert.equal(echo.accepted, 20, 'each user had its own conn to the app');
    });

    test('half-close both ways on a reused work conn, and no byte of one user reaches the next', { timeout: 30_000 }, async () => {
      // Speaks first, reads to the user's FIN, then answers with what it got and ends.
      const served: number[] = [];
      const app = await startApp((socket) => {
        const hash = createHash('sha256');
        let bytes = 0;
        socket.write(`hello ${served.length}\n`);
        served.push(0);
        socket.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
        });
        socket.on('end', () => socket.end(`${bytes} ${hash.digest('hex')}`));
      });
      // Ends first (a FIN straight after its greeting), then counts what the user still sends.
      const countedAfterFin: number[] = [];
      const quitter = await startApp((socket) => {
        let bytes = 0;
        socket.end('bye\n');
        socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
        socket.on('end', () => countedAfterFin.push(bytes));
      });
      apps.push(app, quitter);
      const { server, events, clientEvents, port } = await tunnelOf(link, 'pool-half-close', [app.port, quitter.port], 2);
      const opened = countPooledConnsAsked(clientEvents);
      await waitForEvent(events, poolFull(2), 'the pool to fill');

      for (let i = 0; i < 6; i++) {
        const payload = randomBytes(100_000 + i * 7919);
        let back = nextEvent(server, poolFull(2), 'the work conn back in the pool');
        const user = await connectTo(port[0]!);
        const greeting = await readBytes(user, `hello ${i}\n`.length);
        assert.equal(greeting.toString(), `hello ${i}\n`);
        const answer = readAll(user);
        user.end(payload);
        assert.equal((await answer).toString(), `${payload.length} ${sha256(payload)}`, `user ${i}: the app saw exactly this user's bytes`);
        await back;

        back = nextEvent(server, poolFull(2), 'the work conn back in the pool');
        const second = await connectTo(port[1]!);
        assert.equal((await readAll(second)).toString(), 'bye\n');
        const late = randomBytes(50_000 + i);
        second.end(late);
        await waitUntil(() => countedAfterFin.length === i + 1, 'the quitting app to see the FIN');
        assert.equal(countedAfterFin[i], late.length, `user ${i}: the app that ended first still got every byte`);
        await back;
      }
      assert.equal(opened(), 2, 'two pooled work conns carried all twelve users');
    });

    test('a user that ends at once (its end may overtake StartWorkConn) still gets its echo', { timeout: 15_000 }, async () => {
      const echo = await startEchoApp();
      apps.push(echo);
      const { events, clientEvents, port } = await tunnel(link, 'pool-early-end', echo.port, 4);
      const opened = countPooledConnsAsked(clientEvents);
      await waitForEvent(events, poolFull(4), 'the pool to fill');
      for (let i = 0; i < 30; i++) {
        const user = await connectTo(port);
        user.end(`quick ${i}`);
        assert.equal((await readAll(user)).toString(), `quick ${i}`);
      }
      assert.ok(opened() < 30, `the work conn was reused (${opened()} pooled conns for 30 users)`);
    });

    test('a user reset mid-stream costs its work conn: it is closed, never handed back', { timeout: 15_000 }, async () => {
      const echo = await startEchoApp();
      apps.push(echo);
      const { server, events, clientEvents, port } = await tunnel(link, 'pool-reset', echo.port, 4);
      const opened = countPooledConnsAsked(clientEvents);
      await waitForEvent(events, poolFull(4), 'the pool to fill');
      const closedConn = nextEvent(server, (e) => e.type === 'conn-closed', 'the reset user to be closed');
      const user = await connectTo(port);
      user.on('error', () => {});
      user.write('partial');
      assert.equal((await readBytes(user, 7)).toString(), 'partial');
      user.resetAndDestroy();
      await closedConn;
      // Three idle conns remain. The next user takes one and hands it back: had the reset conn
      // come back too, the pool would now hold four.
      const back = nextEvent(server, (e) => e.type === 'work-conn-pooled', "the next user's conn back in the pool");
      assert.deepEqual(await echoRoundTrip(port, Buffer.from('after')), Buffer.from('after'));
      const event = await back;
      assert.ok(event.type === 'work-conn-pooled' && event.idle === 3, JSON.stringify(event));
      assert.equal(opened(), 4, 'no replacement needed yet: the pool is not below half');
    });

    test('a failed local dial on a pooled conn closes the user at once and says why', { timeout: 15_000 }, async () => {
      const { server, events, clientEvents, port } = await tunnel(link, 'pool-dead-app', await unusedPort(), 1);
      await waitForEvent(events, poolFull(1), 'the pool to fill');
      const failed = nextEvent(server, (e) => e.type === 'work-conn-failed', 'the failure report');
      const user = await connectTo(port);
      const ending = streamEnding(user);
      // The user sees its conn reset far below the 10 s pairing timeout: it is not left waiting.
      const started = Date.now();
      assert.deepEqual([(await ending).ending, (await ending).bytes], ['reset', 0]);
      assert.ok(Date.now() - started < 5000);
      user.destroy();
      const event = await failed;
      assert.ok(event.type === 'work-conn-failed' && /local app unreachable/.test(event.reason), JSON.stringify(event));
      await waitForEvent(clientEvents, (e) => e.type === 'local-dial-failed', 'the client to report the dead app');
    });

    test('a server-speaks-first app is dialed only once its user exists', { timeout: 15_000 }, async () => {
      const banner = await startBannerApp('220 banner ready\r\n');
      apps.push(banner);
      const { events, port } = await tunnel(link, 'pool-banner', banner.port, 2);
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
      const { server, events, port } = await tunnel(link, 'pool-off', echo.port, 0);
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
        tls: link === 'tls',
        extra: { workConnPool: 2 },
      });
      const started = await startServer(config);
      const { server } = started;
      const channel = new ControlChannel(await dialServer(started));
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
        const workConn = await dialServer(started);
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
  });

test('workConnPool must be a whole number in range, named in the error', { timeout: 15_000 }, () => {
  const config = makeConfigDir([], { extra: { workConnPool: -1 } });
  assert.throws(
    () => loadServerConfig(config.serverFile),
    (error: ConfigError) => error.code === 'CONFIG_INVALID' && /workConnPool/.test(error.message),
  );
});

test('the pool never holds more than its size: conns handed back first, replacements arriving after them are closed', { timeout: 15_000 }, async () => {
  const asked: string[][] = [];
  const pool = new WorkConnPool(
    2,
    10_000,
    (ids) => asked.push(ids),
    () => {},
  );
  after(() => pool.destroy());
  pool.topUp();
  const firstIds = asked.shift()!;
  assert.equal(firstIds.length, 2);
  const pairs = await Promise.all([socketPair(), socketPair(), socketPair(), socketPair()]);
  after(() => pairs.flat().forEach((socket) => socket.destroy()));
  pool.add(firstIds[0]!, pairs[0]![0]);
  pool.add(firstIds[1]!, pairs[1]![0]);
  // Two users take both conns: replacements are asked for after this turn.
  const taken = [pool.take()!, pool.take()!];
  await waitUntil(() => asked.length === 1, 'the replacements to be asked for');
  const replacementIds = asked.shift()!;
  assert.equal(replacementIds.length, 2);
  // Both users are through before the replacements arrive: the pool is full again...
  pool.giveBack(taken[0]!, 'user-1');
  pool.giveBack(taken[1]!, 'user-2');
  assert.equal(pool.idleCount, 2);
  // ...so the replacements are surplus: closed, not parked.
  pool.add(replacementIds[0]!, pairs[2]![0]);
  pool.add(replacementIds[1]!, pairs[3]![0]);
  assert.equal(pool.idleCount, 2);
  await Promise.all([pairs[2]![1], pairs[3]![1]].map((peer) => streamEnding(peer)));
  assert.equal(pairs[2]![0].destroyed && pairs[3]![0].destroyed, true);
});
