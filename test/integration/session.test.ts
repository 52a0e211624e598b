import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestServerSettings } from '../helpers/configs.js';
import { startServer } from '../helpers/in-process.js';
import { connectTo, closedWithin, waitForEvent } from '../helpers/net.js';
import { rawHandshake, rawLogin } from '../helpers/raw-client.js';

/**
 * A session's life on the server, with the groupclient played by the test: takeover by the
 * same client id, refusal of another one while the group is live, and the heartbeat timeout
 * that frees the group and its public port.
 */
async function setUp(t: TestContext, settings: TestServerSettings) {
  const secret = randomSecret();
  const remotePort = await unusedPort();
  // The client is played by hand and answers ReqWorkConn: the on-demand path (the pool has its own tests).
  const config = makeConfigDir([{ name: 'solo', secret, apps: [{ name: 'app', localPort: 1, remotePort }] }], { workConnPool: 0, ...settings });
  const started = await startServer(config);
  const { server, events } = started;
  const sockets: Socket[] = [];
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await server.close();
  });
  const user = async (): Promise<Socket> => {
    const socket = await connectTo(remotePort);
    socket.on('error', () => {});
    sockets.push(socket);
    return socket;
  };
  const login = async (clientId: string) => {
    const session = await rawLogin(started, 'solo', secret, { clientId });
    sockets.push(session.channel.socket);
    return session;
  };
  const handshake = async (clientId: string) => {
    const attempt = await rawHandshake(started, 'solo', secret, { clientId });
    sockets.push(attempt.channel.socket);
    return attempt;
  };
  return { server, events, remotePort, user, login, handshake };
}

test('the same client id takes a live group over at once, on the same public port', { timeout: 10_000 }, async (t) => {
  const { server, events, remotePort, user, login } = await setUp(t, { heartbeatInterval: '5s', heartbeatTimeout: '60s' });
  const first = await login('agent-1');
  assert.deepEqual(first.resp.apps, [{ name: 'app', remotePort, state: 'listening' }]);
  const heldUser = await user();
  await first.channel.next('ReqWorkConn'); // held, never answered

  // The old session still looks alive (no timeout yet): the new one must win anyway.
  const farewell = first.channel.next('Goodbye');
  const second = await login('agent-1');
  assert.equal((await farewell).code, 'TAKEN_OVER');
  assert.deepEqual(second.resp.apps, [{ name: 'app', remotePort, state: 'listening' }], 'no "port already used"');
  assert.equal(server.inUseGroup.get('solo')?.sessionId, second.sessionId);
  await closedWithin(heldUser); // the old session's held user is closed, not left waiting
  const deactivated = await waitForEvent(events, (e) => e.type === 'group-deactivated', 'the old session deactivated');
  assert.ok(deactivated.type === 'group-deactivated' && deactivated.code === 'TAKEN_OVER');

  // The new session serves the port.
  await user();
  assert.equal((await second.channel.next('ReqWorkConn')).app, 'app');
});

test('another client id is refused while the group is live, naming where and since when', { timeout: 10_000 }, async (t) => {
  const { server, events, login, handshake } = await setUp(t, { heartbeatInterval: '5s', heartbeatTimeout: '60s' });
  const live = await login('agent-1');
  const { resp } = await handshake('agent-2');
  assert.equal(resp.error?.code, 'GROUP_IN_USE');
  assert.equal(resp.sessionId, undefined);
  const since = new Date(server.inUseGroup.get('solo')!.since).toISOString();
  assert.ok(resp.error!.reason.includes(`127.0.0.1:${live.channel.socket.localPort}`), 'names where the group is live');
  assert.ok(resp.error!.reason.includes(since), 'names since when');
  const rejected = await waitForEvent(events, (e) => e.type === 'login-rejected', 'login-rejected');
  assert.ok(rejected.type === 'login-rejected' && rejected.code === 'GROUP_IN_USE');
  assert.equal(server.inUseGroup.get('solo')?.sessionId, live.sessionId, 'the live session is untouched');
});

test('a silent client: heartbeat timeout, Goodbye, held users closed, port freed, group free again', { timeout: 10_000 }, async (t) => {
  const { server, events, remotePort, user, login } = await setUp(t, { heartbeatInterval: '100ms', heartbeatTimeout: '400ms' });
  const silent = await login('agent-1'); // never pings
  const heldUser = await user();
  await silent.channel.next('ReqWorkConn');

  assert.equal((await silent.channel.next('Goodbye')).code, 'HEARTBEAT_TIMEOUT');
  await waitForEvent(events, (e) => e.type === 'heartbeat-timeout' && e.group === 'solo', 'heartbeat-timeout');
  const deactivated = await waitForEvent(events, (e) => e.type === 'group-deactivated', 'group-deactivated');
  assert.ok(deactivated.type === 'group-deactivated' && deactivated.code === 'HEARTBEAT_TIMEOUT');
  assert.equal(server.inUseGroup.has('solo'), false);
  await closedWithin(heldUser);

  // The public port is free: anyone can bind it now.
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(remotePort, '127.0.0.1', resolve);
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));

  // And the group is free for another client.
  const next = await login('agent-2');
  assert.deepEqual(next.resp.apps, [{ name: 'app', remotePort, state: 'listening' }]);
});
