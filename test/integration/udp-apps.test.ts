import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import { UdpAppServer } from '../../src/server/udp/udp-app-server.js';
import { makeConfigDir, randomSecret, type TestAppEntry, type TestConfigDir } from '../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';
import { startUdpEchoApp, unusedUdpPort, UdpUser, type UdpTestApp } from '../helpers/udp.js';
import { eventually } from '../helpers/eventually.js';

/**
 * UDP apps end to end, in process, over the default link (TLS, pinned fingerprint): real UDP
 * sockets for the users and the app, real TLS work conns in between.
 */
const GROUP = 'udp-group';
const IDLE_MS = 600;
const MAX_SESSIONS = 60;
const MAX_DATAGRAM = 1200;
const CAPPED_SESSIONS = 3;

let echo: UdpTestApp;
let cappedEcho: UdpTestApp;
let lateApp: UdpTestApp | undefined;
/** Where the `late` app will listen, once a test starts it: down until then. */
let latePort = 0;
let config: TestConfigDir;
let started: StartedServer;
let client: StartedClient;
let secret: string;
const ports = new Map<string, number>();
const users: UdpUser[] = [];

async function user(): Promise<UdpUser> {
  const opened = await UdpUser.open();
  users.push(opened);
  return opened;
}

function udpApp(name: string): UdpAppServer {
  const app = started.server.inUseGroup.get(GROUP)?.apps.get(name);
  assert.ok(app instanceof UdpAppServer, `${name} is a live UDP app`);
  return app;
}

/** The reply's sender prefix: which local socket of the groupclient the echo app saw. */
function seenAs(reply: Buffer): { peer: string; payload: Buffer } {
  const bar = reply.indexOf('|');
  return { peer: reply.subarray(0, bar).toString(), payload: reply.subarray(bar + 1) };
}

function apps(extra: TestAppEntry[] = []): TestAppEntry[] {
  return [
    { name: 'echo', localPort: echo.port, type: 'udp', udp: { idleTimeout: `${IDLE_MS}ms`, maxSessions: MAX_SESSIONS, maxDatagramBytes: MAX_DATAGRAM } },
    { name: 'capped', localPort: cappedEcho.port, type: 'udp', udp: { maxSessions: CAPPED_SESSIONS } },
    { name: 'late', localPort: latePort, type: 'udp' },
    ...extra,
  ];
}

before(async () => {
  echo = await startUdpEchoApp();
  cappedEcho = await startUdpEchoApp();
  latePort = await unusedUdpPort();
  secret = randomSecret();
  config = makeConfigDir([{ name: GROUP, secret, apps: apps() }], { pairingTimeout: '10s' });
  started = await startServer(config);
  client = startClient(loadGroupFile(config.groupFile(GROUP)), started);
  const accepted = await waitForEvent(client.events, (event) => event.type === 'login-accepted', 'login');
  assert.equal(accepted.type, 'login-accepted');
  for (const app of accepted.apps) {
    assert.equal(app.state, 'listening', `${app.name}: ${app.error}`);
    assert.equal(app.protocol, 'udp');
    ports.set(app.name, app.remotePort);
  }
});

after(async () => {
  await Promise.all(users.map((u) => u.close()));
  await client.client.stop('test over');
  await client.done;
  await started.server.close();
  await Promise.all([echo.close(), cappedEcho.close(), lateApp?.close()]);
});

