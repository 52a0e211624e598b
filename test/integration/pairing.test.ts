import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { ReplaySubject } from 'rxjs';
import type { CommonServer, ServerEvent } from '../../src/server/index.js';
import { resetSocket } from '../../src/net/index.js';
import { unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startServer, type StartedServer } from '../helpers/in-process.js';
import { LINKS, type Link } from '../helpers/link.js';
import { connectTo, closedWithin, endedByReset, readAll, readBytes, sha256, streamEnding, waitForEvent } from '../helpers/net.js';
import { rawLogin, rawWorkConn, type RawSession } from '../helpers/raw-client.js';

/**
 * The server's side of pairing, with the groupclient played by the test: one-time pairing
 * ids, the work conn's first frame and the bytes that follow it, WorkConnFailed, the pairing
 * deadline, and many users of one app at once.
 */
const PAIRING_TIMEOUT_MS = 400;
const secret = randomSecret();

/** A server whose one app's client is played by hand (the on-demand path: the pool has its own tests). */
async function manualServer(link: Link, pairingTimeoutMs: number): Promise<{ started: StartedServer; session: RawSession; appPort: number }> {
  // The local target is never dialed here: the test is the client.
  const config = makeConfigDir([{ name: 'manual', secret, apps: [{ name: 'app', localPort: await unusedPort() }] }], {
    pairingTimeout: `${pairingTimeoutMs}ms`,
    // The raw client sends no pings: keep the session alive for the whole file.
    heartbeatInterval: '5s',
    heartbeatTimeout: '60s',
    workConnPool: 0,
    tls: link === 'tls',
  });
  const started = await startServer(config);
  const session = await rawLogin(started, 'manual', secret, { apps: [{ name: 'app', remotePort: 0 }] });
  return { started, session, appPort: session.resp.apps![0]!.remotePort };
}

/** The on-demand relay path over TLS (the default link) and over plaintext. */
function pairingOver(link: Link): void {
  let server: CommonServer;
  let started: StartedServer;
  let events: ReplaySubject<ServerEvent>;
  let session: RawSession;
  let appPort: number;
  const sockets: Socket[] = [];

  before(async () => {
    ({ started, session, appPort } = await manualServer(link, PAIRING_TIMEOUT_MS));
    ({ server, events } = started);
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    session?.channel.destroy();
    await server?.close();
  });

  async function user(): Promise<Socket> {
    const socket = await connectTo(appPort);
    socket.on('error', () => {});
    sockets.push(socket);
    return socket;
  }

  async function workConn(pairingId: string, firstBytes?: Buffer, withSecret = secret): Promise<Socket> {
    const socket = await rawWorkConn(started, session, pairingId, withSecret, firstBytes);
    sockets.push(socket);
    return socket;
  }

  function badPeerOn(socket: Socket): Promise<ServerEvent> {
    const remote = `127.0.0.1:${socket.localPort}`;
    return waitForEvent(events, (e) => e.type === 'bad-peer' && e.remote === remote, `a bad-peer event for ${remote}`);
  }

  test('bytes sent with NewWorkConn reach the user first; both directions and half-close flow', { timeout: 10_000 }, async () => {
    const u = await user();
    u.write('hello from the user');
    const { pairingId, app } = await session.channel.next('ReqWorkConn');
    assert.equal(app, 'app');
    const banner = Buffer.from('SSH-2.0-banner sent in the same segment as NewWorkConn\r\n');
    const w = await workConn(pairingId, banner);

    assert.deepEqual(await readBytes(u, banner.length), banner);
    assert.equal((await readBytes(w, 'hello from the user'.length)).toString(), 'hello from the user');

    // A single-use work conn: the user's FIN is a FIN on it, and the other way round.
    const atWorkConn = streamEnding(w, { keepOpen: true });
    u.end(' and goodbye');
    const workConnEnding = await atWorkConn;
    assert.equal(workConnEnding.ending, 'fin');
    assert.equal(workConnEnding.data.toString(), ' and goodbye');

    const atUser = streamEnding(u);
    w.end('last words');
    const ending = await atUser;
    assert.equal(ending.ending, 'fin', 'a clean end, after the other direction had ended');
    assert.equal(ending.data.toString(), 'last words');

    const closedEvent = await waitForEvent(events, (e) => e.type === 'conn-closed' && e.pairingId === pairingId, 'conn-closed');
    assert.ok(closedEvent.type === 'conn-closed');
    assert.equal(closedEvent.bytesIn, 'hello from the user and goodbye'.length);
    assert.equal(closedEvent.bytesOut, banner.length + 'last words'.length);
    assert.equal(closedEvent.error, undefined);
  });

  test('a work conn reset mid-stream (a crashed client) reaches the user as a reset, over TLS too', { timeout: 10_000 }, async () => {
    const u = await user();
    u.write('request');
    const { pairingId } = await session.channel.next('ReqWorkConn');
    const atUser = streamEnding(u);
    const w = await workConn(pairingId, Buffer.from('half an answer'));
    assert.equal((await readBytes(w, 'request'.length)).toString(), 'request');
    // What the client's relay does when its app conn fails: over TLS, the TCP socket beneath is reset.
    resetSocket(w);
    const ending = await atUser;
    assert.equal(ending.ending, 'reset', 'never a clean end with the answer cut short');
    assert.equal(ending.data.toString(), 'half an answer');
  });

  test('a bad join proof is refused without using up the pairing; a replayed pairing id is refused', { timeout: 10_000 }, async () => {
    const u = await user();
    const { pairingId } = await session.channel.next('ReqWorkConn');

    const forged = await workConn(pairingId, undefined, `not-${secret}`);
    const forgedVerdict = await badPeerOn(forged);
    assert.ok(forgedVerdict.type === 'bad-peer' && forgedVerdict.code === 'BAD_WORK_CONN' && /proof/.test(forgedVerdict.reason));

    const real = await workConn(pairingId);
    await waitForEvent(events, (e) => e.type === 'work-conn-joined' && e.pairingId === pairingId, 'the real work conn joined');
    u.write('ping');
    assert.equal((await readBytes(real, 4)).toString(), 'ping');

    const replay = await workConn(pairingId);
    const replayVerdict = await badPeerOn(replay);
    assert.ok(replayVerdict.type === 'bad-peer' && replayVerdict.code === 'BAD_WORK_CONN');
    // The replay did not disturb the joined pair.
    real.write('pong');
    assert.equal((await readBytes(u, 4)).toString(), 'pong');
  });

  test('WorkConnFailed closes the user at once and is reported with its reason', { timeout: 10_000 }, async () => {
    const u = await user();
    const gone = closedWithin(u);
    const { pairingId } = await session.channel.next('ReqWorkConn');
    session.channel.send({ type: 'WorkConnFailed', pairingId, reason: 'local app unreachable: ECONNREFUSED' });
    const failed = await waitForEvent(events, (e) => e.type === 'work-conn-failed' && e.pairingId === pairingId, 'work-conn-failed');
    assert.ok(failed.type === 'work-conn-failed' && failed.reason.includes('ECONNREFUSED'));
    await gone;
    // A work conn arriving after the failure finds no pairing.
    const late = await workConn(pairingId);
    assert.equal((await badPeerOn(late)).type, 'bad-peer');
  });

  test('no work conn within the pairing deadline: the user is closed and the pairing expires', { timeout: 10_000 }, async () => {
    const u = await user();
    const gone = closedWithin(u);
    const { pairingId } = await session.channel.next('ReqWorkConn');
    // Nothing is sent back: only the deadline can fail this pairing.
    await waitForEvent(events, (e) => e.type === 'work-conn-failed' && e.pairingId === pairingId, 'work-conn-failed');
    await gone;
    const late = await workConn(pairingId);
    const ending = streamEnding(late);
    assert.equal((await badPeerOn(late)).type, 'bad-peer');
    // Refused with a reset: a client has joined it to its local app, which must not take a clean end of an empty answer.
    const saw = await ending;
    assert.ok(endedByReset(saw), `the late work conn ended with ${saw.ending} (${saw.code ?? saw.kernelState ?? ''})`);
  });
}

