import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { VirtualTimeScheduler } from 'rxjs';
import { loadGroupFile } from '../../src/config/index.js';
import type { ServerEvent } from '../../src/server/index.js';
import { unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestServerSettings } from '../helpers/configs.js';
import { startFaultRelay } from '../helpers/fault-relay.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { dialServer } from '../helpers/link.js';
import { eventually } from '../helpers/eventually.js';
import { closedWithin, connectTo, waitForEvent } from '../helpers/net.js';
import { advance } from '../helpers/virtual-clock.js';
import { rawLogin } from '../helpers/raw-client.js';

/**
 * The session's deadlines on a real server and client over real sockets (TLS, pinned), their
 * clock virtual: time moves only when the test says, so each deadline is checked a ms before
 * and at its due time, with the default-sized timeouts and no wall-clock wait.
 */

async function virtualServer(t: TestContext, settings: TestServerSettings) {
  const secret = randomSecret();
  const remotePort = await unusedPort();
  const config = makeConfigDir([{ name: 'solo', secret, apps: [{ name: 'app', localPort: 1, remotePort }] }], { workConnPool: 0, ...settings });
  const clock = new VirtualTimeScheduler();
  const started = await startServer(config, { scheduler: clock });
  const seen: ServerEvent[] = [];
  started.events.subscribe((event) => seen.push(event));
  const sockets: Socket[] = [];
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await started.server.close();
  });
  const login = async () => {
    const session = await rawLogin(started, 'solo', secret, { apps: [{ name: 'app', remotePort }] });
    sockets.push(session.channel.socket);
    return session;
  };
  const keep = (socket: Socket): Socket => {
    socket.on('error', () => {});
    sockets.push(socket);
    return socket;
  };
  return { started, clock, seen, login, keep, remotePort };
}

test('login deadline: a connection that neither logs in nor joins is cut at handshakeTimeout, not a ms before', { timeout: 10_000 }, async (t) => {
  const { started, clock, seen, login, keep } = await virtualServer(t, { handshakeTimeout: '10s', heartbeatTimeout: '60s' });
  await login(); // settled within its deadline: never cut by it
  const idle = keep(await dialServer(started));
  const remote = `127.0.0.1:${idle.localPort}`;
  // Its deadline is set once the server has its first bytes' reader up: one timer, due at 10 s.
  await eventually(() => clock.actions.some((action) => action.delay === 10_000), { message: 'the login deadline set' });
  const cut = () => seen.filter((e) => e.type === 'bad-peer' && e.code === 'HANDSHAKE_TIMEOUT');

  advance(clock, 9_999);
  assert.deepEqual(cut(), []);
  advance(clock, 1);
  assert.deepEqual(
    cut().map((e) => e.type === 'bad-peer' && e.remote),
    [remote],
  );
  await closedWithin(idle);
  assert.equal(started.server.inUseGroup.has('solo'), true, 'the logged-in session is untouched');
});

test(
  'first bytes: a raw conn silent before TLS, or stalled in a WebSocket upgrade head, is cut at handshakeTimeout with one line each, not a ms before',
  { timeout: 10_000 },
  async (t) => {
    const { started, clock, seen, login, keep } = await virtualServer(t, { handshakeTimeout: '10s', heartbeatTimeout: '60s' });
    await login();
    // Past the logged-in conn's own deadlines: the only ones due at 11 s are the two conns' below.
    advance(clock, 1_000);
    const silent = keep(await connectTo(started.port));
    const stalled = keep(await connectTo(started.port));
    stalled.write('GET /_ntp/ws HTTP/1.1\r\nHost: commonserver\r\n');
    const remotes = [silent, stalled].map((socket) => `127.0.0.1:${socket.localPort}`);
    await eventually(() => clock.actions.filter((action) => action.delay === 11_000).length === 2, { message: 'both first-byte deadlines set' });
    const verdicts = () => seen.filter((e) => e.type === 'bad-peer' && remotes.includes(e.remote));

    advance(clock, 9_999);
    assert.deepEqual(verdicts(), []);
    assert.equal(silent.destroyed || stalled.destroyed, false);
    advance(clock, 1);
    await Promise.all([closedWithin(silent), closedWithin(stalled)]);
    // A round trip through the server after both closes: a second line, if any, is out by then.
    await dialServer(started).then((socket) => keep(socket).destroy());
    assert.deepEqual(
      verdicts().map((e) => e.type === 'bad-peer' && [e.remote, e.code, e.reason]),
      remotes.map((remote) => [remote, 'TLS_HANDSHAKE', 'TLS handshake failed: no TLS or WebSocket handshake within 10s']),
    );
    assert.equal(started.server.inUseGroup.has('solo'), true, 'the logged-in session is untouched');
  },
);

