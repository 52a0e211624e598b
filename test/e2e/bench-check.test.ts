import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { compareWithReference, gaugeFigures, portableArgs, type Reference } from '../../bench/check.js';
import type { PathName } from '../../bench/paths.js';
import type { Figures } from '../../bench/table.js';
import { DIST_ROOT, REPO_ROOT } from '../helpers/paths.js';

const benchBin = join(DIST_ROOT, 'bench', 'run.js');

function figures(byPath: Partial<Record<PathName, Record<string, number[]>>>): Map<PathName, Figures> {
  return new Map(Object.entries(byPath).map(([path, metrics]) => [path as PathName, new Map(Object.entries(metrics))]));
}

const reference = (values: Record<string, number>): Reference => ({ date: '', node: '', args: [], figures: values });

test('the gate takes CPU per GB and setup as ratios to the bare relay of the same run, and full GCs as they are', () => {
  const run = figures({
    relay: { 'iperf 1 stream CPU s/GB': [2, 2.2, 1.8] },
    tunnel: { 'iperf 1 stream CPU s/GB': [3, 3.3, 2.7], 'iperf 8 streams full GCs/process': [4, 6, 5] },
    'relay-tls': { 'setup conns/s': [1000] },
    'tunnel-tls': { 'setup conns/s': [1500] },
  });
  assert.deepEqual(gaugeFigures(run), {
    'CPU s/GB 1 stream: tunnel ÷ relay': 1.5,
    'full GCs/process 8 streams: tunnel': 5,
    'setup conns/s: tunnel-tls ÷ relay-tls': 1.5,
  });
});

test('the gate fails a gauge more than the tolerance worse, in the direction that is worse for it', () => {
  const then = reference({ 'CPU s/GB 1 stream: tunnel ÷ relay': 1.5, 'setup conns/s: tunnel-tls ÷ relay-tls': 1.0, 'full GCs/process 8 streams: tunnel': 2 });
  const verdicts = (now: Record<string, number>): Record<string, boolean> =>
    Object.fromEntries(compareWithReference(now, then, 0.15).map((row) => [row.name, row.ok]));
  // CPU per GB: lower is better.
  assert.deepEqual(verdicts({ 'CPU s/GB 1 stream: tunnel ÷ relay': 1.7 }), { 'CPU s/GB 1 stream: tunnel ÷ relay': true });
  assert.deepEqual(verdicts({ 'CPU s/GB 1 stream: tunnel ÷ relay': 1.8 }), { 'CPU s/GB 1 stream: tunnel ÷ relay': false });
  assert.deepEqual(verdicts({ 'CPU s/GB 1 stream: tunnel ÷ relay': 0.5 }), { 'CPU s/GB 1 stream: tunnel ÷ relay': true });
  // Setup: higher is better.
  assert.deepEqual(verdicts({ 'setup conns/s: tunnel-tls ÷ relay-tls': 0.8 }), { 'setup conns/s: tunnel-tls ÷ relay-tls': false });
  assert.deepEqual(verdicts({ 'setup conns/s: tunnel-tls ÷ relay-tls': 3 }), { 'setup conns/s: tunnel-tls ÷ relay-tls': true });
  // Full GCs near zero: a few more are noise (slack 3), many more are a regression.
  assert.deepEqual(verdicts({ 'full GCs/process 8 streams: tunnel': 5 }), { 'full GCs/process 8 streams: tunnel': true });
  assert.deepEqual(verdicts({ 'full GCs/process 8 streams: tunnel': 40 }), { 'full GCs/process 8 streams: tunnel': false });
  // A gauge this run did not measure is not judged.
  assert.deepEqual(verdicts({}), {});
});

test('a saved reference names no path of the machine that ran the bench', () => {
  assert.deepEqual(
    portableArgs(['--only', 'throughput', '--baseline', '/srv/build-a', '--out=/tmp/x.json', '--runs', '3', '--cpu-prof', 'profiles', '--save-reference']),
    ['--only', 'throughput', '--baseline', 'DIR', '--out=FILE', '--runs', '3', '--cpu-prof', 'DIR', '--save-reference'],
  );
  const committed = JSON.parse(readFileSync(join(REPO_ROOT, 'bench', 'reference.json'), 'utf8')) as Reference;
  assert.deepEqual(committed.args, portableArgs(committed.args), 'bench/reference.json holds a machine path');
});

test('bench --check without a readable reference stops before measuring anything, naming the file', { timeout: 30_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-bench-ref-'));
  try {
    const missing = join(dir, 'none.json');
    const run = spawnSync(process.execPath, [benchBin, '--check', '--reference', missing, '--no-json'], { encoding: 'utf8', timeout: 25_000 });
    assert.equal(run.status, 1, run.stdout + run.stderr);
    assert.match(run.stderr, new RegExp(`cannot read the reference ${missing.replaceAll('/', '\\/')}.*--save-reference`));
    assert.doesNotMatch(run.stdout, /^run 1/m);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ figures: { x: 'fast' } }));
    const badRun = spawnSync(process.execPath, [benchBin, '--check', '--reference', bad, '--no-json'], { encoding: 'utf8', timeout: 25_000 });
    assert.equal(badRun.status, 1);
    assert.match(badRun.stderr, /has no "figures" object of numbers/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
