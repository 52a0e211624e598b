import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { filter, firstValueFrom, take, timeout, toArray } from 'rxjs';
import { after, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import { encodeFrame, PROTOCOL_VERSION, type Message } from '../../src/protocol/index.js';
import type { ServerEvent } from '../../src/server/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { connectTo, echoRoundTrip, sha256, waitForEvent } from '../helpers/net.js';
import { connectFrom, endedByServer, rawLogin } from '../helpers/raw-peer.js';
import { eventually } from '../helpers/eventually.js';

const LIMITS = { maxPendingUsersPerApp: 2, maxHandshakes: 1024, maxHandshakesPerSource: 50 };

async function hardenedServer(name: string, { tls = false } = {}) {
  const echo = await startEchoApp();
  const secret = randomSecret();
  const config = makeConfigDir([{ name, secret, apps: [{ name: 'echo', localPort: echo.port }] }], {
    handshakeTimeout: '1s',
    heartbeatInterval: '1s',
    heartbeatTimeout: '30s',
    tls,
    extra: { limits: LIMITS },
  });
  const started = await startServer(config);
  after(async () => {
    await started.server.close();
    await echo.close();
  });
  return { ...started, config, secret };
}

test('handshake deadline: a silent connection and a stalled frame are closed, with a log line', { timeout: 15_000 }, async () => {
  const { port, events } = await hardenedServer('deadline');
  const silent = await connectFrom(port);
  const stalled = await connectFrom(port);
  stalled.write(encodeFrame({ type: 'Hello', version: PROTOCOL_VERSION, group: 'deadline', clientId: 'slow' }).subarray(0, 10));
  const started = Date.now();
  await Promise.all([endedByServer(silent), endedByServer(stalled)]);
  assert.ok(Date.now() - started >= 800, 'closed before the deadline');
  for (const socket of [silent, stalled]) {
    const remote = `127.0.0.1:${socket.localPort}`;
    await waitForEvent(events, (e) => e.type === 'bad-peer' && e.remote === remote && e.code === 'HANDSHAKE_TIMEOUT', `deadline line for ${remote}`);
    socket.destroy();
  }
});

test('pending users per app are capped while no work conn comes', { timeout: 15_000 }, async () => {
  const { port, events, secret } = await hardenedServer('pending');
  // A session that never answers ReqWorkConn: every user is held.
  const session = await rawLogin(port, { group: 'pending', clientId: 'mute', secret });
  const appPort = session.resp.apps![0]!.remotePort;
  const held = [await connectTo(appPort), await connectTo(appPort)];
  await waitForEvent(events, (e) => e.type === 'work-conn-requested' && e.pairingId !== undefined, 'first hold');
  const extra = await connectTo(appPort);
  await endedByServer(extra);
  const refused = await waitForEvent(events, (e) => e.type === 'user-conn-refused', 'refusal');
  assert.match(refused.type === 'user-conn-refused' ? refused.reason : '', /2 users already wait for a work conn/);
  for (const socket of [...held, extra]) socket.destroy();
  session.channel.destroy();
});

/** One bad peer: what it sends, from where. Each must be closed and named in a log line. */
interface BadPeer {
  kind: string;
  from: string;
  bytes: Buffer;
  /** End our side after sending (else it waits for the deadline, half-open). */
  end: boolean;
}

function frame(message: Message): Buffer {
  return encodeFrame(message);
}

function rawFrame(body: string): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(Buffer.byteLength(body), 0);
  return Buffer.concat([head, Buffer.from(body)]);
}

