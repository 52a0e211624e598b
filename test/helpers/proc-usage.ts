import { readFileSync } from 'node:fs';

/** The highest resident set size of process `pid` seen while it runs, read from /proc (MB). */
export function watchRss(pid: number): { readonly maxMb: number; stop(): void } {
  let maxKb = 0;
  const sample = (): void => {
    try {
      const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      maxKb = Math.max(maxKb, kb);
    } catch {
      // The process is gone: its last sample stands.
    }
  };
  sample();
  const timer = setInterval(sample, 100);
  return {
    get maxMb() {
      return maxKb / 1024;
    },
    stop: () => clearInterval(timer),
  };
}

/** The resident set size of process `pid` now (MB). */
export function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

/** CPU time (user and system) process `pid` has used so far, in seconds, from /proc/PID/stat (clock ticks of 1/100 s). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
