import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startApp, type TestApp } from '../test/helpers/apps.js';
import { percentile, rssBytes, runTool, sampleRss, track } from './proc.js';

export interface Pids {
  server: number;
  client: number;
}

/** iperf3 through `port`: received bits per second, and the peak RSS of the two processes meanwhile. */
export async function iperf(
  port: number,
  streams: number,
  seconds: number,
  pids: Pids | undefined,
  extraArgs: string[] = [],
  busyRetries = 20,
): Promise<{ bitsPerSecond: number; bytes: number; peakRss?: Pids }> {
  const sampler = pids && sampleRss([pids.server, pids.client]);
  try {
    const out = await runTool(
      'iperf3',
      ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-O', '1', '-P', String(streams), '-J', ...extraArgs],
      (seconds + 20) * 1000,
    );
    const report = JSON.parse(out) as { end?: { sum_received?: { bits_per_second?: number; bytes?: number } }; error?: string };
    // The server may still be closing the previous test (its control conn went through a path
    // just torn down): it refuses with "busy" for a moment.
    if (report.error?.includes('busy') && busyRetries > 0) {
      await sleep(500);
      return await iperf(port, streams, seconds, pids, extraArgs, busyRetries - 1);
    }
    if (report.error) throw new Error(`iperf3: ${report.error}`);
    const bitsPerSecond = report.end?.sum_received?.bits_per_second ?? Number.NaN;
    const bytes = report.end?.sum_received?.bytes ?? Number.NaN;
    const peaks = sampler?.stop();
    return { bitsPerSecond, bytes, ...(peaks ? { peakRss: { server: peaks[0]!, client: peaks[1]! } } : {}) };
  } finally {
    sampler?.stop();
  }
}

/** A user conn that sent one byte and got its echo back; `ms` is how long that took from connect. */
function echoedConn(port: number, timeoutMs: number): Promise<{ socket: Socket; ms: number }> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => fail(new Error(`no echo within ${timeoutMs}ms`)), timeoutMs);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const onClose = (): void => fail(new Error('closed before the echo'));
    socket.once('error', fail);
    socket.once('close', onClose);
    socket.once('connect', () => socket.write('x'));
    socket.once('data', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      socket.off('close', onClose);
      socket.on('error', () => {});
      resolve({ socket, ms: Number(process.hrtime.bigint() - started) / 1e6 });
    });
  });
}

export interface SetupFigures {
  connsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * `count` sequential user conns, each sending one byte and awaiting the echo. With `pauseMs`,
 * each conn waits that long after the previous one closed, so that the relay's teardown of
 * one user does not overlap the next user's setup.
 */
export async function connSetup(port: number, count: number, pauseMs = 0): Promise<SetupFigures> {
  const latencies: number[] = [];
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    if (pauseMs > 0) await sleep(pauseMs);
    const { socket, ms } = await echoedConn(port, 10_000);
    socket.destroy();
    latencies.push(ms);
  }
  const totalS = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return { connsPerSecond: count / totalS, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

/** redis-benchmark through `port`: requests per second for PING, SET and GET. */
export async function redisBench(port: number, requests: number): Promise<Record<'ping' | 'set' | 'get', number>> {
  const out = await runTool(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(port), '-t', 'ping,set,get', '-n', String(requests), '-c', '50', '--csv'],
    120_000,
  );
  const rps = new Map<string, number>();
  for (const line of out.split('\n')) {
    const cells = line.split(',').map((cell) => cell.replaceAll('"', ''));
    if (cells.length >= 2 && Number.isFinite(Number(cells[1]))) rps.set(cells[0]!, Number(cells[1]));
  }
  return { ping: rps.get('PING_MBULK') ?? Number.NaN, set: rps.get('SET') ?? Number.NaN, get: rps.get('GET') ?? Number.NaN };
}

/** An echo app in its own process: the idle test needs more descriptors than one process may hold. */
export async function startEchoProcess(): Promise<{ port: number; stop(): void }> {
  const code = `require('net').createServer({allowHalfOpen:true},s=>{s.on('error',()=>{});s.pipe(s)}).listen(0,'127.0.0.1',function(){console.log('listening '+this.address().port)})`;
  const child = track(spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('echo app did not start')), 5000);
    child.stdout!.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      resolve(Number(chunk.toString().match(/listening (\d+)/)![1]));
    });
  });
  return { port, stop: () => child.kill('SIGKILL') };
}

export interface IdleFigures {
  conns: number;
  rssBefore: Pids;
  rssAfter: Pids;
  bytesPerConn: Pids;
}

/**
 * Opens `count` user conns through `port` (each proven end to end by one echoed byte), lets
 * them sit idle, then reads both processes' RSS. All conns are closed before returning.
 */
