import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { encodeMuxFrame, encodeMuxOpen, MUX_STREAM_WINDOW, MuxDecoder, MuxFrameType, randomId } from '../../src/protocol/index.js';
import { startApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestGroup } from '../helpers/configs.js';
import { startHostileServer, type HostileServer } from '../helpers/hostile-server.js';
import { connectTo } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess } from '../helpers/processes.js';
import { cpuSeconds, rssMb, watchRss } from '../helpers/proc-usage.js';
import { rawLogin, rawWorkConn } from '../helpers/raw-client.js';
import { eventually } from '../helpers/eventually.js';

/**
 * The mux conn against a peer that logs in properly and then misbehaves, in both directions: a
 * scripted server against a real groupclient, a scripted client against a real commonserver.
 * Each case bounds the real process's memory (RSS, from /proc) and CPU time.
 */
const processes = new ProcessSet();
const apps: TestApp[] = [];
const hostiles: HostileServer[] = [];
const sockets: Socket[] = [];
after(async () => {
  for (const socket of sockets) socket.destroy();
  await processes.stopAll();
  await Promise.all([...apps.map((app) => app.close()), ...hostiles.map((server) => server.close())]);
});

/** What a mux peer's frames said, by stream. */
function muxFrames(socket: Socket): { opened: number[]; resets: Map<number, string> } {
  const seen = { opened: [] as number[], resets: new Map<number, string>() };
  const decoder = new MuxDecoder({
    onOpen: (id) => seen.opened.push(id),
    onData: () => {},
    onFin: () => {},
    onReset: (id, reason) => seen.resets.set(id, reason),
    onWindow: () => {},
  });
  // A work conn handed over raw was paused: a 'data' listener alone does not start it again.
  socket.on('data', (bytes: Buffer) => decoder.push(bytes)).resume();
  return seen;
}

/** `bytes` of 1-byte DATA frames for each stream, interleaved, written as fast as the peer reads them. */
async function tinyFrames(socket: Socket, ids: number[], bytes: number): Promise<void> {
  const round = Buffer.concat(ids.map((id) => encodeMuxFrame(MuxFrameType.data, id, Buffer.of(0x2a))));
  const batch = Buffer.concat(Array.from({ length: 4096 }, () => round));
  for (let sent = 0; sent < bytes && !socket.destroyed; sent += 4096) {
    if (!socket.write(batch)) await drainedOrClosed(socket);
  }
}

function drainedOrClosed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done).off('close', done);
      resolve();
    };
    socket.on('drain', done).on('close', done);
  });
}

/** How much process `pid` grew (peak RSS over its RSS before) and the CPU time it spent while `action` ran. */
async function usageWhile(pid: number, action: () => Promise<void>): Promise<{ grownMb: number; cpu: number; line: string }> {
  const before = rssMb(pid);
  const rss = watchRss(pid);
  const cpuBefore = cpuSeconds(pid);
  await action();
  const cpu = cpuSeconds(pid) - cpuBefore;
  rss.stop();
  return { grownMb: rss.maxMb - before, cpu, line: `RSS ${before.toFixed(0)} → max ${rss.maxMb.toFixed(0)} MB, CPU ${cpu.toFixed(2)} s` };
}

/** An app that accepts and never reads: its conns hold whatever is sent to them. */
async function stalledApp(): Promise<TestApp> {
  const app = await startApp((socket) => socket.pause());
  apps.push(app);
  return app;
}

/** A groupclient (its process) logged in to `hostile`, with its one app at `appPort`. */
async function clientOf(hostile: HostileServer, appPort: number, extraArgs: string[] = []) {
  const group: TestGroup = { name: 'victim', secret: randomSecret(), apps: [{ name: 'app', localPort: appPort }] };
  const config = makeConfigDir([group]);
  return processes.add(
    startGroupClientProcess({ groupsDir: config.groupsDir, group: 'victim', serverPort: hostile.port, link: { fingerprint: hostile.fingerprint }, extraArgs }),
  );
}

/** A hostile server that asks for the mux conn at login and hands it to the test. */
async function muxHostileServer(): Promise<{ hostile: HostileServer; muxConn: Promise<Socket> }> {
  let handOver!: (socket: Socket) => void;
  const muxConn = new Promise<Socket>((resolve) => (handOver = resolve));
  const pairingId = randomId();
  const hostile = await startHostileServer((channel) => channel.send({ type: 'ReqMuxConn', pairingId }), {
    mux: true,
    heartbeatIntervalMs: 1000,
    heartbeatTimeoutMs: 30_000,
    onWorkConn: (socket, join) => {
      socket.on('error', () => {});
      if (join.pairingId === pairingId) handOver(socket);
    },
  });
  hostiles.push(hostile);
  return { hostile, muxConn };
}

const start = (i: number) => ({ type: 'StartWorkConn' as const, app: 'app', pairingId: `p${i}` });