function badPeers(count: number): BadPeer[] {
  const hello = frame({ type: 'Hello', version: PROTOCOL_VERSION, group: 'steady', clientId: 'fuzzer' });
  const makers: ((i: number) => Omit<BadPeer, 'from'>)[] = [
    () => ({ kind: 'random bytes', bytes: randomBytes(1 + Math.floor(Math.random() * 4000)), end: Math.random() < 0.5 }),
    () => ({ kind: 'huge length', bytes: Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]), end: false }),
    () => ({ kind: 'just over the limit', bytes: Buffer.from([0, 1, 0, 1]), end: false }),
    () => ({ kind: 'truncated frame', bytes: hello.subarray(0, hello.length - 3), end: Math.random() < 0.5 }),
    () => ({ kind: 'bad JSON', bytes: rawFrame('{"type":"Hello",'), end: false }),
    () => ({ kind: 'unknown type', bytes: rawFrame('{"type":"Gimme"}'), end: false }),
    () => ({ kind: 'Ping first', bytes: frame({ type: 'Ping', seq: 1 }), end: false }),
    () => ({
      kind: 'LoginResp first',
      bytes: frame({ type: 'LoginResp', sessionId: 'x', heartbeatIntervalMs: 1, heartbeatTimeoutMs: 2, apps: [] }),
      end: false,
    }),
    () => ({ kind: 'Hello then Ping', bytes: Buffer.concat([hello, frame({ type: 'Ping', seq: 1 })]), end: false }),
    () => ({ kind: 'forged join', bytes: frame({ type: 'NewWorkConn', sessionId: 'guess', pairingId: 'guess', proof: '00' }), end: false }),
    () => ({ kind: 'half-open, silent', bytes: Buffer.alloc(0), end: false }),
  ];
  const sources = ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6'];
  return Array.from({ length: count }, (_, i) => ({ ...makers[i % makers.length]!(i), from: sources[i % sources.length]! }));
}

test('live fuzz of the common port: every bad peer is closed and logged, memory stays bounded, another group keeps flowing', { timeout: 120_000 }, () =>
  liveFuzz({ tls: false, total: 2200, flood: 1000 }),
);

test('live fuzz of the common port with TLS on: the same garbage never gets past the TLS layer, and nothing is left behind', { timeout: 120_000 }, () =>
  liveFuzz({ tls: true, total: 440, flood: 300 }),
);

/**
 * Bad peers in batches from four loopback sources, then a flood of half-open connections from
 * a fifth, while a real client of another group relays echo traffic.
 */
async function liveFuzz({ tls, total: TOTAL, flood: FLOOD }: { tls: boolean; total: number; flood: number }): Promise<void> {
  const hardened = await hardenedServer(tls ? 'steady-tls' : 'steady', { tls });
  const { server, port, events, config } = hardened;
  const badPeerEvents = new Map<string, string>();
  events.subscribe((e: ServerEvent) => {
    if (e.type === 'bad-peer') badPeerEvents.set(e.remote, e.code);
  });
  const group = tls ? 'steady-tls' : 'steady';
  const { client, events: clientEvents } = startClient(loadGroupFile(config.groupFile(group)), hardened);
  after(() => client.stop());
  const accepted = await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'steady login');
  const echoPort = accepted.type === 'login-accepted' ? accepted.apps[0]!.remotePort : 0;
  const rssBefore = process.memoryUsage().rss;

  // The steady group's users keep going for the whole fuzz.
  let fuzzing = true;
  let roundTrips = 0;
  const traffic = (async () => {
    while (fuzzing && roundTrips < 500) {
      const payload = randomBytes(32 * 1024);
      const back = await echoRoundTrip(echoPort, payload);
      assert.equal(sha256(back), sha256(payload), `round trip ${roundTrips} corrupted`);
      roundTrips++;
    }
  })();

  const BATCH = 220;
  let maxPending = 0;
  const peers = badPeers(TOTAL);
  const closed: { socket: Socket; key: string; kind: string }[] = [];
  for (let start = 0; start < TOTAL; start += BATCH) {
    const batch = await Promise.all(
      peers.slice(start, start + BATCH).map(async (peer) => {
        const socket = await connectFrom(port, peer.from);
        const key = `${socket.localAddress}:${socket.localPort}`; // the server names us by this
        if (peer.bytes.length > 0) socket.write(peer.bytes);
        if (peer.end) socket.end();
        return { socket, key, kind: peer.kind };
      }),
    );
    maxPending = Math.max(maxPending, server.pendingHandshakes);
    assert.ok(server.pendingHandshakes <= LIMITS.maxHandshakes);
    await Promise.all(batch.map(({ socket }) => endedByServer(socket)));
    closed.push(...batch);
  }

  // Thousands of half-open connections at once from one source: the gate admits its cap
  // (each then waits out the deadline) and refuses the rest at accept.
  const flood = await Promise.all(
    Array.from({ length: FLOOD }, async () => {
      const socket = await connectFrom(port, '127.0.0.7');
      return { socket, key: `${socket.localAddress}:${socket.localPort}`, kind: 'half-open flood' };
    }),
  );
  maxPending = Math.max(maxPending, server.pendingHandshakes);
  assert.ok(server.pendingHandshakes <= LIMITS.maxHandshakesPerSource + 1, `${server.pendingHandshakes} pending from one source`);
  await Promise.all(flood.map(({ socket }) => endedByServer(socket)));
  closed.push(...flood);
  fuzzing = false;
  await traffic;

  // Every bad peer got its own line naming it.
  const unnamed = closed.filter(({ key }) => !badPeerEvents.has(key));
  assert.equal(unnamed.length, 0, `${unnamed.length} bad peers closed without a log line: ${[...new Set(unnamed.map(({ kind }) => kind))].join(', ')}`);
  for (const { socket } of closed) socket.destroy();
  // Nothing is left half-registered.
  await eventually(() => server.pendingHandshakes === 0, { message: 'every handshake slot to be freed' });
  assert.ok(roundTrips > 0, 'the steady group had no traffic during the fuzz');
  // And the steady group still works afterwards.
  assert.equal((await echoRoundTrip(echoPort, Buffer.from('still here'))).toString(), 'still here');

  const codes = new Map<string, number>();
  for (const code of badPeerEvents.values()) codes.set(code, (codes.get(code) ?? 0) + 1);
  const rssAfter = process.memoryUsage().rss;
  console.log(
    `live fuzz${tls ? ' (TLS)' : ''}: ${TOTAL} bad connections from 4 loopback sources and ${FLOOD} half-open ones from a fifth, all closed and logged ` +
      `(${[...codes].map(([code, n]) => `${code} ${n}`).join(', ')}); at most ${maxPending} pending handshakes; ` +
      `${roundTrips} steady echo round trips meanwhile; rss ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB (test process, server included)`,
  );
}

