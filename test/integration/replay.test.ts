import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { joinProof, type NewWorkConn } from '../../src/protocol/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startServer } from '../helpers/in-process.js';
import { connectTo, readBytes, waitForEvent } from '../helpers/net.js';
import { connectFrom, endedByServer, rawLogin, sendFrame } from '../helpers/raw-peer.js';

async function setup(name: string) {
  const echo = await startEchoApp();
  const secret = randomSecret();
  // Raw peers send no pings: a long heartbeat timeout keeps their sessions up meanwhile.
  // The client is played by hand and answers ReqWorkConn: the on-demand path (the pool has its own tests).
  // Plaintext: the attacker replays frames captured off the wire, which TLS would hide from it.
  const config = makeConfigDir([{ name, secret, apps: [{ name: 'echo', localPort: echo.port }] }], {
    heartbeatInterval: '1s',
    heartbeatTimeout: '20s',
    workConnPool: 0,
    tls: false,
  });
  const started = await startServer(config);
  after(async () => {
    await started.server.close();
    await echo.close();
  });
  return { ...started, secret };
}

test('a captured Login replayed on a new connection is refused: the nonce is per connection', { timeout: 15_000 }, async () => {
  const { port, secret, events } = await setup('replay-login');
  const first = await rawLogin(port, { group: 'replay-login', clientId: 'victim', secret });
  assert.ok(first.resp.sessionId, 'the genuine login is accepted');
  first.channel.destroy();
  await waitForEvent(events, (e) => e.type === 'group-deactivated', 'the genuine session ending');

  // The attacker saw the whole first exchange and replays the same Login (same client id).
  const replay = await rawLogin(port, { group: 'replay-login', clientId: 'victim', proof: first.login.proof });
  assert.notEqual(replay.nonce, first.nonce, 'every connection gets its own nonce');
  assert.equal(replay.resp.error?.code, 'BAD_SECRET');
  assert.equal(replay.resp.sessionId, undefined);
  replay.channel.destroy();
});

test('a captured NewWorkConn is refused after use, and on another session', { timeout: 15_000 }, async () => {
  const { port, secret, events } = await setup('replay-join');
  const session = await rawLogin(port, { group: 'replay-join', clientId: 'victim', secret });
  const sessionId = session.resp.sessionId!;
  const echoPort = session.resp.apps![0]!.remotePort;
  const request = session.channel.next('ReqWorkConn');

  const user = await connectTo(echoPort);
  // The takeover below resets this user: its session is over.
  user.on('error', () => {});
  const { pairingId } = await request;
  const join: NewWorkConn = { type: 'NewWorkConn', sessionId, pairingId, proof: joinProof(secret, sessionId, pairingId) };
  const workConn = await connectFrom(port);
  sendFrame(workConn, join);
  await waitForEvent(events, (e) => e.type === 'work-conn-joined' && e.pairingId === pairingId, 'the genuine join');
  // Prove the pairing is live: the work conn talks to the user.
  workConn.write('hello user');
  assert.equal((await readBytes(user, 10)).toString(), 'hello user');

  // 1. The same frame replayed on a fresh connection: the pairing id was used once.
  const replayed = await connectFrom(port);
  sendFrame(replayed, join);
  const refused = await waitForEvent(events, (e) => e.type === 'bad-peer' && e.code === 'BAD_WORK_CONN', 'replayed join refused');
  assert.match(refused.type === 'bad-peer' ? refused.reason : '', /unknown, used or expired pairing id/);
  await endedByServer(replayed);

  // 2. A new session of the same group: a join from the old session is useless there,
  //    whether it names the old session or is re-labelled with the new session's id.
  const second = await rawLogin(port, { group: 'replay-join', clientId: 'victim', secret });
  const newSessionId = second.resp.sessionId!;
  assert.notEqual(newSessionId, sessionId);
  const secondRequest = second.channel.next('ReqWorkConn');
  const user2 = await connectTo(second.resp.apps![0]!.remotePort);
  user2.on('error', () => {});
  const pending = await secondRequest; // a real pairing is pending on the new session

  const oldSession = await connectFrom(port);
  sendFrame(oldSession, { ...join, pairingId: pending.pairingId });
  const stale = await waitForEvent(events, (e) => e.type === 'bad-peer' && /unknown or ended session/.test(e.reason), 'join naming the ended session');
  assert.ok(stale);
  await endedByServer(oldSession);

  const relabelled = await connectFrom(port);
  // The attacker cannot compute a proof for the new session; it reuses the captured one.
  sendFrame(relabelled, { ...join, sessionId: newSessionId, pairingId: pending.pairingId });
  const badProof = await waitForEvent(events, (e) => e.type === 'bad-peer' && /bad join proof/.test(e.reason), 'join with a proof of another session');
  assert.ok(badProof);
  await endedByServer(relabelled);

  for (const socket of [user, user2, workConn]) socket.destroy();
  second.channel.destroy();
  session.channel.destroy();
});