test('heartbeat: a silent client is given up at heartbeatTimeout after its last frame, and leaves no timer', { timeout: 10_000 }, async (t) => {
  const { started, clock, seen, login } = await virtualServer(t, { heartbeatInterval: '10s', heartbeatTimeout: '30s' });
  const session = await login();
  advance(clock, 20_000);
  // A frame at 20 s restarts the watch: the session now lasts until 50 s.
  const pong = session.channel.next('Pong');
  session.channel.send({ type: 'Ping', seq: 1 });
  await pong;
  advance(clock, 29_999);
  assert.equal(started.server.inUseGroup.has('solo'), true, 'alive 30 s after login, the Ping at 20 s counted');

  const goodbye = session.channel.next('Goodbye');
  advance(clock, 1);
  assert.deepEqual(
    seen.filter((e) => e.type === 'heartbeat-timeout').map((e) => e.type === 'heartbeat-timeout' && e.silentMs),
    [30_000],
  );
  assert.equal(started.server.inUseGroup.has('solo'), false);
  assert.equal((await goodbye).code, 'HEARTBEAT_TIMEOUT');
  // The session's watch and its traffic sampling ended with it.
  assert.deepEqual(clock.actions, []);
});

test('pairing deadline: a user waiting for a work conn is closed at pairingTimeout, not a ms before', { timeout: 10_000 }, async (t) => {
  const { started, clock, seen, login, keep, remotePort } = await virtualServer(t, { pairingTimeout: '10s', heartbeatTimeout: '60s' });
  const session = await login();
  const user = keep(await connectTo(remotePort));
  const gone = closedWithin(user);
  const { pairingId } = await session.channel.next('ReqWorkConn');
  const failed = () => seen.filter((e) => e.type === 'work-conn-failed' && e.pairingId === pairingId);

  advance(clock, 9_999);
  // The user's failure is reported once its wait's promise settles: a round trip on the
  // control conn gives it the time to.
  const pong = session.channel.next('Pong');
  session.channel.send({ type: 'Ping', seq: 1 });
  await pong;
  assert.deepEqual(failed(), []);
  advance(clock, 1);
  await waitForEvent(started.events, (e) => e.type === 'work-conn-failed' && e.pairingId === pairingId, 'the pairing expired');
  await gone;
});

test('a session that ends otherwise (its client gone) leaves no timer of its own behind', { timeout: 10_000 }, async (t) => {
  const { started, clock, login } = await virtualServer(t, { heartbeatTimeout: '30s' });
  const session = await login();
  advance(clock, 1_000);
  session.channel.destroy();
  await waitForEvent(started.events, (e) => e.type === 'group-deactivated' && e.code === 'CONNECTION_LOST', 'the session lost');
  assert.deepEqual(clock.actions, [], 'the heartbeat watch and the traffic sampling ended with the session');
});

/** A GroupClient on a virtual clock, through a relay that can blackhole the path, logged in and past its first Ping. */
async function virtualClient(t: TestContext) {
  const secret = randomSecret();
  const config = makeConfigDir([{ name: 'solo', secret, apps: [{ name: 'app', localPort: 1 }] }], { heartbeatInterval: '10s', heartbeatTimeout: '30s' });
  const started = await startServer(config);
  const relay = await startFaultRelay(started.port);
  const clock = new VirtualTimeScheduler();
  const client = startClient(loadGroupFile(config.groupFile('solo')), { ...started, port: relay.port }, { scheduler: clock });
  t.after(async () => {
    client.client.stop();
    await relay.close();
    await started.server.close();
  });
  await waitForEvent(client.events, (e) => e.type === 'login-accepted', 'login');
  advance(clock, 10_000);
  await waitForEvent(started.events, (e) => e.type === 'heartbeat' && e.seq === 1, 'the first Ping, at 10 s');
  await waitForEvent(client.events, (e) => e.type === 'heartbeat' && e.seq === 1, 'its Pong');
  return { ...client, clock, relay, started };
}

test('the client pings every heartbeatInterval, and once stopped leaves no ping, watch or deadline behind', { timeout: 15_000 }, async (t) => {
  const { client, done, clock, started } = await virtualClient(t);
  advance(clock, 10_000);
  await waitForEvent(started.events, (e) => e.type === 'heartbeat' && e.seq === 2, 'the second Ping, at 20 s');
  client.stop();
  await done;
  assert.deepEqual(clock.actions, []);
});

test('the client gives a silent server up at heartbeatTimeout after its last frame', { timeout: 15_000 }, async (t) => {
  const { events, clock, relay } = await virtualClient(t);
  relay.blackhole();
  const timedOut: number[] = [];
  events.subscribe((e) => e.type === 'heartbeat-timeout' && timedOut.push(e.silentMs));
  // The Pong came at 10 s: the server is given up at 40 s.
  advance(clock, 29_999);
  assert.deepEqual(timedOut, []);
  advance(clock, 1);
  assert.deepEqual(timedOut, [30_000]);
});