describe('UDP apps over the TLS link', () => {
  test('a datagram reaches the local app and its reply comes back to the user', { timeout: 20_000 }, async () => {
    const u = await user();
    const payload = randomBytes(1000);
    const reply = seenAs(await u.request(ports.get('echo')!, payload));
    assert.deepEqual(reply.payload, payload);
    // The app saw the groupclient's local socket, not the user.
    assert.match(reply.peer, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(reply.peer, `127.0.0.1:${u.port}`);
    // Datagram boundaries kept: three datagrams in a row come back as three, each whole.
    const parts = [randomBytes(1), randomBytes(700), Buffer.alloc(0)];
    for (const part of parts) await u.send(ports.get('echo')!, part);
    for (const part of parts) assert.deepEqual(seenAs(await u.next()).payload, part);
    // The same user keeps its session: the app sees the same peer.
    assert.equal(seenAs(await u.request(ports.get('echo')!, 'again')).peer, reply.peer);
  });

  test('50 users at once: each its own session and local socket, each gets its own replies', { timeout: 30_000 }, async () => {
    const crowd = await Promise.all(Array.from({ length: 50 }, () => user()));
    const totalBefore = udpApp('echo').counters().sessionsTotal;
    const opened = started.server.events$; // live events only: not the sessions of earlier tests
    const sessions: { pooled: boolean; mux?: boolean }[] = [];
    const watch = opened.subscribe((event) => {
      if (event.type === 'udp-session-opened' && event.app === 'echo') sessions.push(event);
    });
    const rounds = 5;
    const seen = await Promise.all(
      crowd.map(async (u, index) => {
        const peers = new Set<string>();
        for (let round = 0; round < rounds; round++) {
          const payload = Buffer.from(`user ${index} round ${round} ${randomBytes(8).toString('hex')}`);
          const reply = seenAs(await u.request(ports.get('echo')!, payload));
          assert.deepEqual(reply.payload, payload, `user ${index} round ${round}: its own reply`);
          peers.add(reply.peer);
        }
        assert.equal(peers.size, 1, `user ${index}: one session for all its datagrams`);
        return [...peers][0]!;
      }),
    );
    assert.equal(new Set(seen).size, 50, 'the app saw 50 distinct peers');
    watch.unsubscribe();
    // The mux conn is up: every session is a stream of it, no pool and no work conn asked for.
    assert.equal(sessions.length, 50);
    assert.ok(
      sessions.every((session) => session.mux === true && !session.pooled),
      JSON.stringify(sessions.filter((session) => session.mux !== true)),
    );
    assert.equal(udpApp('echo').counters().sessionsTotal - totalBefore, 50, 'one session per user');
  });

  test('an idle session is closed after idleTimeout, its local socket with it; the next datagram opens a new one', { timeout: 20_000 }, async () => {
    const u = await user();
    const first = seenAs(await u.request(ports.get('echo')!, 'before idle')).peer;
    const closed = waitForEvent(
      started.events,
      (event) => event.type === 'udp-session-closed' && event.peer === `127.0.0.1:${u.port}`,
      'the server to close the idle session',
      IDLE_MS + 5000,
    );
    const event = await closed;
    assert.equal(event.type, 'udp-session-closed');
    assert.match(event.reason, /idle/);
    // The client's side of it: its local socket closed because the server ended the session.
    const clientClosed = await waitForEvent(
      client.events,
      (e) => e.type === 'udp-session-closed' && e.pairingId === event.pairingId,
      'the client to close its local socket',
    );
    assert.equal(clientClosed.type === 'udp-session-closed' && clientClosed.reason, 'end');
    const second = seenAs(await u.request(ports.get('echo')!, 'after idle')).peer;
    assert.notEqual(second, first, 'a new session, on a new local socket');
  });

  test('datagrams over maxDatagramBytes are dropped and counted, either way', { timeout: 20_000 }, async () => {
    const u = await user();
    const port = ports.get('echo')!;
    const before = udpApp('echo').counters().dropped.oversize;
    // Towards the app: too large at the public port.
    await u.send(port, randomBytes(MAX_DATAGRAM + 1));
    await eventually(() => udpApp('echo').counters().dropped.oversize === before + 1, { message: 'the oversize datagram counted' });
    // Back from the app: the echo adds its "ADDRESS:PORT|" prefix, so a payload just under the
    // limit comes back over it.
    await u.send(port, randomBytes(MAX_DATAGRAM - 5));
    await eventually(() => udpApp('echo').counters().dropped.oversize === before + 2, { message: 'the oversize reply counted' });
    // Neither reached the user; a datagram that fits still does, whole.
    const fits = randomBytes(MAX_DATAGRAM - 40);
    assert.deepEqual(seenAs(await u.request(port, fits)).payload, fits);
    assert.equal(u.queued, 0, 'nothing else arrived');
  });

  test('sessions are capped: datagrams from new peers over maxSessions are dropped and counted', { timeout: 30_000 }, async () => {
    const port = ports.get('capped')!;
    const app = udpApp('capped');
    const insiders = await Promise.all(Array.from({ length: CAPPED_SESSIONS }, () => user()));
    for (const u of insiders) assert.equal(seenAs(await u.request(port, 'in')).payload.toString(), 'in');
    assert.equal(app.counters().sessions, CAPPED_SESSIONS);
    const outsiders = await Promise.all(Array.from({ length: 2 }, () => user()));
    for (const [index, u] of outsiders.entries()) {
      await u.send(port, 'let me in');
      await eventually(() => app.counters().dropped.sessionCap === index + 1, { message: `outsider ${index} counted as over the cap` });
    }
    assert.equal(app.counters().sessions, CAPPED_SESSIONS, 'no session opened over the cap');
    // The insiders are still served while the table is full; the outsiders got nothing.
    for (const u of insiders) assert.equal(seenAs(await u.request(port, 'still in')).payload.toString(), 'still in');
    for (const u of outsiders) assert.equal(u.queued, 0);
    assert.equal(cappedEcho.peers.length, CAPPED_SESSIONS, 'the app saw only the sessions under the cap');
  });

  test('a local UDP app that is down: reported by the client, and served once it is up (same session)', { timeout: 20_000 }, async () => {
    const u = await user();
    const reported = waitForEvent(
      client.events,
      (event) => event.type === 'local-dial-failed' && event.app === 'late',
      'the client to report the app unreachable',
    );
    await u.send(ports.get('late')!, 'anyone?');
    const event = await reported;
    assert.match(event.type === 'local-dial-failed' ? event.reason : '', /ECONNREFUSED/);
    assert.equal(u.queued, 0);
    lateApp = await startUdpEchoApp(latePort);
    assert.equal(seenAs(await u.request(ports.get('late')!, 'now?')).payload.toString(), 'now?');
    assert.equal(udpApp('late').counters().sessionsTotal, 1, 'the session outlived the outage');
  });
});

describe('a UDP app the two group files disagree on', () => {
  test(
    "TCP in the host's own file: the server's registry wins, both ends warn naming the app, and its users are served over UDP",
    { timeout: 20_000 },
    async () => {
      const app = await startUdpEchoApp();
      const mixed = makeConfigDir([{ name: 'mixed', secret: randomSecret(), apps: [{ name: 'svc', localPort: app.port, type: 'udp' }] }]);
      const server = await startServer(mixed);
      // The host's copy of the file says TCP for the same app.
      const clientSpec = loadGroupFile(mixed.groupFile('mixed'));
      const mine = startClient({ ...clientSpec, apps: clientSpec.apps.map(({ type: _type, udp: _udp, ...tcp }) => tcp) }, server);
      const u = await user();
      try {
        const activated = await waitForEvent(server.events, (event) => event.type === 'group-activated', 'activation');
        assert.equal(activated.type, 'group-activated');
        assert.ok(
          activated.type === 'group-activated' &&
            activated.warnings.some((w) => /registry says type udp, the client's file says tcp; the server's applies/.test(w)),
          JSON.stringify(activated),
        );
        const received = await waitForEvent(mine.events, (event) => event.type === 'apps-received', "the server's apps");
        assert.deepEqual(received.type === 'apps-received' && received.warnings, [
          `app "svc": this host's file says type tcp where the server says udp; the server's applies`,
        ]);
        const port = activated.type === 'group-activated' ? activated.apps[0]!.remotePort : 0;
        await u.send(port, 'hello?');
        assert.equal(seenAs(await u.next()).payload.toString(), 'hello?');
        assert.equal(app.datagrams, 1, 'the datagram reached the local UDP app');
      } finally {
        await mine.client.stop('test over');
        await mine.done;
        await server.server.close();
        await app.close();
      }
    },
  );
});

describe('a UDP port already taken on the server', () => {
  test('fails that app alone, is retried, and serves once the port is free', { timeout: 20_000 }, async () => {
    const app = await startUdpEchoApp();
    const squatter = await UdpUser.open(); // holds the public port
    const taken = squatter.port;
    const busy = makeConfigDir([
      {
        name: 'busy',
        secret: randomSecret(),
        apps: [
          { name: 'held', localPort: app.port, remotePort: taken, type: 'udp' },
          { name: 'free', localPort: app.port, type: 'udp' },
        ],
      },
    ]);
    const server = await startServer(busy, { bindRetry: { firstMs: 100, maxMs: 200 } });
    const mine = startClient(loadGroupFile(busy.groupFile('busy')), server);
    const u = await user();
    try {
      const accepted = await waitForEvent(mine.events, (event) => event.type === 'login-accepted', 'login');
      const bindings = new Map(accepted.type === 'login-accepted' ? accepted.apps.map((binding) => [binding.name, binding]) : []);
      assert.equal(bindings.get('held')!.state, 'failed');
      assert.match(bindings.get('held')!.error!, new RegExp(`port ${taken} is already in use; retrying`));
      // The other UDP app of the group serves meanwhile.
      assert.match((await u.request(bindings.get('free')!.remotePort, 'meanwhile')).toString(), /\|meanwhile$/);
      const opened = waitForEvent(
        mine.events,
        (event) => event.type === 'apps-changed' && event.opened.some((binding) => binding.name === 'held'),
        'the retried bind reported',
      );
      await squatter.close();
      await opened;
      assert.match((await u.request(taken, 'at last')).toString(), /\|at last$/);
    } finally {
      await mine.client.stop('test over');
      await mine.done;
      await server.server.close();
      await app.close();
    }
  });
});

describe('UDP apps without mux', () => {
  test('50 users at once: each on a single-use work conn, pooled or asked for, each gets its own replies', { timeout: 30_000 }, async () => {
    const app = await startUdpEchoApp();
    const plain = makeConfigDir([{ name: 'nomux', secret: randomSecret(), apps: [{ name: 'echo', localPort: app.port, type: 'udp' }] }], {
      pairingTimeout: '10s',
      extra: { mux: false },
    });
    const server = await startServer(plain);
    const mine = startClient(loadGroupFile(plain.groupFile('nomux')), server);
    try {
      const activated = await waitForEvent(server.events, (event) => event.type === 'group-activated', 'activation');
      const port = activated.type === 'group-activated' ? activated.apps[0]!.remotePort : 0;
      await waitForEvent(server.events, (event) => event.type === 'work-conn-pooled' && event.idle === 16, 'the pool to fill');
      const sessions: { pooled: boolean; mux?: boolean }[] = [];
      const watch = server.events.subscribe((event) => {
        if (event.type === 'udp-session-opened') sessions.push(event);
      });
      const crowd = await Promise.all(Array.from({ length: 50 }, () => user()));
      await Promise.all(
        crowd.map(async (u, index) => {
          const payload = Buffer.from(`user ${index} ${randomBytes(8).toString('hex')}`);
          assert.deepEqual(seenAs(await u.request(port, payload)).payload, payload, `user ${index}: its own reply`);
        }),
      );
      watch.unsubscribe();
      assert.equal(sessions.length, 50);
      assert.ok(!sessions.some((session) => session.mux), 'no session on a mux stream');
      // More users at once than the pool (16) holds: both ways to a work conn were taken.
      assert.ok(
        sessions.some((session) => session.pooled),
        'some sessions on pooled work conns',
      );
      assert.ok(
        sessions.some((session) => !session.pooled),
        'some sessions on work conns asked for (ReqWorkConn)',
      );
    } finally {
      await mine.client.stop('test over');
      await mine.done;
      await server.server.close();
      await app.close();
    }
  });
});
