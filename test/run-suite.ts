/**
 * `npm test`: runs every test file with node's runner (`npm run test:unit`, `test:integration`,
 * `test:e2e`: one tier; or the files named on the command line), then scans the logs the suite left in
 * test-artifacts/ (CLI output, in-process server and client events) for every secret the
 * helpers generated. The closing line counts node's tests plus the scan as one more test.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ARTIFACTS_DIR, LOGS_DIR, SECRETS_FILE } from './helpers/artifacts.js';
import { DIST_ROOT } from './helpers/paths.js';
import { scanForSecrets } from './helpers/secret-scan.js';

const testRoot = join(DIST_ROOT, 'test');
/**
 * The tiers, each a folder of test/: unit (no process, no listening socket but in-process pairs;
 * the whole tier well under a minute), integration (an in-process server and client over real
 * loopback sockets), e2e (the CLIs as child processes, real programs such as etcd, nginx,
 * iperf3, chromium).
 */
const TIERS = ['unit', 'integration', 'e2e'] as const;

function testFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) return testFiles(path);
      return entry.endsWith('.test.js') ? [path] : [];
    })
    .sort();
}

rmSync(ARTIFACTS_DIR, { recursive: true, force: true });
mkdirSync(ARTIFACTS_DIR, { recursive: true });
/**
 * Every temporary directory the tests make (config dirs holding group secrets, certificates,
 * control sockets) goes under one directory of this run, removed at the end when the run
 * passed: a run left thousands of them behind before. A failed run keeps them to look at.
 */
const runTmp = mkdtempSync(join(tmpdir(), 'ntp-suite-'));
/**
 * Files that measure a rate against a bound (iperf3 through a bandwidth limit, ±10 %): run after
 * the others, one at a time, so that another file's load does not starve the measured processes.
 */
const RUN_ALONE = new Set(['bandwidth.test.js', 'bandwidth-reload.test.js', 'bandwidth-short-conns.test.js']);
const chosen = process.argv.slice(2);
const tiers = chosen.filter((arg) => (TIERS as readonly string[]).includes(arg));
const files =
  chosen.length === 0 ? testFiles(testRoot) : [...tiers.flatMap((tier) => testFiles(join(testRoot, tier))), ...chosen.filter((arg) => !tiers.includes(arg))];
if (files.length === 0) {
  console.log(`no test file in ${chosen.join(' ')} (a tier is one of ${TIERS.join(', ')}; a file is dist/test/TIER/NAME.test.js)`);
  process.exit(1);
}
const alone = files.filter((file) => RUN_ALONE.has(basename(file)));
const phases = [
  { name: 'results', files: files.filter((file) => !RUN_ALONE.has(basename(file))), concurrency: 2 },
  { name: 'results-alone', files: alone, concurrency: 1 },
].filter((phase) => phase.files.length > 0);

let passed = 0;
let failed = 0;
let runFailed = false;
const resultFiles: string[] = [];
for (const phase of phases) {
  const results = join(ARTIFACTS_DIR, `${phase.name}.tap`);
  resultFiles.push(results);
  const run = spawnSync(
    process.execPath,
    [
      '--test',
      `--test-concurrency=${phase.concurrency}`,
      `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`,
      '--test-reporter-destination=stdout',
      '--test-reporter=tap',
      `--test-reporter-destination=${results}`,
      ...phase.files,
    ],
    { stdio: 'inherit', env: { ...process.env, NTP_TEST_ARTIFACTS: ARTIFACTS_DIR, TMPDIR: runTmp } },
  );
  const tap = readFileSync(results, 'utf8');
  const count = (what: string): number => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(tap)?.[1] ?? NaN);
  const [phasePassed, phaseFailed, phaseCancelled] = [count('pass'), count('fail'), count('cancelled')];
  if (Number.isNaN(phasePassed) || Number.isNaN(phaseFailed)) {
    console.log(`the test runner left no summary for ${phase.name} (exit ${run.status ?? run.signal})`);
    failed++;
  } else {
    passed += phasePassed;
    // A cancelled test (its file timed out or hung) is a failure too.
    failed += phaseFailed + (Number.isNaN(phaseCancelled) ? 0 : phaseCancelled);
  }
  if (run.status !== 0) runFailed = true;
}

const scan = scanForSecrets(SECRETS_FILE, LOGS_DIR, resultFiles);
const scanOk = scan.leaks.length === 0 && scan.secrets > 0 && scan.files > 0;
for (const leak of scan.leaks) console.log(`secret scan: secret #${leak.secret} found in ${leak.file}:${leak.line} (under ${ARTIFACTS_DIR})`);
// A run of chosen files or of one tier may generate no secret at all; the whole suite always does.
if (chosen.length > 0 && scan.secrets === 0 && scan.leaks.length === 0) {
  console.log('secret scan: skipped (these files generated no secret)');
} else {
  console.log(
    `secret scan: ${scan.secrets} secrets checked against ${scan.lines} lines in ${scan.files} log files: ${
      scan.leaks.length === 0 ? (scanOk ? 'none found' : 'nothing to check (is the artifacts recording broken?)') : `${scan.leaks.length} leaks`
    }`,
  );
  if (scanOk) passed++;
  else failed++;
}
console.log(`${passed} passed, ${failed} failed`);
if (failed === 0 && !runFailed) rmSync(runTmp, { recursive: true, force: true });
else console.log(`the tests' temporary files are kept in ${runTmp}`);
process.exit(failed === 0 && !runFailed ? 0 : 1);
