/**
 * The UDP figure: `iperf3 -u` at fixed offered rates, user → app and app → user (-R), direct
 * and through the tunnel in the same run. iperf3's control conn is TCP and its datagrams UDP,
 * both on one port: the tunnel carries them as a TCP app and a UDP app sharing a port number.
 */
import { portFreeForBoth } from '../test/helpers/programs.js';
import { openTunnelWith, type BenchPath, type PathName, type PathOptions } from './paths.js';
import { cpuMs, runTool } from './proc.js';

/** Paths that carry UDP (the bare relays are TCP only). */
export const UDP_PATHS: readonly PathName[] = ['direct', 'tunnel', 'tunnel-tls'];
export const DEFAULT_UDP_RATES = ['10M', '100M', '200M', '500M', '1G'];
/** Under DNS's 4096 and the UDP apps' default maxDatagramBytes; what iperf3 picks on a 1500-byte MTU. */
const DATAGRAM_BYTES = 1400;
/**
 * iperf3's own socket buffers (user and app side, on every path alike): with the kernel's
 * default (208 KiB) iperf3 loses datagrams on loopback at 100 Mbit/s even direct, which
 * would hide what the tunnel adds. Ours ask for 4 MiB as well.
 */
const SOCKET_BUFFER = '4M';
/** Loss above this is "loss": the ceiling is the highest rate tested at or below it. */
export const LOSS_CEILING_PERCENT = 1;

export interface UdpSample {
  path: PathName;
  rate: string;
  direction: 'up' | 'down';
  lossPercent: number;
  jitterMs: number;
  receivedMbps: number;
  /** Datagrams the sender sent (iperf3's count). */
  datagrams: number;
  /** CPU the tunnel's processes spent per datagram sent, in µs (NaN direct). */
  cpuUsPerDatagram?: { server: number; client: number };
  /** Why iperf3 gave no figures (the run is shown as failed, the others still count). */
  failed?: string;
}

/** The path's UDP port for iperf3 (also its TCP port for the control conn). */
export async function openUdpPath(name: PathName, iperfPort: number, options: PathOptions): Promise<BenchPath> {
  if (name === 'direct') return { name, ports: { iperf: iperfPort }, pids: () => undefined, fullGcs: () => undefined, close: async () => {} };
  // One number free for both protocols.
  const port = await portFreeForBoth();
  const apps = [
    { name: 'iperf-control', localPort: iperfPort, remotePort: port },
    { name: 'iperf-data', localPort: iperfPort, remotePort: port, type: 'udp' as const },
  ];
  const path = await openTunnelWith(name, apps, options, name === 'tunnel-tls');
  return { ...path, ports: { iperf: port } };
}

export async function iperfUdp(path: BenchPath, rate: string, direction: 'up' | 'down', seconds: number): Promise<UdpSample> {
  const port = path.ports.iperf!;
  const args = [
    '-c',
    '127.0.0.1',
    '-p',
    String(port),
    '-u',
    '-b',
    rate,
    '-l',
    String(DATAGRAM_BYTES),
    '-w',
    SOCKET_BUFFER,
    '-t',
    String(seconds),
    '-J',
    ...(direction === 'down' ? ['-R'] : []),
  ];
  const pids = path.pids('iperf');
  // iperf3 -s serves one test at a time and takes a moment to be ready for the next one
  // (after the start-up probe, or the previous test): a refused control conn is tried again.
  for (let attempt = 1; ; attempt++) {
    const cpuBefore = pids && { server: cpuMs(pids.server), client: cpuMs(pids.client) };
    const out = await runTool('iperf3', args, (seconds + 20) * 1000).catch((error: Error) => JSON.stringify({ error: error.message }));
    const report = JSON.parse(out) as {
      end?: { sum?: { lost_percent?: number; jitter_ms?: number; packets?: number }; sum_received?: { bits_per_second?: number } };
      error?: string;
    };
    if (report.error && attempt < 3 && /control message|busy|reset by peer|refused/i.test(report.error)) continue;
    const base = { path: path.name, rate, direction };
    if (report.error)
      return { ...base, lossPercent: Number.NaN, jitterMs: Number.NaN, receivedMbps: Number.NaN, datagrams: 0, failed: report.error.split('\n')[0]! };
    const datagrams = report.end?.sum?.packets ?? Number.NaN;
    const perDatagram = (before: number, pid: number): number => ((cpuMs(pid) - before) * 1000) / datagrams;
    return {
      ...base,
      lossPercent: report.end?.sum?.lost_percent ?? Number.NaN,
      jitterMs: report.end?.sum?.jitter_ms ?? Number.NaN,
      receivedMbps: (report.end?.sum_received?.bits_per_second ?? Number.NaN) / 1e6,
      datagrams,
      ...(pids && cpuBefore
        ? { cpuUsPerDatagram: { server: perDatagram(cpuBefore.server, pids.server), client: perDatagram(cpuBefore.client, pids.client) } }
        : {}),
    };
  }
}

