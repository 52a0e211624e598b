import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { ReplaySubject } from 'rxjs';
import { loadGroupFile } from '../../src/config/index.js';
import { encodeFrame, loginProof, PROTOCOL_VERSION, type LoginRejectCode, type Message } from '../../src/protocol/index.js';
import type { CommonServer, ServerEvent } from '../../src/server/index.js';
import { startEchoApp, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer, type StartedServer } from '../helpers/in-process.js';
import { dialServer } from '../helpers/link.js';
import { connectTo, echoRoundTrip, closedWithin, readBytes, readFrame, sha256, waitForEvent } from '../helpers/net.js';

/**
 * Hostile and broken peers on the common port, one connection each, while two groups are
 * active: "target" (whose name and session the barrage uses) and "steady" (whose echo app
 * carries a live stream the whole time). Each bad connection must be closed and reported with
 * its own code; nothing else may notice.
 */
const HANDSHAKE_TIMEOUT_MS = 500;

let server: CommonServer;
let started: StartedServer;
let events: ReplaySubject<ServerEvent>;
const apps: TestApp[] = [];
const clients: Array<{ stop(): void }> = [];
const sockets: Socket[] = [];
const targetSecret = randomSecret();
const ports = new Map<string, number>();

before(async () => {
  const targetEcho = await startEchoApp();
  const steadyEcho = await startEchoApp();
  apps.push(targetEcho, steadyEcho);
  const config = makeConfigDir(
    [
      { name: 'target', secret: targetSecret, apps: [{ name: 'echo', localPort: targetEcho.port }] },
      { name: 'steady', secret: randomSecret(), apps: [{ name: 'echo', localPort: steadyEcho.port }] },
    ],
    // A generous heartbeat: this test is about bad peers, and a loaded machine must not
    // deactivate a group behind its back.
    { handshakeTimeout: `${HANDSHAKE_TIMEOUT_MS}ms`, heartbeatInterval: '500ms', heartbeatTimeout: '10s' },
  );
  started = await startServer(config);
  ({ server, events } = started);
  for (const name of ['target', 'steady']) {
    clients.push(startClient(loadGroupFile(config.groupFile(name)), started).client);
    const activated = await waitForEvent(events, (e) => e.type === 'group-activated' && e.group === name, `${name} activated`);
    if (activated.type === 'group-activated') ports.set(name, activated.apps[0]!.remotePort);
  }
});

after(async () => {
  for (const socket of sockets) socket.destroy();
  for (const client of clients) client.stop();
  await server?.close();
  for (const app of apps) await app.close();
});

/**
 * A raw connection to the common port, as a hostile peer would open it: past the TLS layer
 * (anyone can complete a handshake), so that its bytes reach the frame decoder; or, `raw`,
 * before it, where the first byte decides between TLS and a WebSocket upgrade.
 */
async function peer(raw = false): Promise<{ socket: Socket; remote: string }> {
  const socket = raw ? await connectTo(started.port) : await dialServer(started);
  sockets.push(socket);
  socket.on('error', () => {}); // the server may reset us; that is the point
  return { socket, remote: `127.0.0.1:${socket.localPort}` };
}

function frame(body: string | Buffer, length?: number): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const header = Buffer.alloc(4);
  header.writeUInt32BE(length ?? bytes.length, 0);
  return Buffer.concat([header, bytes]);
}

type Verdict = { type: 'bad-peer' | 'login-rejected'; code: string };

/** The first bad-peer or login-rejected event about this connection. */
async function verdictOn(remote: string): Promise<Verdict> {
  const event = await waitForEvent(events, (e) => (e.type === 'bad-peer' || e.type === 'login-rejected') && e.remote === remote, `a verdict on ${remote}`);
  assert.ok(event.type === 'bad-peer' || event.type === 'login-rejected');
  return { type: event.type, code: event.code };
}

/**
 * A stream through steady's echo app that runs for the whole barrage: chunk after chunk,
 * each echoed back; both directions hashed. `nextRound()` resolves after one more full echo.
 */
class SteadyTraffic {
  private readonly sentHash = createHash('sha256');
  private readonly receivedHash = createHash('sha256');
  private stopping = false;
  private waiters: Array<() => void> = [];
  rounds = 0;
  done!: Promise<{ sent: string; received: string }>;

  async start(appPort: number): Promise<void> {
    const user = await connectTo(appPort);
    sockets.push(user);
    this.done = this.run(user);
    this.done.catch(() => {});
  }

  private async run(user: Socket): Promise<{ sent: string; received: string }> {
    while (!this.stopping) {
      const chunk = randomBytes(32 * 1024);
      this.sentHash.update(chunk);
      user.write(chunk);
      this.receivedHash.update(await readBytes(user, chunk.length));
      this.rounds++;
      for (const wake of this.waiters.splice(0)) wake();
      await delay(2); // steady, not flat out: the machine is shared
    }
    user.end();
    return { sent: this.sentHash.digest('hex'), received: this.receivedHash.digest('hex') };
  }

