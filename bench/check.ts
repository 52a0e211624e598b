/**
 * The bench's regression gate (`--check`): a few figures that stay steady on a shared machine
 * (CPU-seconds per GB and full GCs while carrying bulk, connection setup as a ratio to the bare
 * relay of the same run), compared with the ones committed in `bench/reference.json` by the
 * last `--save-reference` run. A figure more than `tolerance` worse fails the run.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { median } from './proc.js';
import type { PathName } from './paths.js';
import type { Figures } from './table.js';

interface Gauge {
  name: string;
  metric: string;
  path: PathName;
  /** Divided by this path's median of the same run, when given. */
  over?: PathName;
  better: 'lower' | 'higher';
  /** Added to the allowance: a count near zero (full GCs) may move by a few without meaning anything. */
  slack?: number;
}

const GAUGES: Gauge[] = [
  ...(
    [
      ['tunnel', 'relay'],
      ['tunnel-tls', 'relay-tls'],
    ] as const
  ).flatMap(([path, over]) => [
    ...(['1 stream', '8 streams'] as const).map((streams): Gauge => ({
      name: `CPU s/GB ${streams}: ${path} ÷ ${over}`,
      metric: `iperf ${streams} CPU s/GB`,
      path,
      over,
      better: 'lower',
    })),
    { name: `full GCs/process 8 streams: ${path}`, metric: 'iperf 8 streams full GCs/process', path, better: 'lower', slack: 3 } satisfies Gauge,
  ]),
  { name: 'setup conns/s: tunnel-tls ÷ relay-tls', metric: 'setup conns/s', path: 'tunnel-tls', over: 'relay-tls', better: 'higher' },
];

export interface Reference {
  date: string;
  node: string;
  args: string[];
  figures: Record<string, number>;
}

export interface CheckRow {
  name: string;
  reference: number;
  current: number;
  ok: boolean;
}

/** The gauges this run measured, by name. */
export function gaugeFigures(byPath: Map<PathName, Figures>): Record<string, number> {
  const value = (path: PathName, metric: string): number => median(byPath.get(path)?.get(metric) ?? []);
  const figures: Record<string, number> = {};
  for (const gauge of GAUGES) {
    const measured = gauge.over === undefined ? value(gauge.path, gauge.metric) : value(gauge.path, gauge.metric) / value(gauge.over, gauge.metric);
    if (Number.isFinite(measured)) figures[gauge.name] = measured;
  }
  return figures;
}

/** Each gauge measured both now and in the reference, judged against `tolerance` (0.15: 15 % worse fails). */
export function compareWithReference(current: Record<string, number>, reference: Reference, tolerance: number): CheckRow[] {
  return GAUGES.flatMap((gauge) => {
    const now = current[gauge.name];
    const then = reference.figures[gauge.name];
    if (now === undefined || then === undefined) return [];
    const ok = gauge.better === 'lower' ? now <= then * (1 + tolerance) + (gauge.slack ?? 0) : now >= then * (1 - tolerance) - (gauge.slack ?? 0);
    return [{ name: gauge.name, reference: then, current: now, ok }];
  });
}

export function readReference(file: string): Reference {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`bench --check: cannot read the reference ${file}: ${(error as Error).message} (write one with --save-reference)`, { cause: error });
  }
  const figures = (parsed as { figures?: unknown } | null)?.figures;
  if (typeof figures !== 'object' || figures === null || Object.values(figures).some((value) => typeof value !== 'number'))
    throw new Error(`bench --check: ${file} has no "figures" object of numbers`);
  return parsed as Reference;
}

/** Options whose value is a path on the machine that ran the bench: the reference is committed, so it names none. */
const PATH_OPTIONS: Record<string, string> = { '--baseline': 'DIR', '--out': 'FILE', '--reference': 'FILE', '--cpu-prof': 'DIR' };

/** `args` as a committed file may show them: each path given to an option becomes a placeholder. */
export function portableArgs(args: string[]): string[] {
  return args.map((arg, index) => {
    const [option, inline] = arg.split('=', 2) as [string, string | undefined];
    const placeholder = PATH_OPTIONS[option];
    if (placeholder !== undefined && inline !== undefined) return `${option}=${placeholder}`;
    const previous = index > 0 ? PATH_OPTIONS[args[index - 1]!] : undefined;
    return previous !== undefined && !args[index - 1]!.includes('=') ? previous : arg;
  });
}

export function writeReference(file: string, figures: Record<string, number>, args: string[]): void {
  const reference: Reference = { date: new Date().toISOString(), node: process.version, args: portableArgs(args), figures };
  writeFileSync(file, JSON.stringify(reference, null, 2) + '\n');
}

export function printCheck(rows: CheckRow[], tolerance: number, file: string): void {
  const width = Math.max(...rows.map((row) => row.name.length));
  console.log(`check against ${file} (a figure more than ${Math.round(tolerance * 100)} % worse fails)`);
  for (const row of rows) {
    const change = (row.current / row.reference - 1) * 100;
    const shown = `${row.reference.toFixed(2)} → ${row.current.toFixed(2)} (${change >= 0 ? '+' : ''}${change.toFixed(0)} %)`;
    console.log(`  ${row.name.padEnd(width)}  ${shown.padEnd(28)}  ${row.ok ? 'ok' : 'WORSE'}`);
  }
  console.log('');
}
