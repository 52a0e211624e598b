/**
 * `npm test`: runs every test file with node's runner, then scans the logs the suite left in
 * test-artifacts/ (CLI output, in-process server and client events) for every secret the
 * helpers generated. The closing line counts node's tests plus the scan as one more test.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ARTIFACTS_DIR, LOGS_DIR, SECRETS_FILE } from './helpers/artifacts.js';
import { scanForSecrets } from './helpers/secret-scan.js';

const testRoot = join(ARTIFACTS_DIR, '..', 'dist', 'test');

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
const results = join(ARTIFACTS_DIR, 'results.tap');
const files = process.argv.length > 2 ? process.argv.slice(2) : testFiles(testRoot);
const run = spawnSync(
  process.execPath,
  [
    '--test',
    '--test-concurrency=2',
    `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`,
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${results}`,
    ...files,
  ],
  { stdio: 'inherit', env: { ...process.env, NTP_TEST_ARTIFACTS: ARTIFACTS_DIR } },
);

const tap = readFileSync(results, 'utf8');
const count = (what: string): number => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(tap)?.[1] ?? NaN);
let passed = count('pass');
// A test cancelled (its promise left pending, its parent ended) did not pass: count it as failed.
let failed = count('fail') + (count('cancelled') || 0);
if (Number.isNaN(passed) || Number.isNaN(failed)) {
  console.log(`the test runner left no summary (exit ${run.status ?? run.signal})`);
  passed = 0;
  failed = 1;
}

const scan = scanForSecrets(SECRETS_FILE, LOGS_DIR, [results]);
const scanOk = scan.leaks.length === 0 && scan.secrets > 0 && scan.files > 0;
for (const leak of scan.leaks) console.log(`secret scan: secret #${leak.secret} found in ${leak.file}:${leak.line} (under ${ARTIFACTS_DIR})`);
// A run of chosen files may generate no secret at all; the whole suite always does.
const chosenFiles = process.argv.length > 2;
if (chosenFiles && scan.secrets === 0 && scan.leaks.length === 0) {
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
process.exit(failed === 0 && run.status === 0 ? 0 : 1);