test('the per-source handshake cap spares the address of a logged-in client (its work-conn bursts)', { timeout: 30_000 }, async () => {
  const echo = await startEchoApp();
  const secret = randomSecret();
  const config = makeConfigDir([{ name: 'burst', secret, apps: [{ name: 'echo', localPort: echo.port }] }], {
    handshakeTimeout: '5s',
    heartbeatInterval: '1s',
    heartbeatTimeout: '30s',
    // Hand-driven peers from chosen source addresses speak plain TCP: this is about the cap.
    tls: false,
    extra: { limits: { ...LIMITS, maxHandshakesPerSource: 5 } },
  });
  const { server, port, events } = await startServer(config);
  after(async () => {
    await server.close();
    await echo.close();
  });
  const session = await rawLogin(port, { group: 'burst', secret, localAddress: '127.0.0.1' });
  assert.ok(session.resp.sessionId);
  // Ten connections still 'handshaking' from the client's address, ten from a stranger's.
  const fromClient = await Promise.all(Array.from({ length: 10 }, () => connectFrom(port, '127.0.0.1')));
  const fromStranger = await Promise.all(Array.from({ length: 10 }, () => connectFrom(port, '127.0.0.8')));
  const capped = await firstValueFrom(
    events.pipe(
      filter((e) => e.type === 'bad-peer' && e.code === 'TOO_MANY_HANDSHAKES'),
      take(5),
      toArray(),
      timeout(10_000),
    ),
  );
  assert.ok(
    capped.every((e) => e.type === 'bad-peer' && e.remote.startsWith('127.0.0.8:')),
    JSON.stringify(capped),
  );
  // All ten from the client's address are in (and nobody else was refused).
  await eventually(() => server.pendingHandshakes === 15, { message: 'ten client-address conns and five stranger conns pending' });
  let refusedTotal = 0;
  events
    .subscribe((e) => {
      if (e.type === 'bad-peer' && e.code === 'TOO_MANY_HANDSHAKES') refusedTotal++;
    })
    .unsubscribe();
  assert.equal(refusedTotal, 5);
  for (const socket of [...fromClient, ...fromStranger]) socket.destroy();
  session.channel.destroy();
});
