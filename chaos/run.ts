/**
 * `npm run chaos`: the proof harness. The real commonserver and groupclient as child processes
 * (TLS, pinned fingerprint), real apps and users on loopback, and faults injected on purpose:
 * processes killed or signalled mid-transfer, a black-holed path, many short and aborted
 * users, a ping flood. Prints each figure against its bound; exits 1 if a bound is broken,
 * 2 if a scenario could not run to its end. See --help.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killAll } from '../bench/proc.js';
import { printResults, Results } from './checks.js';
import { cycles } from './cycles.js';
import { withDeadline } from './deadline.js';
import { blackhole, processFault } from './faults.js';
import { pingFlood } from './flood.js';
import { killOpenTunnels } from './tunnel.js';

const SCENARIOS = ['kill', 'cycles', 'blackhole', 'flood', 'sigterm'] as const;
type Scenario = (typeof SCENARIOS)[number];

const USAGE = `usage: npm run chaos -- [options]
  --only LIST        scenarios: ${SCENARIOS.join(',')} (default: all)
  --quick            seconds instead of minutes: fewer users, bytes and cycles, a 5 s flood
  --no-assert        print and record every figure, but exit 0 when bounds are broken
                     (still 2 when a scenario could not run)
  --users N          bulk users for kill -9 (default 50; quick 10); SIGTERM uses half,
                     the blackhole a fifth (at least 4)
  --mb N             MB each bulk user moves (default 10; quick 4)
  --cycles N         short user cycles (default 20000; quick 1000)
  --flood-seconds N  ping flood duration (default 15; quick 5)
  --out FILE         JSON results (default chaos/results/latest.json); --no-json to skip`;

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'chaos', 'results');

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'no-assert': { type: 'boolean', default: false },
      users: { type: 'string' },
      mb: { type: 'string' },
      cycles: { type: 'string' },
      'flood-seconds': { type: 'string' },
      out: { type: 'string' },
      'no-json': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const quick = values.quick!;
  const num = (value: string | undefined, normal: number, short: number): number => {
    const n = value === undefined ? (quick ? short : normal) : Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`expected a positive number, got ${value}`);
    return n;
  };
  const only = values.only === undefined ? [...SCENARIOS] : values.only.split(',').map((name) => name.trim());
  for (const name of only)
    if (!(SCENARIOS as readonly string[]).includes(name)) throw new UsageError(`unknown scenario "${name}" (one of ${SCENARIOS.join(', ')})`);
  const bulk = {
    users: Math.round(num(values.users, 50, 10)),
    bytes: Math.round(num(values.mb, 10, 4) * 2 ** 20),
    spreadMs: quick ? 1500 : 3000,
    deadlineMs: quick ? 20_000 : 60_000,
  };
  const settings = {
    bulk,
    // SIGTERM needs fewer users: what is measured is the exit and how each user ends.
    sigterm: { ...bulk, users: Math.max(2, Math.round(bulk.users / 2)) },
    blackhole: { ...bulk, users: Math.max(4, Math.round(bulk.users / 5)) },
    cycles: Math.round(num(values.cycles, 20_000, 1000)),
    floodSeconds: num(values['flood-seconds'], 15, 5),
  };

  const results = new Results();
  const steps: Array<{ scenario: Scenario; name: string; deadlineMs: number; run(): Promise<void> }> = [
    {
      scenario: 'kill',
      name: '1a kill -9 groupclient',
      deadlineMs: 90_000,
      run: () => processFault(results, '1a kill -9 groupclient', 'client', 'SIGKILL', settings.bulk),
    },
    {
      scenario: 'kill',
      name: '1b kill -9 commonserver',
      deadlineMs: 90_000,
      run: () => processFault(results, '1b kill -9 commonserver', 'server', 'SIGKILL', settings.bulk),
    },
    { scenario: 'cycles', name: '2 short cycles', deadlineMs: 60_000 + settings.cycles * 20, run: () => cycles(results, '2 short cycles', settings.cycles) },
    { scenario: 'blackhole', name: '3 blackhole', deadlineMs: 90_000, run: () => blackhole(results, '3 blackhole', settings.blackhole) },
    {
      scenario: 'flood',
      name: '4 ping flood',
      deadlineMs: 40_000 + settings.floodSeconds * 1000,
      run: () => pingFlood(results, '4 ping flood', settings.floodSeconds),
    },
    {
      scenario: 'sigterm',
      name: '5a SIGTERM commonserver',
      deadlineMs: 90_000,
      run: () => processFault(results, '5a SIGTERM commonserver', 'server', 'SIGTERM', settings.sigterm),
    },
    {
      scenario: 'sigterm',
      name: '5b SIGTERM groupclient',
      deadlineMs: 90_000,
      run: () => processFault(results, '5b SIGTERM groupclient', 'client', 'SIGTERM', settings.sigterm),
    },
  ];
  const started = Date.now();
  // The machine's load sets the latency figures as much as the code does: say what it was.
  const loadBefore = loadavg()[0]!;
  console.log(`chaos: ${cpus().length} cores, load average ${loadBefore.toFixed(2)}${quick ? ', quick' : ''}`);
  for (const step of steps.filter((candidate) => only.includes(candidate.scenario))) {
    const stepStarted = Date.now();
    process.stdout.write(`${step.name} ...`);
    try {
      await withDeadline(step.run(), step.deadlineMs, step.name);
      process.stdout.write(` ${((Date.now() - stepStarted) / 1000).toFixed(1)} s\n`);
    } catch (error) {
      process.stdout.write(' error\n');
      killOpenTunnels();
      results.error(step.name, (error as Error).message.split('\n')[0]!);
    }
  }
  printResults(results);
  console.log(`load average ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after`);
  console.log(`total ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (!values['no-json']) {
    const out = values.out ?? join(resultsDir, 'latest.json');
    mkdirSync(dirname(out), { recursive: true });
    const record = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      loadAverage: { before: loadBefore, after: loadavg()[0] },
      args: process.argv.slice(2),
      settings,
      checks: results.checks,
      errors: results.errors,
    };
    writeFileSync(out, JSON.stringify(record, null, 2));
    console.log(`results written to ${out}`);
  }
  if (results.errors.length > 0) return 2;
  if (results.failed.length > 0 && !values['no-assert']) return 1;
  return 0;
}

/** A bad command line: said in one line, without a stack. */
class UsageError extends Error {}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    killAll();
    const usage = error instanceof UsageError || String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
    console.error(usage ? `chaos: ${(error as Error).message} (see --help)` : `chaos: ${(error as Error).stack ?? error}`);
    process.exit(2);
  },
);
