/**
 * What a chaos run found: one row per figure, with its bound when the figure is asserted.
 * A figure without a bound is context (why a bound is not asserted is in its note).
 */
export interface Bound {
  op: '≤' | '≥';
  limit: number;
}

export interface Check {
  scenario: string;
  figure: string;
  value: number;
  unit: string;
  bound?: Bound;
  pass?: boolean;
  note?: string;
  /** A breakdown of the value, printed after the result. */
  detail?: string;
}

/** A scenario that could not run to its end: the harness's failure, not a broken bound. */
export interface ScenarioError {
  scenario: string;
  message: string;
}

export class Results {
  readonly checks: Check[] = [];
  readonly errors: ScenarioError[] = [];

  /** A figure reported for context only. */
  figure(scenario: string, figure: string, value: number, unit: string, note?: string): void {
    this.checks.push({ scenario, figure, value, unit, ...(note === undefined ? {} : { note }) });
  }

  /** Adds a breakdown to the row just recorded. */
  detail(detail: string): void {
    const last = this.checks.at(-1);
    if (last) last.detail = detail;
  }

  atMost(scenario: string, figure: string, value: number, limit: number, unit: string, note?: string): void {
    this.bounded(scenario, figure, value, unit, { op: '≤', limit }, note);
  }

  atLeast(scenario: string, figure: string, value: number, limit: number, unit: string, note?: string): void {
    this.bounded(scenario, figure, value, unit, { op: '≥', limit }, note);
  }

  error(scenario: string, message: string): void {
    this.errors.push({ scenario, message });
  }

  get failed(): Check[] {
    return this.checks.filter((check) => check.pass === false);
  }

  private bounded(scenario: string, figure: string, value: number, unit: string, bound: Bound, note?: string): void {
    // NaN (a figure that could not be measured) never passes.
    const pass = bound.op === '≤' ? value <= bound.limit : value >= bound.limit;
    this.checks.push({ scenario, figure, value, unit, bound, pass, ...(note === undefined ? {} : { note }) });
  }
}

/** The table printed at the end of a run; notes follow it, numbered. */
export function printResults(results: Results): void {
  const notes: string[] = [];
  const rows = results.checks.map((check) => {
    let mark = '';
    if (check.note !== undefined) {
      if (!notes.includes(check.note)) notes.push(check.note);
      mark = ` [${notes.indexOf(check.note) + 1}]`;
    }
    return [
      check.scenario,
      check.figure + mark,
      `${format(check.value)}${check.unit ? ` ${check.unit}` : ''}`,
      check.bound ? `${check.bound.op} ${format(check.bound.limit)}` : '–',
      check.pass === undefined ? 'info' : check.pass ? 'pass' : 'FAIL',
      check.detail ?? '',
    ];
  });
  const header = ['scenario', 'figure', 'value', 'bound', 'result', ''];
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (i === 2 || i === 3 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  console.log('\n' + line(header));
  for (const row of rows) console.log(line(row));
  notes.forEach((note, i) => console.log(`[${i + 1}] ${note}`));
  for (const error of results.errors) console.log(`ERROR ${error.scenario}: ${error.message}`);
  const asserted = results.checks.filter((check) => check.pass !== undefined);
  console.log(
    `\n${asserted.length - results.failed.length} of ${asserted.length} bounds held, ${results.failed.length} broken, ${results.errors.length} scenario errors`,
  );
}

function format(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}
