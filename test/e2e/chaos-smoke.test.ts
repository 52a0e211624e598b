import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DIST_ROOT } from '../helpers/paths.js';

const chaosBin = join(DIST_ROOT, 'chaos', 'run.js');

interface ChaosRecord {
  checks: Array<{ scenario: string; figure: string; value: number; pass?: boolean }>;
  errors: Array<{ scenario: string; message: string }>;
}

/**
 * The harness is not part of the suite; this runs every scenario in its smallest form so its
 * code cannot rot. It proves the harness runs and reports, not that the bounds hold: some are
 * broken by today's code on purpose, so it runs with --no-assert, which still exits non-zero
 * when a scenario could not run to its end.
 */
test('the chaos harness runs every scenario and prints its table (quickest mode)', { timeout: 150_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-chaos-smoke-'));
  try {
    const out = join(dir, 'chaos.json');
    const args = ['--quick', '--no-assert', '--users', '4', '--mb', '1', '--cycles', '200', '--flood-seconds', '2', '--out', out];
    const child = spawn(process.execPath, [chaosBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 140_000);
    const [code] = await once(child, 'exit');
    clearTimeout(timer);
    assert.equal(code, 0, output);

    const lines = output.split('\n');
    assert.ok(
      lines.some((line) => /^scenario\s+figure\s+value\s+bound\s+result$/.test(line)),
      output,
    );
    const scenarios = [
      '1a kill -9 groupclient',
      '1b kill -9 commonserver',
      '2 short cycles',
      '3 blackhole',
      '4 ping flood',
      '5a SIGTERM commonserver',
      '5b SIGTERM groupclient',
    ];
    for (const scenario of scenarios) {
      const rows = lines.filter((line) => line.startsWith(`${scenario}  `));
      assert.ok(
        rows.some((line) => /\s(pass|FAIL)$/.test(line)),
        `no asserted row for ${scenario}:\n${output}`,
      );
    }
    assert.match(output, /\d+ of \d+ bounds held, \d+ broken, 0 scenario errors/);

    const record = JSON.parse(readFileSync(out, 'utf8')) as ChaosRecord;
    assert.deepEqual(record.errors, []);
    assert.deepEqual([...new Set(record.checks.map((check) => check.scenario))], scenarios);
    // The short-cycle scenario ran every one of its users.
    const cycles = record.checks.find((check) => check.scenario === '2 short cycles' && check.figure.startsWith('cycles ('));
    assert.equal(cycles?.value, 200, JSON.stringify(cycles));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
