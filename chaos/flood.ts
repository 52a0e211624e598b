import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { percentile, rssBytes, sampleRss, track } from '../bench/proc.js';
import { startEchoApp, unusedPort } from '../test/helpers/apps.js';
import type { Results } from './checks.js';
import { withDeadline } from './deadline.js';
import { FLOOD_SECRET_ENV } from './flooder.js';
import { CHAOS_GROUP, openTunnel, type Tunnel } from './tunnel.js';

const FLOOD_GROUP = 'flood';
const flooderBin = join(dirname(fileURLToPath(import.meta.url)), 'flooder.js');
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
      const sampler = sampleRss([tunnel.server.pid]);
      const flooder = startFlooder(tunnel, seconds);
      await withDeadline(flooder.flooding, 15_000, 'flood login');
      const during = await probeEcho(port, seconds * 1000);
      const flood = await flooder.done;
      const [peak] = sampler.stop();
      // A server whose loop was starved may notice a silent client only after the flood.
      await sleep(2000);
      const lost =
        tunnel.client.lines.slice(linesBefore.client).filter((line) => line.includes(`group ${CHAOS_GROUP} lost`)).length +
        tunnel.server.lines.slice(linesBefore.server).filter((line) => line.includes(`group ${CHAOS_GROUP} deactivated`)).length;

      results.figure(
        scenario,
        'flood: Pings written',
        flood.frames,
        '',
        `${seconds} s, the flooder never reads; heartbeat of the other group ${HEARTBEAT.heartbeatInterval} / ${HEARTBEAT.heartbeatTimeout}`,
      );
      results.figure(
        scenario,
        'flood: conn closed by the server after',
        flood.closedAfterMs / 1000,
        's',
        'NaN: the server kept the flooder connected to the end',
      );
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

interface FloodFigures {
  frames: number;
  closedAfterMs: number;
}

/**
 * The flooder runs in a process of its own, so that its TLS work does not delay the probes'
 * timing in this one: the latency measured is the server's. The secret goes by environment,
 * which other users of the machine cannot read, not by argument. `flooding` resolves once it
 * is logged in and writing.
 */
function startFlooder(tunnel: Tunnel, seconds: number): { flooding: Promise<void>; done: Promise<FloodFigures> } {
  const child = track(
    spawn(process.execPath, [flooderBin, String(tunnel.commonPort), tunnel.fingerprint, FLOOD_GROUP, String(seconds * 1000)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, [FLOOD_SECRET_ENV]: tunnel.secrets.get(FLOOD_GROUP)! },
    }),
  );
  let out = '';
  let onFlooding: () => void = () => {};
  const flooding = new Promise<void>((resolve) => (onFlooding = resolve));
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    if (out.startsWith('flooding\n')) onFlooding();
  });
  const done = (async (): Promise<FloodFigures> => {
    try {
      const [code] = (await withDeadline(once(child, 'exit'), seconds * 1000 + 15_000, 'flooder')) as [number | null];
      if (code !== 0) throw new Error(`flooder exited with ${code}`);
    } finally {
      child.kill('SIGKILL');
    }
    const figures = JSON.parse(out.slice('flooding\n'.length)) as { frames: number; closedAfterMs: number | null };
    // JSON has no NaN: null says the server never closed the flooder's conn.
    return { frames: figures.frames, closedAfterMs: figures.closedAfterMs ?? Number.NaN };
  })();
  // Awaited by the caller once flooding; if the login fails first, this keeps the rejection handled.
  done.catch(() => {});
  return { flooding: Promise.race([flooding, done.then(() => {})]), done };
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
