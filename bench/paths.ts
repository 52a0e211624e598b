import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeConfigDir, randomSecret, type TestAppEntry } from '../test/helpers/configs.js';
import { stringify } from 'yaml';
import { freePortIn } from '../test/helpers/net.js';
import { CliProcess, COMMONSERVER_BIN, parsePortTable, startCommonServerProcess, startGroupClientProcess } from '../test/helpers/processes.js';
import { nodeLaunchOf } from '../src/cli/node-flags.js';
import { createSelfSigned } from '../src/server/index.js';
import { track } from './proc.js';

export type PathName = 'direct' | 'relay' | 'relay-tls' | 'tunnel' | 'tunnel-tls' | 'tunnel-base' | 'tunnel-tls-base' | 'visitor-tls';
export const PATH_NAMES: readonly PathName[] = ['direct', 'relay', 'relay-tls', 'tunnel', 'tunnel-tls'];
/** The tunnel paths run from another build (`--baseline DIR`): an A/B within one run. */
export const BASELINE_PATH_NAMES: readonly PathName[] = ['tunnel-base', 'tunnel-tls-base'];
/**
 * Run only when named (`--paths tunnel-tls,visitor-tls`): each target a private app reached
 * through a visitor of a second group's client (three processes). Not in the default list: its
 * users are streams on two sessions' mux conns, refused past their cap (256), so the idle figure
 * (thousands of users at once) does not apply to it.
 */
export const OPT_IN_PATH_NAMES: readonly PathName[] = ['visitor-tls'];

/** How a user reaches the apps: a public port per target, and the two processes in between. */
export interface BenchPath {
  name: PathName;
  /** target name → the port a user dials for it. */
  ports: Record<string, number>;
  /** The "server side" and "client side" processes carrying `target` (none for direct). */
  pids(target: string): { server: number; client: number } | undefined;
  /**
   * Full garbage collections (V8's mark-compacts) each of those processes has run so far, when
   * the path was opened with `traceGc`; undefined otherwise.
   */
  fullGcs(target: string): { server: number; client: number } | undefined;
  close(): Promise<void>;
}

const relayBin = join(dirname(fileURLToPath(import.meta.url)), 'bare-relay.js');

