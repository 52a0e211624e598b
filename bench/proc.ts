import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Every child the bench starts, so that an early exit (error, Ctrl-C) still kills them all. */
const children = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
}

process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

/** Starts a long-running helper (iperf3 -s, redis-server) that the bench kills when done. */
export function startDaemon(cmd: string, args: string[]): ChildProcess {
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
  child.stderr!.resume();
  return child;
}

export async function stopDaemon(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Runs a tool to completion, killed after `timeoutMs`; rejects on a non-zero exit. */
export function runTool(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${cmd} ${args.join(' ')}: ${error.message}\n${stderr}\n${stdout.slice(0, 2000)}`));
      else resolve(stdout);
    });
    track(child);
  });
}

/** Resident set size of a process in bytes (VmRSS), or NaN once it is gone. */
export function rssBytes(pid: number): number {
  try {
    const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return match ? Number(match[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

let clockTicksPerSecond: number | undefined;

/**
 * The fields of `/proc/PID/stat` after the command name (which may hold spaces: they are
 * counted after its closing parenthesis, so field N of proc(5) is at index N - 3), or
 * undefined once the process is gone.
 */
function statFields(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used so far, in ms, or NaN once it is gone. */
export function cpuMs(pid: number): number {
  clockTicksPerSecond ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  const fields = statFields(pid);
  return fields === undefined ? Number.NaN : ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
}

/**
 * Minor page faults `pid` has taken so far (a page the kernel maps on first touch): memory
 * given back to the kernel and touched again shows here. NaN once the process is gone.
 */
export function minorFaults(pid: number): number {
  const fields = statFields(pid);
  return fields === undefined ? Number.NaN : Number(fields[7]);
}

/** Samples the RSS of `pids` every `everyMs` until stopped; `stop()` returns each one's peak. */
export function sampleRss(pids: number[], everyMs = 100): { stop(): number[] } {
  const peaks = pids.map((pid) => rssBytes(pid));
  const timer = setInterval(() => {
    pids.forEach((pid, i) => {
      const rss = rssBytes(pid);
      if (rss > peaks[i]! || Number.isNaN(peaks[i]!)) peaks[i] = rss;
    });
  }, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      return peaks;
    },
  };
}

export interface Tool {
  bin: string;
  pkg: string;
  needed: boolean;
}

/** Names every missing tool and how to install it; returns false if any is missing. */
export function checkTools(tools: Tool[]): boolean {
  return missingTools(tools.filter((tool) => tool.needed)).length === 0;
}

/** The tools not on PATH, each named on stderr with the Debian package that installs it. */
export function missingTools<T extends Omit<Tool, 'needed'>>(tools: readonly T[]): T[] {
  const missing = tools.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool.bin}`]).status !== 0);
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((tool) => tool.pkg))].join(' ');
    process.stderr.write(`bench: missing ${missing.map((tool) => tool.bin).join(', ')}; install them (Debian): apt-get install -y ${pkgs}\n`);
  }
  return missing;
}

export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