/**
 * Many users at once, with a pairing deadline (10 s) that only a hang could miss: twenty TLS
 * handshakes on a loaded machine may well take longer than the deadline tests' 400 ms.
 */
function manyUsersOver(link: Link): void {
  let manual: Awaited<ReturnType<typeof manualServer>>;
  const sockets: Socket[] = [];
  before(async () => {
    manual = await manualServer(link, 10_000);
  });
  after(async () => {
    for (const socket of sockets) socket.destroy();
    manual?.session.channel.destroy();
    await manual?.started.server.close();
  });
  async function user(): Promise<Socket> {
    const socket = await connectTo(manual.appPort);
    socket.on('error', () => {});
    sockets.push(socket);
    return socket;
  }
  async function workConn(pairingId: string): Promise<Socket> {
    const socket = await rawWorkConn(manual.started, manual.session, pairingId, secret);
    sockets.push(socket);
    return socket;
  }

  test('many users of one app at once each get their own pairing and their own bytes', { timeout: 15_000 }, async () => {
    const USERS = 20;
    const users = await Promise.all(Array.from({ length: USERS }, () => user()));
    const pairingIds = new Set<string>();
    for (let i = 0; i < USERS; i++) pairingIds.add((await manual.session.channel.next('ReqWorkConn')).pairingId);
    assert.equal(pairingIds.size, USERS, 'every user got a distinct pairing id');
    // Answer every request at once, as the real client does: one after the other, the last
    // user's deadline would run out behind nineteen TLS handshakes on a loaded machine.
    // Each work conn echoes what its user sends.
    for (const w of await Promise.all([...pairingIds].map((pairingId) => workConn(pairingId)))) w.pipe(w);
    // Each user's FIN reaches its work conn, whose echo pipe ends it back.
    await Promise.all(
      users.map(async (u) => {
        const payload = randomBytes(64 * 1024);
        const back = readAll(u);
        u.end(payload);
        assert.equal(sha256(await back), sha256(payload));
      }),
    );
  });
}

for (const link of LINKS) describe(`pairing a UserConn with a work conn over the ${link} link`, () => pairingOver(link));
for (const link of LINKS) describe(`many users paired at once over the ${link} link`, () => manyUsersOver(link));