/** A throwaway self-signed certificate for the TLS hop: the one the commonserver would make itself. */
export async function makeCert(): Promise<{ dir: string; remove(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-bench-cert-'));
  createSelfSigned(join(dir, 'cert.pem'), join(dir, 'key.pem'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface PathOptions {
  certDir?: string;
  /** Work-conn pool size for the tunnel (commonserver's `workConnPool`); undefined: its default. */
  pool?: number;
  /** Writes V8 CPU profiles of the tunnel's two processes here (`node --cpu-prof`). */
  cpuProfDir?: string;
  /** Another build's root (the folder holding its `dist/`), for the `-base` paths. */
  baselineRoot?: string;
  /** The `bandwidth` (bytes per second, each way) of the target named `limited`. */
  limitBytes?: number;
  /** Starts the processes with `--trace-gc`, so that `fullGcs` can count their mark-compacts. */
  traceGc?: boolean;
}

/** A line `--trace-gc` prints for a full collection (young ones say Scavenge). */
const FULL_GC_LINE = /Mark-Compact/;

/** Opens `name` in front of `targets` (target name → local port); undefined if unavailable here. */
export async function openPath(name: PathName, targets: Record<string, number>, options: PathOptions): Promise<BenchPath | undefined> {
  switch (name) {
    case 'direct':
      return { name, ports: { ...targets }, pids: () => undefined, fullGcs: () => undefined, close: async () => {} };
    case 'relay':
      return openRelay(name, targets, options, 'plain', 'plain');
    case 'relay-tls':
      return openRelay(name, targets, options, 'tls-out', 'tls-in');
    case 'tunnel':
      return openTunnel(name, targets, options, false);
    case 'tunnel-tls':
      return openTunnel(name, targets, options, true);
    case 'visitor-tls':
      return openVisitorTunnel(name, targets, options);
    case 'tunnel-base':
    case 'tunnel-tls-base': {
      if (options.baselineRoot === undefined) throw new Error(`${name} needs --baseline`);
      const dist = join(options.baselineRoot, 'dist', 'src', 'cli');
      const bins = { server: join(dist, 'commonserver.js'), client: join(dist, 'groupclient.js') };
      return openTunnel(name, targets, options, name === 'tunnel-tls-base', bins);
    }
  }
}

/**
 * The tunnel as users run it: plaintext is `plaintext: true` on the server and `--plaintext` on
 * the client; TLS lets the server create its self-signed certificate in the throwaway config
 * directory on first start and has the client pin the fingerprint the server printed.
 */
function openTunnel(
  name: PathName,
  targets: Record<string, number>,
  options: PathOptions,
  tls: boolean,
  bins?: { server: string; client: string },
): Promise<BenchPath> {
  const apps = Object.entries(targets).map(([app, localPort]) => ({
    name: app,
    localPort,
    ...(app === 'limited' && options.limitBytes !== undefined ? { extra: { bandwidth: { in: options.limitBytes, out: options.limitBytes } } } : {}),
  }));
  return openTunnelWith(name, apps, options, tls, bins);
}

/** The tunnel in front of `apps` as the group file lists them (UDP apps, fixed public ports); `bins`: another build's CLIs. */
export async function openTunnelWith(
  name: PathName,
  apps: TestAppEntry[],
  options: PathOptions,
  tls: boolean,
  bins?: { server: string; client: string },
): Promise<BenchPath> {
  const config = makeConfigDir([{ name: 'bench', secret: randomSecret(), apps }], {
    heartbeatInterval: '5s',
    heartbeatTimeout: '20s',
    pairingTimeout: '10s',
    handshakeTimeout: '5s',
    tls,
    certificate: 'on-start',
    ...(options.pool === undefined ? {} : { workConnPool: options.pool }),
    // One source opens users 200 at a time (idle figure): the default caps, sized against
    // floods, would refuse them (and the client's work conns to match) with a reset.
    extra: { limits: { maxPendingUsersPerApp: 1000, maxHandshakes: 4096, maxHandshakesPerSource: 1000 } },
  });
  const processes: CliProcess[] = [];
  const close = closer(processes, config.dir);
  try {
    const nodeArgs = tunnelNodeArgs(options);
    const server = await startCommonServerProcess(config.serverFile, {}, nodeArgs, bins?.server);
    processes.push(server.process);
    if (tls && server.fingerprint === undefined) throw new Error('commonserver printed no certificate fingerprint with TLS on');
    const link = tls ? { fingerprint: server.fingerprint! } : ('plaintext' as const);
    const client = startGroupClientProcess({
      configFile: config.groupFile('bench'),
      serverPort: server.port,
      link,
      nodeArgs,
      ...(bins ? { bin: bins.client } : {}),
    });
    processes.push(client);
    const ports = parsePortTable((await client.waitForLine(/group bench active/)).input!);
    const pids = { server: server.process.pid, client: client.pid };
    const fullGcs = options.traceGc ? () => ({ server: fullGcsOf(server.process), client: fullGcsOf(client) }) : () => undefined;
    return { name, ports: Object.fromEntries(ports), pids: () => pids, fullGcs, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * The TLS tunnel with every target private: group `bench` owns them (`visibility: private`,
 * `allowVisitors: [bench-visitor]`), group `bench-visitor`'s client listens for each on a local
 * port (`visitors:`). A user goes visitor client → server → owner's client → target. `pids`
 * names the server and the owner's client (the visitor's client is a third process, not weighed).
 */
async function openVisitorTunnel(name: PathName, targets: Record<string, number>, options: PathOptions): Promise<BenchPath> {
  const config = makeConfigDir([], {
    heartbeatInterval: '5s',
    heartbeatTimeout: '20s',
    pairingTimeout: '10s',
    handshakeTimeout: '5s',
    certificate: 'on-start',
  });
  const binds = Object.fromEntries(await Promise.all(Object.keys(targets).map(async (target) => [target, await freePortIn(40_001, 60_000)] as const)));
  const write = (group: string, body: Record<string, unknown>): void =>
    writeFileSync(config.groupFile(group), stringify({ name: group, secret: randomSecret(), ...body }));
  write('bench', {
    apps: Object.entries(targets).map(([app, port]) => ({ name: app, local: `127.0.0.1:${port}`, visibility: 'private', allowVisitors: ['bench-visitor'] })),
  });
  write('bench-visitor', {
    apps: [{ name: 'unused', local: '127.0.0.1:9', remotePort: 0 }],
    visitors: Object.keys(targets).map((app) => ({ name: app, group: 'bench', app, bind: `127.0.0.1:${binds[app]}` })),
  });
  const processes: CliProcess[] = [];
  const close = closer(processes, config.dir);
  try {
    const nodeArgs = tunnelNodeArgs(options);
    const server = await startCommonServerProcess(config.serverFile, {}, nodeArgs);
    processes.push(server.process);
    const start = (group: string): CliProcess =>
      startGroupClientProcess({ configFile: config.groupFile(group), serverPort: server.port, link: { fingerprint: server.fingerprint! }, nodeArgs });
    const owner = start('bench');
    const visitor = start('bench-visitor');
    processes.push(owner, visitor);
    await owner.waitForLine(/group bench active/);
    await visitor.waitForLine(/group bench-visitor active/);
    const pids = { server: server.process.pid, client: owner.pid };
    const fullGcs = options.traceGc ? () => ({ server: fullGcsOf(server.process), client: fullGcsOf(owner) }) : () => undefined;
    return { name, ports: binds, pids: () => pids, fullGcs, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Stops the tunnel's processes and removes its config directory. */
function closer(processes: CliProcess[], dir: string): () => Promise<void> {
  return async () => {
    await Promise.all(processes.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
}

/** node's own flags for the tunnel's processes: CPU profiles and GC tracing when asked for. */
function tunnelNodeArgs(options: PathOptions): string[] {
  return [...(options.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`]), ...(options.traceGc ? ['--trace-gc'] : [])];
}

function fullGcsOf(process: CliProcess): number {
  return process.lines.filter((line) => FULL_GC_LINE.test(line)).length;
}

interface Relay {
  port: number;
  pid: number;
  fullGcs(): number;
  stop(): void;
}

async function startRelay(mode: string, target: number, options: PathOptions): Promise<Relay> {
  const args = [...(options.traceGc ? ['--trace-gc'] : []), relayBin, mode, String(target), options.certDir ?? ''];
  // The binaries' allocator setting (their #! line's environment) for the yardstick too: the
  // ratio then weighs our code against a plain relay, not glibc's heap trimming against none.
  const env = { ...process.env, ...nodeLaunchOf(COMMONSERVER_BIN).env };
  const child = track(spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  let fullGcs = 0;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('bare relay did not start within 5s')), 5000);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      // Whole lines only: a trace line may arrive split across chunks.
      const end = out.lastIndexOf('\n');
      for (const line of out.slice(0, end + 1).split('\n')) {
        if (FULL_GC_LINE.test(line)) fullGcs++;
        const match = /^listening (\d+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      }
      out = out.slice(end + 1);
    });
    child.once('exit', () => reject(new Error('bare relay exited')));
  });
  return { port, pid: child.pid!, fullGcs: () => fullGcs, stop: () => child.kill('SIGKILL') };
}

async function openRelay(name: PathName, targets: Record<string, number>, options: PathOptions, outMode: string, inMode: string): Promise<BenchPath> {
  const stops: Array<() => void> = [];
  const ports: Record<string, number> = {};
  const hops: Record<string, { server: Relay; client: Relay }> = {};
  for (const [target, port] of Object.entries(targets)) {
    // Second hop first: it plays the groupclient (dials the app), the first plays the commonserver.
    const inner = await startRelay(inMode, port, options);
    stops.push(inner.stop);
    const outer = await startRelay(outMode, inner.port, options);
    stops.push(outer.stop);
    ports[target] = outer.port;
    hops[target] = { server: outer, client: inner };
  }
  const of = <T>(target: string, pick: (relay: Relay) => T): { server: T; client: T } | undefined => {
    const hop = hops[target];
    return hop && { server: pick(hop.server), client: pick(hop.client) };
  };
  return {
    name,
    ports,
    pids: (target) => of(target, (relay) => relay.pid),
    fullGcs: (target) => (options.traceGc ? of(target, (relay) => relay.fullGcs()) : undefined),
    close: async () => stops.forEach((stop) => stop()),
  };
}
