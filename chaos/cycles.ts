import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { rssBytes } from '../bench/proc.js';
import { startEchoApp } from '../test/helpers/apps.js';
import type { Results } from './checks.js';
import { waitUntil, withDeadline } from './deadline.js';
import { fdCount, openTunnel } from './tunnel.js';

/** Users at once: enough to keep both cores busy, few enough that none waits on a cap. */
const WORKERS = 16;
const CYCLE_DEADLINE_MS = 10_000;
/**
 * Descriptors either process may hold above its start once the run settled: pooled work conns
 * lost to aborted users are replaced in the background, so a few may be mid-replacement when
 * sampled. A leak of even one descriptor per thousand cycles exceeds this over 20,000 cycles.
 */
const FD_MARGIN = 8;
/**
 * RSS growth allowed between two windows of the run: the mean over the cycles 40–50 % of the
 * way and over the last 10 %. Means, because a collected heap swings by tens of MB between
 * two samples; two windows under the same load, because RSS at rest is not comparable with
 * RSS under load, nor right after with minutes later. 16 MB over half the run (10,000 cycles
 * by default) is 1.6 KB per cycle: a per-user record kept forever (a pairing, a listener, a
 * buffer) costs more than that.
 */
const RSS_GROWTH_BOUND_MB = 16;
/**
 * Below this many cycles the run is over within seconds, while each process's heap is still
 * growing to its working size (about 17 MB more than at rest, however long the run): the
 * windows then measure that warm-up, not a leak, and the figure is shown but not asserted.
 */
const RSS_ASSERT_MIN_CYCLES = 10_000;
const RSS_SAMPLE_MS = 100;

type CycleEnd = 'ok' | 'aborted' | 'failed';

/**
 * Scenario 2: many short users, one in five aborted with a reset at one of three points
 * (right after connecting, after sending, after the echo). Both processes' descriptors must
 * come back to where they started and their memory must stay flat.
 */
export async function cycles(results: Results, scenario: string, count: number): Promise<void> {
  const echo = await startEchoApp();
  try {
    const tunnel = await openTunnel({ apps: { echo: echo.port } });
    try {
      const port = tunnel.ports.get('echo')!;
      const pids = { server: tunnel.server.pid, client: tunnel.client.pid };
      // The pool is filled in the background after login; let it reach its size first.
      await sleep(1000);
      const fdStart = { server: await fdCount(pids.server), client: await fdCount(pids.client) };
      let next = 0;
      let done = 0;
      const samples: Array<{ done: number; server: number; client: number }> = [];
      const sampler = setInterval(() => samples.push({ done, server: rssBytes(pids.server), client: rssBytes(pids.client) }), RSS_SAMPLE_MS);
      const ends: Record<CycleEnd, number> = { ok: 0, aborted: 0, failed: 0 };
      const started = Date.now();
      const worker = async (): Promise<void> => {
        while (next < count) {
          ends[await cycle(port, next++)]++;
          done++;
        }
      };
      try {
        await Promise.all(Array.from({ length: WORKERS }, worker));
      } finally {
        clearInterval(sampler);
      }
      const seconds = (Date.now() - started) / 1000;
      const fdEnd = { server: Number.NaN, client: Number.NaN };
      await waitUntil(async () => {
        fdEnd.server = await fdCount(pids.server);
        fdEnd.client = await fdCount(pids.client);
        return fdEnd.server - fdStart.server <= FD_MARGIN && fdEnd.client - fdStart.client <= FD_MARGIN;
      }, 10_000);
      const meanRss = (side: 'server' | 'client', from: number, to: number): number => {
        const window = samples.filter((sample) => sample.done >= from * count && sample.done < to * count).map((sample) => sample[side]);
        return window.reduce((sum, rss) => sum + rss, 0) / window.length;
      };

      results.figure(
        scenario,
        `cycles (${ends.aborted} aborted)`,
        done,
        '',
        `${WORKERS} users at once; every fifth one resets right after connecting, after sending or after the echo`,
      );
      results.figure(scenario, 'cycles per second', done / seconds, '/s');
      results.atMost(scenario, 'normal cycles that failed', ends.failed, 0, '', 'a failed cycle: no exact echo, or no clean close, within 10 s');
      for (const side of ['server', 'client'] as const) {
        const name = side === 'server' ? 'commonserver' : 'groupclient';
        results.figure(scenario, `${name} fds at start`, fdStart[side], '');
        results.atMost(scenario, `${name} fds after settling − start`, fdEnd[side] - fdStart[side], FD_MARGIN, '');
        results.figure(scenario, `${name} RSS peak`, Math.max(...samples.map((sample) => sample[side])) / 2 ** 20, 'MB');
        const growth = (meanRss(side, 0.9, 1.01) - meanRss(side, 0.4, 0.5)) / 2 ** 20;
        const figure = `${name} RSS growth, 40–50 % → last 10 %`;
        if (count >= RSS_ASSERT_MIN_CYCLES)
          results.atMost(scenario, figure, growth, RSS_GROWTH_BOUND_MB, 'MB', 'mean RSS over each window of cycles, sampled every 100 ms');
        else
          results.figure(
            scenario,
            figure,
            growth,
            'MB',
            `not asserted below ${RSS_ASSERT_MIN_CYCLES.toLocaleString('en-US')} cycles: the heap is still warming up`,
          );
      }
    } finally {
      await tunnel.close();
    }
  } finally {
    await echo.close();
  }
}

/** One user: connect, 16 bytes, their echo, close; cycle `i` tells whether and where it aborts. */
async function cycle(port: number, i: number): Promise<CycleEnd> {
  const abortAt = i % 5 === 0 ? Math.floor(i / 5) % 3 : -1;
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  socket.on('error', () => {});
  try {
    return await withDeadline(exchange(socket, abortAt), CYCLE_DEADLINE_MS, 'cycle');
  } catch {
    return abortAt >= 0 ? 'aborted' : 'failed';
  } finally {
    socket.destroy();
  }
}

async function exchange(socket: Socket, abortAt: number): Promise<CycleEnd> {
  const payload = Buffer.from('0123456789abcdef');
  await once(socket, 'connect');
  if (abortAt === 0) return abort(socket);
  socket.write(payload);
  if (abortAt === 1) return abort(socket);
  const echoed = await readExactly(socket, payload.length);
  if (abortAt === 2) return abort(socket);
  socket.end();
  await once(socket, 'end');
  return echoed.equals(payload) ? 'ok' : 'failed';
}

/** Keeps one 'data' listener for the rest of the conn: bytes between two `once` calls would be lost. */
function readExactly(socket: Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= bytes) resolve(Buffer.concat(chunks));
    });
    socket.once('close', () => reject(new Error(`closed after ${received} of ${bytes} bytes`)));
  });
}

function abort(socket: Socket): CycleEnd {
  socket.resetAndDestroy();
  return 'aborted';
}