/** The highest rate (in the order tested) at which loss stayed at or under the ceiling, every rate below it too. */
export function ceiling(samples: Pick<UdpSample, 'rate' | 'lossPercent'>[], rates: readonly string[]): string {
  let best = 'none';
  for (const rate of rates) {
    const at = samples.filter((sample) => sample.rate === rate);
    if (at.length === 0 || at.some((sample) => !(sample.lossPercent <= LOSS_CEILING_PERCENT))) break;
    best = rate;
  }
  return best;
}

/** One table: a row per rate and direction, loss % and jitter per path, then the ceilings. */
export function printUdpTable(samples: UdpSample[], paths: readonly PathName[], rates: readonly string[]): void {
  const median = (values: number[]): number => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN;
  };
  const cell = (path: PathName, rate: string, direction: 'up' | 'down'): string => {
    const all = samples.filter((s) => s.path === path && s.rate === rate && s.direction === direction);
    const runs = all.filter((s) => s.failed === undefined);
    if (runs.length === 0) return all.length === 0 ? '–' : 'failed';
    return `${median(runs.map((s) => s.lossPercent)).toFixed(2)} % / ${median(runs.map((s) => s.jitterMs)).toFixed(3)} ms / ${median(runs.map((s) => s.receivedMbps)).toFixed(0)}`;
  };
  console.log(`\nUDP, iperf3 -u -l ${DATAGRAM_BYTES}: loss / jitter / received Mbit/s (medians); up = user → app, down = app → user (-R)`);
  console.log(`| offered | direction | ${paths.join(' | ')} |`);
  console.log(`| --- | --- | ${paths.map(() => '---').join(' | ')} |`);
  for (const rate of rates)
    for (const direction of ['up', 'down'] as const)
      console.log(`| ${rate} | ${direction} | ${paths.map((path) => cell(path, rate, direction)).join(' | ')} |`);
  for (const direction of ['up', 'down'] as const) {
    const ceilings = paths.map((path) => {
      const mine = samples.filter((s) => s.path === path && s.direction === direction);
      // A rate counts when its median run stays under the ceiling.
      const medians = rates.map((rate) => ({
        rate,
        lossPercent: median(mine.filter((s) => s.rate === rate && s.failed === undefined).map((s) => s.lossPercent)),
      }));
      return ceiling(
        medians.filter((s) => !Number.isNaN(s.lossPercent)),
        rates,
      );
    });
    console.log(`| ceiling (≤ ${LOSS_CEILING_PERCENT} % loss) | ${direction} | ${ceilings.join(' | ')} |`);
  }
  // CPU per datagram does not depend on how busy the machine is the way loss does.
  for (const direction of ['up', 'down'] as const) {
    const cpu = paths.map((path) => {
      const mine = samples.filter((s) => s.path === path && s.direction === direction && s.cpuUsPerDatagram !== undefined && s.datagrams > 0);
      if (mine.length === 0) return '–';
      return `${median(mine.map((s) => s.cpuUsPerDatagram!.server)).toFixed(1)} / ${median(mine.map((s) => s.cpuUsPerDatagram!.client)).toFixed(1)}`;
    });
    console.log(`| CPU µs per datagram, server / client | ${direction} | ${cpu.join(' | ')} |`);
  }
  for (const sample of samples.filter((s) => s.failed !== undefined))
    console.log(`failed: ${sample.path} ${sample.rate} ${sample.direction}: ${sample.failed}`);
}