describe('a hostile server on the mux conn, against a real groupclient', () => {
  test('20,000 OPENs: at most --max-mux-streams local dials, the rest refused with an RST and reported in one line', { timeout: 60_000 }, async (t) => {
    const app = await stalledApp();
    const { hostile, muxConn } = await muxHostileServer();
    const client = await clientOf(hostile, app.port, ['--max-mux-streams', '64']);
    const conn = await muxConn;
    const seen = muxFrames(conn);
    const rss = watchRss(client.pid);
    const cpuBefore = cpuSeconds(client.pid);
    const opens = Array.from({ length: 20_000 }, (_, i) => encodeMuxOpen(i + 1, start(i)));
    for (let i = 0; i < opens.length; i += 1000) conn.write(Buffer.concat(opens.slice(i, i + 1000)));
    await eventually(() => seen.resets.size >= 20_000 - 64, { message: 'an RST for every OPEN past the cap', timeout: 40_000 }).catch((error: Error) => {
      throw new Error(`${error.message}: ${seen.resets.size} RSTs, ${app.accepted} dials; client said:\n${client.output}`);
    });
    await eventually(() => app.accepted >= 64, { message: 'the 64 local dials', timeout: 10_000 });
    const cpu = cpuSeconds(client.pid) - cpuBefore;
    rss.stop();
    t.diagnostic(`client: ${app.accepted} local dials, ${seen.resets.size} RSTs, RSS max ${rss.maxMb.toFixed(0)} MB, CPU ${cpu.toFixed(2)} s`);
    assert.equal(app.accepted, 64, 'local dials past the cap');
    assert.match(seen.resets.get(65) ?? '', /64 streams are open/);
    assert.equal((client.output.match(/refused; further refusals/g) ?? []).length, 1, client.output);
    assert.ok(rss.maxMb < 200, `client RSS max ${rss.maxMb.toFixed(0)} MB`);
    assert.ok(cpu < 10, `client CPU ${cpu.toFixed(2)} s for 20,000 OPENs`);
    assert.ok(client.running);
  });

  test('1-byte DATA frames to local apps that never read: the client holds about a window per stream', { timeout: 90_000 }, async (t) => {
    const app = await stalledApp();
    const { hostile, muxConn } = await muxHostileServer();
    const client = await clientOf(hostile, app.port);
    const conn = await muxConn;
    const ids = [1, 2, 3, 4];
    conn.write(Buffer.concat(ids.map((id) => encodeMuxOpen(id, start(id)))));
    await eventually(() => app.accepted === ids.length, { message: 'the local dials' });
    // A whole 1 MiB window (the largest any receiver grants) per stream, one byte a frame.
    const { grownMb, cpu, line } = await usageWhile(client.pid, () => tinyFrames(conn, ids, MUX_STREAM_WINDOW));
    t.diagnostic(`client ${line} for ${ids.length} streams`);
    assert.ok(grownMb < 48, `client RSS grew ${grownMb.toFixed(0)} MB for ${ids.length} streams of 1-byte frames`);
    assert.ok(cpu < 30, `client CPU ${cpu.toFixed(2)} s`);
    assert.ok(client.running);
  });
});

describe('a hostile client on the mux conn, against a real commonserver', () => {
  test('1-byte DATA frames to users who never read: the server holds about a window per user, and serves another user', { timeout: 90_000 }, async (t) => {
    const secret = randomSecret();
    const config = makeConfigDir([{ name: 'host', secret, apps: [{ name: 'app', localPort: await unusedPort() }] }], {
      // The scripted client sends no pings.
      heartbeatInterval: '5s',
      heartbeatTimeout: '60s',
    });
    const { process: server, port, fingerprint } = await startCommonServerProcess(config.serverFile);
    processes.add(server);
    const link = { port, ...(fingerprint ? { fingerprint } : {}) };
    const session = await rawLogin(link, 'host', secret, { apps: [{ name: 'app', remotePort: 0 }], mux: true });
    const appPort = session.resp.apps![0]!.remotePort;
    const { pairingId } = await session.channel.next('ReqMuxConn');
    const conn = await rawWorkConn(link, session, pairingId, secret);
    sockets.push(conn);
    const seen = muxFrames(conn);
    const users = await Promise.all(Array.from({ length: 4 }, () => connectTo(appPort)));
    for (const user of users) sockets.push(user.on('error', () => {}).pause());
    await eventually(() => seen.opened.length === users.length, { message: 'an OPEN per user' });
    const { grownMb, cpu, line } = await usageWhile(server.pid, () => tinyFrames(conn, seen.opened, MUX_STREAM_WINDOW));
    t.diagnostic(`server ${line} for ${users.length} users`);
    assert.ok(grownMb < 48, `server RSS grew ${grownMb.toFixed(0)} MB for ${users.length} users of 1-byte frames`);
    assert.ok(cpu < 30, `server CPU ${cpu.toFixed(2)} s`);
    // The session carries on: a new user still gets its stream.
    sockets.push((await connectTo(appPort)).on('error', () => {}));
    await eventually(() => seen.opened.length === users.length + 1, { message: 'an OPEN for the next user' });
    assert.ok(server.running);
    session.channel.destroy();
  });
});