  nextRound(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  stop(): Promise<{ sent: string; received: string }> {
    this.stopping = true;
    return this.done;
  }
}

/** The client's side of a refused login: a LoginResp carrying the code, never a session. */
async function expectRejection(socket: Socket, code: LoginRejectCode): Promise<void> {
  const answer = await readFrame(socket);
  assert.equal(answer.type, 'LoginResp');
  assert.equal(answer.error?.code, code);
  assert.equal(answer.sessionId, undefined);
}

function helloFor(group: string, clientId = 'intruder'): Message {
  return { type: 'Hello', version: PROTOCOL_VERSION, group, clientId };
}

interface Case {
  name: string;
  expect: Verdict;
  /** On a plain TCP conn, before any TLS handshake. */
  raw?: boolean;
  /** Sends the bad input on a fresh connection; may read what the server answers. */
  act(socket: Socket): Promise<void> | void;
}

const CASES: Case[] = [
  {
    name: 'a length prefix far over the maximum (no body ever sent)',
    expect: { type: 'bad-peer', code: 'FRAME_TOO_LARGE' },
    act: (socket) => void socket.write(frame(Buffer.alloc(0), 0xffff_fff0)),
  },
  {
    name: 'random bytes whose first four read as a length over the maximum',
    expect: { type: 'bad-peer', code: 'FRAME_TOO_LARGE' },
    act: (socket) => {
      const noise = randomBytes(4096);
      noise[0] = noise[0]! | 0x01; // the length is then at least 16 MiB
      socket.write(noise);
    },
  },
  {
    name: 'a small length followed by random bytes',
    expect: { type: 'bad-peer', code: 'BAD_JSON' },
    act: (socket) => void socket.write(frame(Buffer.concat([Buffer.from([0xff, 0xfe]), randomBytes(998)]))),
  },
  {
    name: 'a frame that is not JSON',
    expect: { type: 'bad-peer', code: 'BAD_JSON' },
    act: (socket) => void socket.write(frame('{"type":"Hello","version":1,')),
  },
  {
    name: 'a zero-length frame',
    expect: { type: 'bad-peer', code: 'BAD_MESSAGE' },
    act: (socket) => void socket.write(frame('')),
  },
  {
    name: 'JSON of an unknown message type',
    expect: { type: 'bad-peer', code: 'BAD_MESSAGE' },
    act: (socket) => void socket.write(frame('{"type":"StartWorkConn","proxyName":"ssh"}')),
  },
  {
    name: 'a Hello missing its group',
    expect: { type: 'bad-peer', code: 'BAD_MESSAGE' },
    act: (socket) => void socket.write(frame(JSON.stringify({ type: 'Hello', version: PROTOCOL_VERSION, clientId: 'x' }))),
  },
  {
    name: 'a valid Ping as the first frame',
    expect: { type: 'bad-peer', code: 'UNEXPECTED_MESSAGE' },
    act: (socket) => void socket.write(encodeFrame({ type: 'Ping', seq: 1 })),
  },
  {
    name: 'a valid LoginResp as the first frame',
    expect: { type: 'bad-peer', code: 'UNEXPECTED_MESSAGE' },
    act: (socket) => void socket.write(encodeFrame({ type: 'LoginResp', error: { code: 'POLICY', reason: 'x' } })),
  },
  {
    name: 'a truncated frame, then the peer closes',
    expect: { type: 'bad-peer', code: 'TRUNCATED_FRAME' },
    act: (socket) => void socket.end(encodeFrame(helloFor('target')).subarray(0, 10)),
  },
  {
    name: 'a NewWorkConn for a session that does not exist',
    expect: { type: 'bad-peer', code: 'BAD_WORK_CONN' },
    act: (socket) => void socket.write(encodeFrame({ type: 'NewWorkConn', sessionId: 'no-such-session', pairingId: 'p', proof: 'ab'.repeat(32) })),
  },
  {
    name: "a NewWorkConn with target's live session id but an unknown pairing id",
    expect: { type: 'bad-peer', code: 'BAD_WORK_CONN' },
    act: (socket) => {
      const sessionId = server.inUseGroup.get('target')!.sessionId;
      socket.write(encodeFrame({ type: 'NewWorkConn', sessionId, pairingId: 'guessed-pairing-id', proof: 'ab'.repeat(32) }));
    },
  },
  {
    name: 'a Hello for a group that is not registered',
    expect: { type: 'login-rejected', code: 'UNKNOWN_GROUP' },
    act: async (socket) => {
      socket.write(encodeFrame(helloFor('no-such-group')));
      await expectRejection(socket, 'UNKNOWN_GROUP');
    },
  },
  {
    name: 'a Hello with a protocol version from the future',
    expect: { type: 'login-rejected', code: 'VERSION_MISMATCH' },
    act: async (socket) => {
      socket.write(encodeFrame({ type: 'Hello', version: PROTOCOL_VERSION + 1, group: 'target', clientId: 'x' }));
      await expectRejection(socket, 'VERSION_MISMATCH');
    },
  },
  {
    name: 'a login to the live target group with the wrong secret',
    expect: { type: 'login-rejected', code: 'BAD_SECRET' },
    act: async (socket) => {
      socket.write(encodeFrame(helloFor('target')));
      const challenge = await readFrame(socket);
      assert.equal(challenge.type, 'Challenge');
      socket.write(encodeFrame({ type: 'Login', proof: loginProof(`not-${targetSecret}`, challenge.nonce, 'target', 'intruder'), apps: [] }));
      await expectRejection(socket, 'BAD_SECRET');
    },
  },
  {
    name: 'a Hello, then a Ping where the Login belongs',
    expect: { type: 'bad-peer', code: 'UNEXPECTED_MESSAGE' },
    act: (socket) => void socket.write(Buffer.concat([encodeFrame(helloFor('target')), encodeFrame({ type: 'Ping', seq: 1 })])),
  },
  {
    name: 'a Hello, then an oversized frame',
    expect: { type: 'bad-peer', code: 'FRAME_TOO_LARGE' },
    act: (socket) => void socket.write(Buffer.concat([encodeFrame(helloFor('target')), frame(Buffer.alloc(0), 1 << 30)])),
  },
  {
    name: 'a connection that never sends anything',
    expect: { type: 'bad-peer', code: 'HANDSHAKE_TIMEOUT' },
    act: () => {},
  },
  {
    name: 'a Hello, then silence instead of a Login',
    expect: { type: 'bad-peer', code: 'HANDSHAKE_TIMEOUT' },
    act: (socket) => void socket.write(encodeFrame(helloFor('target'))),
  },
  {
    name: 'a conn that sends nothing, not even a TLS hello',
    expect: { type: 'bad-peer', code: 'TLS_HANDSHAKE' },
    raw: true,
    act: () => {},
  },
  {
    // Cut by the first bytes' deadline while the upgrade still waits for its head: the wait
    // failing on the cut is the same fault, not a second line.
    name: 'a WebSocket upgrade whose head stops halfway',
    expect: { type: 'bad-peer', code: 'TLS_HANDSHAKE' },
    raw: true,
    act: (socket) => void socket.write('GET /_ntp/ws HTTP/1.1\r\nHost: commonserver\r\nUpgrade: websocket\r\n'),
  },
];

describe('bad peers on the common port', () => {
  const traffic = new SteadyTraffic();
  const sessions = new Map<string, string>();

  before(async () => {
    for (const name of ['target', 'steady']) sessions.set(name, server.inUseGroup.get(name)!.sessionId);
    await traffic.start(ports.get('steady')!);
    await traffic.nextRound();
  });

  for (const badCase of CASES) {
    test(`${badCase.name} → ${badCase.expect.type} ${badCase.expect.code}`, { timeout: 10_000 }, async () => {
      const { socket, remote } = await peer(badCase.raw);
      await badCase.act(socket);
      assert.deepEqual(await verdictOn(remote), badCase.expect);
      await closedWithin(socket); // the server closed (or ended) this connection
      // The steady stream completed a full echo after this case.
      await traffic.nextRound();
    });
  }

  test('a probe that connects and closes without a frame is closed at once, without a verdict', { timeout: 10_000 }, async () => {
    const { socket, remote } = await peer();
    socket.end();
    await closedWithin(socket);
    // Left half-open, the conn would only be closed by the handshake deadline, which reports it.
    const seen: ServerEvent[] = [];
    events.subscribe((event) => seen.push(event)).unsubscribe();
    assert.deepEqual(
      seen.filter((e) => 'remote' in e && e.remote === remote),
      [],
    );
    await traffic.nextRound();
  });

  test('after the barrage: both groups kept their sessions and still carry traffic', { timeout: 15_000 }, async () => {
    const { sent, received } = await traffic.stop();
    assert.equal(received, sent, 'the steady stream came back intact');
    assert.ok(traffic.rounds > CASES.length);

    for (const name of ['target', 'steady']) {
      assert.equal(server.inUseGroup.get(name)?.sessionId, sessions.get(name), `${name} kept its session`);
      const payload = randomBytes(128 * 1024);
      assert.equal(sha256(await echoRoundTrip(ports.get(name)!, payload)), sha256(payload), `${name} echo`);
    }
    const seen: ServerEvent[] = [];
    events.subscribe((event) => seen.push(event)).unsubscribe();
    assert.deepEqual(
      seen.filter((e) => e.type === 'group-deactivated' || e.type === 'heartbeat-timeout'),
      [],
    );
    // Exactly one verdict per bad connection, none about the real clients or the probe.
    const verdicts = seen.filter((e) => e.type === 'bad-peer' || e.type === 'login-rejected');
    assert.equal(verdicts.length, CASES.length, verdicts.map((e) => JSON.stringify(e)).join('\n'));
    assert.equal(new Set(verdicts.map((e) => (e as { remote: string }).remote)).size, CASES.length);
  });
});
