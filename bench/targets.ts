import { median } from './proc.js';
import type { PathName } from './paths.js';
import type { Figures } from './table.js';

/**
 * One figure's target: `path`'s median, divided by `over`'s median of the same run when given
 * (the machine is shared, so only ratios within a run compare), against `bound`.
 */
interface Target {
  metric: string;
  path: PathName;
  over?: PathName;
  bound: number;
  atMost?: boolean;
}

const bothEnds = (metric: string): string[] => [`${metric}, server`, `${metric}, client`];

/** Issue 15's targets, with issue 22's for bulk and memory, plus those of earlier rounds that must not regress. */
const TARGETS: Target[] = [
  { metric: 'setup conns/s', path: 'tunnel-tls', over: 'relay', bound: 1.0 },
  { metric: 'setup p50 ms', path: 'tunnel-tls', over: 'relay', bound: 1.0, atMost: true },
  { metric: 'churn 50 users conns/s', path: 'tunnel-tls', over: 'tunnel', bound: 0.9 },
  { metric: 'churn 200 users conns/s', path: 'tunnel-tls', over: 'tunnel', bound: 0.9 },
  ...(['tunnel', 'tunnel-tls'] as const).flatMap((path) => [
    ...bothEnds('RSS at rest').map((metric) => ({ metric: `${metric} MB`, path, bound: 48, atMost: true })),
    ...bothEnds('peak RSS 8 streams').map((metric) => ({ metric: `${metric} MB`, path, bound: 80, atMost: true })),
  ]),
  ...bothEnds('idle bytes/conn').map((metric) => ({ metric, path: 'tunnel-tls' as const, bound: 20 * 1024, atMost: true })),
  ...(
    [
      ['tunnel', 'relay'],
      ['tunnel-tls', 'relay-tls'],
    ] as const
  ).flatMap(([path, over]) =>
    ['iperf 1 stream Gbit/s', 'iperf 8 streams Gbit/s', 'redis PING req/s', 'redis SET req/s', 'redis GET req/s'].map((metric) => ({
      metric,
      path,
      over,
      bound: metric.startsWith('iperf') ? 0.9 : 0.95,
    })),
  ),
];

export interface TargetResult {
  figure: string;
  value: number;
  bound: string;
  met: boolean;
}

/** Every target whose figures this run measured. */
export function judgeTargets(byPath: Map<PathName, Figures>): TargetResult[] {
  const value = (path: PathName, metric: string): number => median(byPath.get(path)?.get(metric) ?? []);
  const results: TargetResult[] = [];
  for (const target of TARGETS) {
    const measured = target.over === undefined ? value(target.path, target.metric) : value(target.path, target.metric) / value(target.over, target.metric);
    if (!Number.isFinite(measured)) continue;
    results.push({
      figure: `${target.metric}: ${target.path}${target.over === undefined ? '' : ` ÷ ${target.over}`}`,
      value: measured,
      bound: `${target.atMost ? '≤' : '≥'} ${target.bound}${target.over === undefined ? '' : '×'}`,
      met: target.atMost ? measured <= target.bound : measured >= target.bound,
    });
  }
  return results;
}

export function printTargets(results: TargetResult[]): void {
  if (results.length === 0) return;
  const width = Math.max(...results.map((r) => r.figure.length));
  console.log('targets (medians of this run)');
  for (const r of results) {
    const shown = r.value >= 100 ? Math.round(r.value).toLocaleString('en-US') : r.value.toFixed(2);
    console.log(`  ${r.figure.padEnd(width)}  ${shown.padStart(7)}  ${r.bound.padEnd(9)}  ${r.met ? 'met' : 'NOT met'}`);
  }
  console.log('');
}
