import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { logSink } from './artifacts.js';
import { eventually } from './eventually.js';
import { canListenOn, freePortIn } from './net.js';
import { CliProcess } from './processes.js';
import { unusedUdpPort } from './udp.js';

/**
 * Real programs from Debian behind the tunnel (`.ci/run` installs them and stops if one is
 * missing, so in CI these tests never skip). Elsewhere a test skips with this message.
 */
export const NGINX = '/usr/sbin/nginx';
export const IPERF3 = '/usr/bin/iperf3';
export function skipWithout(program: string, pkg: string): false | string {
  return existsSync(program) ? false : `${program} is absent: install Debian's ${pkg} package to run this test`;
}

/** A child process of the test, stopped (and reaped) by `stop`. */
export interface ChildProgram {
  child: ChildProcess;
  stop(): Promise<void>;
}

export function startChild(bin: string, args: string[], name: string): ChildProgram {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = logSink(name);
  log(`$ ${bin} ${args.join(' ')}`);
  child.stdout!.on('data', (chunk: Buffer) => log(chunk.toString().trimEnd()));
  child.stderr!.on('data', (chunk: Buffer) => log(chunk.toString().trimEnd()));
  const exited = once(child, 'exit');
  return {
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Resolves once `port` on `host` accepts a connection; rejects after `timeoutMs` or if `child` exits. */
export async function acceptsConnections(host: string, port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const state = await eventually(async () => (child.exitCode !== null ? 'exited' : (await accepts(host, port)) && 'listening'), {
    message: `something to listen on ${host}:${port}`,
    timeout: timeoutMs,
    interval: 25,
  });
  if (state === 'exited') throw new Error(`the program exited (${child.exitCode}) before listening on ${host}:${port}`);
}

export interface Nginx extends ChildProgram {
  /** The access log's lines so far: `$proxy_protocol_addr $proxy_protocol_port $server_port`. */
  accessLog(): string[];
}

/**
 * nginx with `http` (the inside of its http block) as its config in `dir`, everything it
 * writes kept there: no daemon, no master, logs and temp files in `dir`.
 */
export function runNginx(dir: string, http: string, name: string): ChildProgram {
  mkdirSync(join(dir, 'temp'), { recursive: true });
  const config = join(dir, 'nginx.conf');
  writeFileSync(
    config,
    `error_log ${dir}/error.log info;
pid ${dir}/nginx.pid;
events { worker_connections 64; }
http {
${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${dir}/temp/${kind};`).join('\n')}
${http}
}
`,
  );
  return startChild(NGINX, ['-p', dir, '-e', `${dir}/error.log`, '-c', config, '-g', 'daemon off; master_process off;'], name);
}

/**
 * Debian's nginx as this test's own child (no daemon, no master), everything in a temp dir:
 * one `listen 127.0.0.1:PORT proxy_protocol` server per port, each answering any request with
 * the address and port the PROXY protocol header named, and logging them.
 */
export async function startNginx(ports: readonly number[]): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-nginx-'));
  const servers = ports.map(
    (port) => `  server {
    listen 127.0.0.1:${port} proxy_protocol;
    location / { return 200 "$proxy_protocol_addr $proxy_protocol_port\\n"; }
  }`,
  );
  const program = runNginx(
    dir,
    `  log_format proxied '$proxy_protocol_addr $proxy_protocol_port $server_port';
  access_log ${dir}/access.log proxied;
${servers.join('\n')}`,
    'nginx',
  );
  for (const port of ports) await acceptsConnections('127.0.0.1', port, program.child);
  const logFile = join(dir, 'access.log');
  return {
    ...program,
    accessLog: () =>
      existsSync(logFile)
        ? readFileSync(logFile, 'utf8')
            .split('\n')
            .filter((line) => line !== '')
        : [],
  };
}

/** `iperf3 -s` on 127.0.0.1:PORT, as a local app behind the tunnel. */
export async function startIperf3Server(port: number): Promise<ChildProgram> {
  const program = startChild(IPERF3, ['-s', '-B', '127.0.0.1', '-p', String(port)], 'iperf3-server');
  await acceptsConnections('127.0.0.1', port, program.child);
  return program;
}

/** What the receiving end of an iperf3 run measured, in bytes per second. */
export interface Iperf3Result {
  receivedBytesPerSecond: number;
  /** Per parallel stream (users), as the receiver counted them. */
  streams: number[];
}

/**
 * `iperf3 -c 127.0.0.1 -p PORT -J` (with `args` such as -t, -R, -P); resolves with the receiver's
 * figures. An iperf3 server still closing the previous test refuses with "busy" for a moment:
 * asked again a bounded number of times.
 */
export async function runIperf3Client(port: number, args: string[]): Promise<Iperf3Result> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runIperf3Once(port, args);
    } catch (error) {
      if (!(error as Error).message.includes('busy') || attempt >= 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function runIperf3Once(port: number, args: string[]): Promise<Iperf3Result> {
  const all = ['-c', '127.0.0.1', '-p', String(port), '-J', ...args];
  const log = logSink('iperf3-client');
  log(`$ ${IPERF3} ${all.join(' ')}`);
  return new Promise((resolve, reject) => {
    execFile(IPERF3, all, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout) => {
      log(stdout);
      if (error) return reject(new Error(`iperf3 failed: ${error.message}\n${stdout.slice(0, 2000)}`));
      const report = JSON.parse(stdout) as {
        error?: string;
        end: { sum_received: { bits_per_second: number }; streams: { receiver: { bits_per_second: number } }[] };
      };
      if (report.error !== undefined) return reject(new Error(`iperf3: ${report.error}`));
      resolve({
        receivedBytesPerSecond: report.end.sum_received.bits_per_second / 8,
        streams: report.end.streams.map((stream) => stream.receiver.bits_per_second / 8),
      });
    });
  });
}

/** Debian programs the UDP tests run behind the tunnel (`.ci/run` installs them). */
export const DNSMASQ = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq'].find((path) => existsSync(path));
export const DIG = ['/usr/bin/dig'].find((path) => existsSync(path));

export const skipWithoutDns: false | string =
  DNSMASQ !== undefined && DIG !== undefined
    ? false
    : 'dnsmasq or dig is absent: install the Debian packages dnsmasq-base and bind9-dnsutils to run the DNS tests';

/**
 * Starts dnsmasq as this test's own child: no daemon, no DHCP, no resolv.conf, no /etc/hosts,
 * serving only `records` (dnsmasq config lines such as `address=/a.test/10.1.2.3`) on a
 * loopback port free for UDP and TCP (it binds both). Resolves once it has bound them, with
 * its port; a port taken meanwhile by another program is replaced by a fresh one.
 */
export async function startDnsmasq(dir: string, records: string[]): Promise<{ dnsmasq: CliProcess; port: number }> {
  const conf = join(dir, 'dnsmasq.conf');
  writeFileSync(conf, `${records.join('\n')}\n`);
  for (let attempt = 1; ; attempt++) {
    const port = await portFreeForBoth();
    const args = [
      '--no-daemon',
      `--conf-file=${conf}`,
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--pid-file=',
      '--log-facility=-',
      // Run as whoever runs the test (root in CI): no switch to a "dnsmasq" user that may not exist.
      `--user=${userInfo().username}`,
    ];
    const dnsmasq = new CliProcess(DNSMASQ!, args, {}, [], { program: true });
    const outcome = await dnsmasq.waitForLine(/started, version|Address already in use/);
    if (!outcome[0].includes('Address already in use')) return { dnsmasq, port };
    await dnsmasq.stop();
    if (attempt === 5) throw new Error(`dnsmasq found no free port in ${attempt} attempts`);
  }
}

/** A loopback port number that was free a moment ago for both UDP and TCP. */
export async function portFreeForBoth(): Promise<number> {
  for (;;) {
    const port = await unusedUdpPort();
    if (await canListenOn(port)) return port;
  }
}

/** What `dig +short` printed, or the failure (dig exits 9 when no server answered). */
export function dig(
  port: number,
  name: string,
  { tcp = false, timeoutS = 2 } = {},
): Promise<{ ok: true; answer: string } | { ok: false; code: number | string; output: string }> {
  const args = ['@127.0.0.1', '-p', String(port), name, 'A', '+short', `+time=${timeoutS}`, '+tries=1', ...(tcp ? ['+tcp'] : ['+notcp'])];
  return new Promise((resolve) => {
    execFile(DIG!, args, { timeout: (timeoutS + 5) * 1000 }, (error, stdout, stderr) => {
      if (error) resolve({ ok: false, code: (error as NodeJS.ErrnoException).code ?? 'unknown', output: `${stdout}${stderr}` });
      else resolve({ ok: true, answer: stdout.trim() });
    });
  });
}

/** Debian's redis-server and its benchmark, for the visitor tests (`.ci/run` installs redis-server and redis-tools). */
export const REDIS_SERVER = '/usr/bin/redis-server';
export const REDIS_BENCHMARK = '/usr/bin/redis-benchmark';
export const skipWithoutRedis: false | string = skipWithout(REDIS_SERVER, 'redis-server') || skipWithout(REDIS_BENCHMARK, 'redis-tools');

/** A redis-server of the test's own on a free loopback port: no persistence, no config file. Resolves once it accepts. */
export async function startRedis(): Promise<ChildProgram & { port: number }> {
  const port = await freePortIn(20_000, 40_000);
  const redis = startChild(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], 'redis-server');
  await acceptsConnections('127.0.0.1', port, redis.child);
  return { ...redis, port };
}

/** `redis-benchmark -q` against `port`: its exit code and its lines ("SET: 51234.56 requests per second, p50=0.3 msec"). */
export function redisBenchmark(port: number, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    execFile(REDIS_BENCHMARK, ['-h', '127.0.0.1', '-p', String(port), '-q', ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` });
    });
  });
}
