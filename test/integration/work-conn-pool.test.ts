import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Observable } from 'rxjs';
import type { ClientEvent } from '../../src/client/index.js';
import { after, describe, test } from 'node:test';
import { loadGroupFile, loadServerConfig, type ConfigError } from '../../src/config/index.js';
import { ControlChannel } from '../../src/net/index.js';
import { encodeFrame, joinProof, loginProof, PROTOCOL_VERSION } from '../../src/protocol/index.js';
import type { ServerEvent } from '../../src/server/index.js';
import { Pairings } from '../../src/server/users/pairings.js';
import { WorkConnPool } from '../../src/server/users/work-conn-pool.js';
import { startApp, startBannerApp, startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { dialServer, LINKS, type Link } from '../helpers/link.js';
import { connectTo, echoRoundTrip, readAll, readBytes, sha256, socketPair, streamEnding, waitForEvent } from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

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

    test('user after user: each takes a pooled work conn of its own, and the pool is refilled', { timeout: 15_000 }, async () => {
      const echo = await startEchoApp();
      apps.push(echo);
      const { server, events, clientEvents, port } = await tunnel(link, 'pool-used', echo.port, 4);
      const opened = countPooledConnsAsked(clientEvents);
      await waitForEvent(events, poolFull(4), 'the pool to fill');
      let pooled = 0;
      for (let i = 0; i < 20; i++) {
        const joined = nextEvent(server, (e) => e.type === 'work-conn-joined', 'a join');
        const payload = Buffer.from(`user ${i}`);
        assert.deepEqual(await echoRoundTrip(port, payload), payload);
        const event = await joined;
        assert.ok(event.type === 'work-conn-joined');
        if (event.pooled === true) pooled++;
      }
      // Single-use: every pooled user had a conn no other user had (refills come in batches;
      // a user who finds the pool empty meanwhile asks for one of its own).
      assert.ok(pooled >= 4, `${pooled} of 20 users served from the pool`);
      assert.ok(opened() >= pooled, `${opened()} pooled conns opened for ${pooled} pooled users`);
      assert.equal(echo.accepted, 20, 'each user had its own conn to the app');
    });

    test('half-close both ways on pooled work conns, and no byte of one user reaches the next', { timeout: 30_000 }, async () => {
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
      const { events, port } = await tunnelOf(link, 'pool-half-close', [app.port, quitter.port], 2);
      await waitForEvent(events, poolFull(2), 'the pool to fill');

      for (let i = 0; i < 6; i++) {
        const payload = randomBytes(100_000 + i * 7919);
        const user = await connectTo(port[0]!);
        const greeting = await readBytes(user, `hello ${i}\n`.length);
        assert.equal(greeting.toString(), `hello ${i}\n`);
        const answer = readAll(user);
        user.end(payload);
        assert.equal((await answer).toString(), `${payload.length} ${sha256(payload)}`, `user ${i}: the app saw exactly this user's bytes`);

        const second = await connectTo(port[1]!);
        assert.equal((await readAll(second)).toString(), 'bye\n');
        const late = randomBytes(50_000 + i);
        second.end(late);
        await eventually(() => countedAfterFin.length === i + 1, { message: 'the quitting app to see the FIN' });
        assert.equal(countedAfterFin[i], late.length, `user ${i}: the app that ended first still got every byte`);
      }
    });

    test('a user that ends at once (its FIN right behind StartWorkConn) still gets its echo', { timeout: 15_000 }, async () => {
      const echo = await startEchoApp();
      apps.push(echo);
      const { events, port } = await tunnel(link, 'pool-early-end', echo.port, 4);
      await waitForEvent(events, poolFull(4), 'the pool to fill');
      for (let i = 0; i < 30; i++) {
        const user = await connectTo(port);
        user.end(`quick ${i}`);
        assert.equal((await readAll(user)).toString(), `quick ${i}`);
      }
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

test('a pooled conn is asked for under a pairing id of the session, taken once, and replaced in batches below half', { timeout: 15_000 }, async () => {
  const asked: string[][] = [];
  const pairings = new Pairings(10_000);
  const pool = new WorkConnPool(
    2,
    pairings,
    (ids) => asked.push(ids),
    () => {},
  );
  after(() => {
    pool.destroy();
    pairings.failAll('test over');
  });
  pool.topUp();
  const firstIds = asked.shift()!;
  assert.equal(firstIds.length, 2);
  assert.ok(firstIds.every((id) => pairings.has(id)));
  const pairs = await Promise.all([socketPair(), socketPair(), socketPair()]);
  after(() => pairs.flat().forEach((socket) => socket.destroy()));
  assert.equal(pairings.deliver(firstIds[0]!, pairs[0]![0]), true);
  assert.equal(pairings.deliver(firstIds[0]!, pairs[2]![0]), false, 'an id is used once');
  assert.equal(pool.idleCount, 1);
  pool.topUp();
  assert.equal(asked.length, 0, 'one conn idle and one on its way: nothing missing');
  assert.equal(pairings.deliver(firstIds[1]!, pairs[1]![0]), true);
  assert.equal(pool.take(), pairs[0]![0], 'the oldest first');
  assert.equal(pool.idleCount, 1);
  assert.equal(pool.take(), pairs[1]![0]);
  // Below half (none idle, none on its way): both are asked for again after this turn, in one batch.
  await eventually(() => asked.length === 1, { message: 'the replacements to be asked for' });
  assert.equal(asked[0]!.length, 2);
});
