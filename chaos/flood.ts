import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { percentile, rssBytes, sampleRss } from '../bench/proc.js';
import { startEchoApp, unusedPort } from '../test/helpers/apps.js';
import { ControlChannel, dialCommon } from '../src/net/index.js';
import { encodeFrame, loginProof, PROTOCOL_VERSION } from '../src/protocol/index.js';
import type { Results } from './checks.js';
import { withDeadline } from './deadline.js';
import { CHAOS_GROUP, openTunnel, type Tunnel } from './tunnel.js';

const FLOOD_GROUP = 'flood';
const PROBE_DEADLINE_MS = 5000;
const PROBE_PAUSE_MS = 20;
const HEARTBEAT = { heartbeatInterval: '1s', heartbeatTimeout: '5s' };

/**
 * Scenario 4: a client that knows a group's secret logs in, then writes Pings as fast as the
 * server takes them and never reads a Pong. The server must hold its memory, and another
 * group's users and session must not notice.
 */
export async function pingFlood(results: Results, scenario: string, seconds: number): Promise<void> {
  const echo = await startEchoApp();
  try {
    const tunnel = await openTunnel({ apps: { echo: echo.port }, otherGroups: { [FLOOD_GROUP]: { idle: await unusedPort() } }, ...HEARTBEAT });
    try {
      const port = tunnel.ports.get('echo')!;
      const rest = rssBytes(tunnel.server.pid);
      const before = await probeEcho(port, 1000);
      const linesBefore = { server: tunnel.server.lines.length, client: tunnel.client.lines.length };
      const flooder = await floodLogin(tunnel);
      const sampler = sampleRss([tunnel.server.pid]);
      const [flood, during] = await Promise.all([floodPings(flooder, seconds * 1000), probeEcho(port, seconds * 1000)]);
      const [peak] = sampler.stop();
      // A server whose loop was starved may notice a silent client only after the flood.
      await sleep(2000);
      const lost =
        tunnel.client.lines.slice(linesBefore.client).filter((line) => line.includes(`group ${CHAOS_GROUP} lost`)).length +
        tunnel.server.lines.slice(linesBefore.server).filter((line) => line.includes(`group ${CHAOS_GROUP} deactivated`)).length;

      results.figure(scenario, 'flood: Pings written', flood.frames, '', `${seconds} s, the flooder never reads; heartbeat of the other group ${HEARTBEAT.heartbeatInterval} / ${HEARTBEAT.heartbeatTimeout}`);
      results.figure(scenario, 'flood: conn closed by the server after', flood.closedAfterMs / 1000, 's', 'NaN: the server kept the flooder connected to the end');
      results.figure(scenario, 'commonserver RSS at rest', rest / 2 ** 20, 'MB');
      results.atMost(scenario, 'commonserver RSS peak', peak! / 2 ** 20, 300, 'MB');
      results.figure(scenario, 'other group: echo p99 before the flood', before.p99Ms, 'ms');
      results.atMost(scenario, `other group: echo p99 during the flood (${during.count} users)`, during.p99Ms, 500, 'ms');
      results.atMost(scenario, 'other group: users without their echo', during.failed, 0, '');
      results.atMost(scenario, 'other group: session lost', lost, 0, '');
    } finally {
      await tunnel.close();
    }
  } finally {
    await echo.close();
  }
}

/** Logs in as the flood group over TLS with the pinned fingerprint, as the real client would. */
async function floodLogin(tunnel: Tunnel): Promise<Socket> {
  const secret = tunnel.secrets.get(FLOOD_GROUP)!;
  const socket = await dialCommon({ host: '127.0.0.1', port: tunnel.commonPort }, { kind: 'tls', fingerprint: tunnel.fingerprint }, 5000);
  socket.on('error', () => {});
  const channel = new ControlChannel(socket);
  const clientId = 'chaos-flooder';
  const challenge = channel.next('Challenge');
  channel.send({ type: 'Hello', version: PROTOCOL_VERSION, group: FLOOD_GROUP, clientId });
  const { nonce } = await withDeadline(challenge, 5000, 'flood login');
  const answer = channel.next('LoginResp');
  channel.send({ type: 'Login', proof: loginProof(secret, nonce, FLOOD_GROUP, clientId), apps: [] });
  const resp = await withDeadline(answer, 5000, 'flood login');
  if (resp.sessionId === undefined) throw new Error(`flood login refused: ${resp.error?.code}`);
  // Never read again: every Pong (and every request for work conns) piles up on the server.
  socket.pause();
  return socket;
}

/** Writes Pings until `ms` passed or the server closed the conn, waiting only when the kernel is full. */
async function floodPings(socket: Socket, ms: number): Promise<{ frames: number; closedAfterMs: number }> {
  const perBatch = 512;
  const batch = Buffer.concat(Array.from({ length: perBatch }, (_, seq) => encodeFrame({ type: 'Ping', seq })));
  const started = Date.now();
  const end = started + ms;
  let frames = 0;
  let closedAfterMs = Number.NaN;
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closedAfterMs = Date.now() - started;
      resolve();
    }),
  );
  while (Date.now() < end && Number.isNaN(closedAfterMs)) {
    frames += perBatch;
    if (socket.write(batch)) {
      // Yield now and then so that the probes sharing this process keep their timing.
      if (frames % (perBatch * 16) === 0) await sleep(0);
      continue;
    }
    const waiting = new AbortController();
    const quiet = (): void => {};
    await Promise.race([once(socket, 'drain', { signal: waiting.signal }).catch(quiet), closed, sleep(end - Date.now(), undefined, { signal: waiting.signal }).catch(quiet)]);
    waiting.abort();
  }
  socket.destroy();
  return { frames, closedAfterMs };
}

/** Users one after another for `ms`, each sending a byte and timing its echo. */
async function probeEcho(port: number, ms: number): Promise<{ count: number; failed: number; p99Ms: number }> {
  const latencies: number[] = [];
  let failed = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const started = performance.now();
    const socket = connect({ host: '127.0.0.1', port });
    try {
      await withDeadline(
        (async () => {
          await once(socket, 'connect');
          socket.write('x');
          await once(socket, 'data');
        })(),
        PROBE_DEADLINE_MS,
        'probe',
      );
      latencies.push(performance.now() - started);
    } catch {
      failed++;
      latencies.push(PROBE_DEADLINE_MS);
    } finally {
      socket.on('error', () => {});
      socket.destroy();
    }
    await sleep(PROBE_PAUSE_MS);
  }
  latencies.sort((a, b) => a - b);
  return { count: latencies.length, failed, p99Ms: percentile(latencies, 99) };
}