export async function idleConns(port: number, count: number, pids: Pids): Promise<IdleFigures> {
  await sleep(500);
  const rssBefore = { server: rssBytes(pids.server), client: rssBytes(pids.client) };
  const sockets: Socket[] = [];
  try {
    const batch = 200;
    for (let i = 0; i < count; i += batch) {
      const opened = await Promise.all(Array.from({ length: Math.min(batch, count - i) }, () => echoedConn(port, 20_000).then(({ socket }) => socket)));
      sockets.push(...opened);
    }
    await sleep(1000);
    const rssAfter = { server: rssBytes(pids.server), client: rssBytes(pids.client) };
    return {
      conns: count,
      rssBefore,
      rssAfter,
      bytesPerConn: { server: (rssAfter.server - rssBefore.server) / count, client: (rssAfter.client - rssBefore.client) / count },
    };
  } finally {
    for (const socket of sockets) socket.destroy();
    await sleep(500);
  }
}

export interface SlowFigures {
  offeredBytes: number;
  readBytes: number;
  seconds: number;
  rssGrowth: Pids;
}

/** An app that pushes `bytes` to every conn as fast as the conn accepts them. */
export function startSourceApp(bytes: number): Promise<TestApp> {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  return startApp((socket) => {
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes && !socket.destroyed) {
        sent += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
      if (sent >= bytes) socket.end();
    };
    pump();
  });
}

/**
 * A user reading at `bytesPerSecond` from an app that offers far more: with backpressure end
 * to end, neither process buffers more than a few socket buffers' worth. Bounded to `seconds`.
 */
export async function slowReader(port: number, offeredBytes: number, bytesPerSecond: number, seconds: number, pids: Pids): Promise<SlowFigures> {
  const before = { server: rssBytes(pids.server), client: rssBytes(pids.client) };
  const sampler = sampleRss([pids.server, pids.client]);
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  let readBytes = 0;
  let budget = 0;
  const tickMs = 100;
  socket.on('data', (chunk: Buffer) => {
    readBytes += chunk.length;
    budget -= chunk.length;
    if (budget <= 0) socket.pause();
  });
  const ticker = setInterval(() => {
    budget += (bytesPerSecond * tickMs) / 1000;
    if (budget > 0) socket.resume();
  }, tickMs);
  const started = Date.now();
  await Promise.race([sleep(seconds * 1000), new Promise((resolve) => socket.once('close', resolve))]);
  clearInterval(ticker);
  socket.destroy();
  const peaks = sampler.stop();
  return {
    offeredBytes,
    readBytes,
    seconds: (Date.now() - started) / 1000,
    rssGrowth: { server: peaks[0]! - before.server, client: peaks[1]! - before.client },
  };
}

/**
 * `users` users of an app that floods them, none of whom ever reads: what each costs the two
 * processes once everything that can queue has queued (RSS growth over the users; kernel socket
 * buffers are not in it). The mux's windows and the session's budget bound it.
 */
export async function stalledUsers(port: number, users: number, pids: Pids): Promise<{ bytesPerUser: Pids }> {
  const settled = async (): Promise<Pids> => {
    // Two readings 1 s apart that agree within 1 MB: nothing is still filling up.
    let last = { server: rssBytes(pids.server), client: rssBytes(pids.client) };
    for (let i = 0; i < 10; i++) {
      await sleep(1000);
      const now = { server: rssBytes(pids.server), client: rssBytes(pids.client) };
      const steady = Math.abs(now.server - last.server) < 2 ** 20 && Math.abs(now.client - last.client) < 2 ** 20;
      last = now;
      if (steady) break;
    }
    return last;
  };
  const before = await settled();
  const sockets: Socket[] = [];
  try {
    for (let i = 0; i < users; i++) {
      const socket = connect({ host: '127.0.0.1', port });
      socket.on('error', () => {});
      socket.pause();
      sockets.push(socket);
      // A few at a time, so that the server's handshake and pending-user caps are not what is measured.
      if (i % 20 === 19) await sleep(50);
    }
    await sleep(2000);
    const after = await settled();
    return { bytesPerUser: { server: (after.server - before.server) / users, client: (after.client - before.client) / users } };
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}

/** The RSS of both processes `seconds` after the path came up, no user having come yet. */
export async function restingRss(seconds: number, pids: Pids): Promise<Pids> {
  await sleep(seconds * 1000);
  return { server: rssBytes(pids.server), client: rssBytes(pids.client) };
}

/**
 * `users` users at once, each opening a new conn per request (one byte, its echo, close), until
 * `total` requests are done: what `redis-benchmark -c 50 -k 0` does, with nothing to install.
 * When users arrive faster than one at a time, the tunnel's warm pool runs dry and the rate
 * shows what a further work conn costs.
 */
export async function connChurn(port: number, users: number, total: number): Promise<SetupFigures> {
  const latencies: number[] = [];
  let started = 0;
  const user = async (): Promise<void> => {
    while (started < total) {
      started++;
      const { socket, ms } = await echoedConn(port, 20_000);
      socket.destroy();
      latencies.push(ms);
    }
  };
  const begin = process.hrtime.bigint();
  await Promise.all(Array.from({ length: users }, user));
  const totalS = Number(process.hrtime.bigint() - begin) / 1e9;
  latencies.sort((a, b) => a - b);
  return { connsPerSecond: total / totalS, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}
