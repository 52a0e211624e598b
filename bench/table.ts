import { median } from './proc.js';
import type { PathName } from './paths.js';

/** metric → one value per run. */
export type Figures = Map<string, number[]>;

/**
 * The tunnel columns and the baselines each is compared with. The TLS tunnel also against the
 * plaintext relay: issue 4 sets its connection-setup target (the pool spares users the
 * handshake) against the bare plaintext relay.
 */
const RATIOS: Array<[PathName, PathName]> = [
  ['tunnel', 'relay'],
  ['tunnel-tls', 'relay-tls'],
  ['tunnel-tls', 'relay'],
  ['tunnel-tls', 'tunnel'],
  ['tunnel-base', 'tunnel'],
  ['tunnel-tls-base', 'tunnel-tls'],
  ['visitor-tls', 'tunnel-tls'],
];

/** Prints medians per path, and each tunnel's ratio against its bare relay of the same run. */
export function printTable(paths: readonly PathName[], byPath: Map<PathName, Figures>, unavailable: Set<PathName>): void {
  const metrics = [...new Set([...byPath.values()].flatMap((figures) => [...figures.keys()]))];
  const value = (path: PathName, metric: string): number => median(byPath.get(path)?.get(metric) ?? []);
  const columns: Array<{ title: string; cell(metric: string): string }> = [];
  for (const path of paths) {
    columns.push({ title: path, cell: (metric) => (unavailable.has(path) ? 'n/a' : format(value(path, metric))) });
    for (const ratio of RATIOS.filter(([tunnel, baseline]) => tunnel === path && paths.includes(baseline))) {
      columns.push({
        title: `÷${ratio[1]}`,
        cell: (metric) => {
          const r = value(ratio[0], metric) / value(ratio[1], metric);
          return Number.isFinite(r) ? `${r.toFixed(2)}×` : unavailable.has(path) ? 'n/a' : '-';
        },
      });
    }
  }
  const width = Math.max(6, ...metrics.map((m) => m.length));
  const cellWidth = columns.map((c) => Math.max(c.title.length, ...metrics.map((m) => c.cell(m).length)));
  const line = (first: string, cells: string[]): string => [first.padEnd(width), ...cells.map((c, i) => c.padStart(cellWidth[i]!))].join('  ');
  console.log(
    '\n' +
      line(
        'median',
        columns.map((c) => c.title),
      ),
  );
  for (const metric of metrics)
    console.log(
      line(
        metric,
        columns.map((c) => c.cell(metric)),
      ),
    );
  console.log('');
}

function format(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}
