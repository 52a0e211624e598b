import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { DIST_ROOT } from '../helpers/paths.js';

const benchBin = join(DIST_ROOT, 'bench', 'run.js');

/** Runs the bench with `args`; its whole output once it exited 0 (killed after `timeoutMs`). */
async function runBench(args: string[], timeoutMs: number): Promise<string> {
  const child = spawn(process.execPath, [benchBin, ...args, '--runs', '1', '--no-json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = await once(child, 'exit');
  clearTimeout(timer);
  assert.equal(code, 0, output);
  return output;
}

// The bench is not part of the suite; this runs its quickest slices so its code cannot rot.
test('the bench measures connection setup through the tunnel (quickest mode)', { timeout: 60_000 }, async () => {
  const output = await runBench(['--only', 'setup', '--paths', 'direct,tunnel', '--conns', '20'], 55_000);
  const row = output.split('\n').find((line) => line.startsWith('setup conns/s'));
  assert.ok(row, `no setup row in:\n${output}`);
  // Columns: direct, tunnel (no relay selected, so no ratio column).
  const cells = row.replace('setup conns/s', '').trim().split(/\s+/);
  assert.ok(Number(cells[0]!.replaceAll(',', '')) > 0, row);
  assert.ok(Number(cells[1]!.replaceAll(',', '')) > 0, row);
  // The tunnel's processes report their CPU per user; direct has no process of ours.
  const cpu = output.split('\n').find((line) => line.startsWith('setup CPU µs/conn, client'));
  assert.ok(cpu, `no CPU row in:\n${output}`);
  const [direct, tunnel] = cpu.replace('setup CPU µs/conn, client', '').trim().split(/\s+/);
  assert.equal(direct, '-', cpu);
  assert.ok(Number(tunnel!.replaceAll(',', '')) >= 0, cpu);
  assert.ok(
    output.split('\n').some((line) => line.startsWith('setup p50 ms, 2 ms apart')),
    output,
  );
});

test('the bench measures HTTP requests direct, on the TCP path and through the vhost (quickest mode)', { timeout: 90_000 }, async () => {
  const output = await runBench(['--only', 'http', '--http-seconds', '1', '--http-conns', '4'], 85_000);
  for (const path of ['direct', 'tcp', 'vhost']) {
    const row = output.split('\n').find((line) => line.startsWith(`| ${path} |`));
    assert.ok(row, `no ${path} row in:\n${output}`);
    const [, , requests, , , errors] = row.split('|').map((cell) => cell.trim());
    assert.ok(Number(requests!.replaceAll(',', '')) > 0, row);
    assert.equal(errors, '0', row);
  }
});

test('the bench measures UDP through the TLS tunnel against direct with iperf3 -u (quickest mode)', { timeout: 60_000 }, async () => {
  const output = await runBench(['--only', 'udp', '--paths', 'direct,tunnel-tls', '--seconds', '1', '--udp-rates', '1M'], 55_000);
  for (const direction of ['up', 'down']) {
    const row = output.split('\n').find((line) => line.startsWith(`| 1M | ${direction} |`));
    assert.ok(row, `no 1M ${direction} row in:\n${output}`);
    // Both paths delivered datagrams: "loss % / jitter ms / received Mbit/s" per path.
    const cells = row
      .split('|')
      .slice(3, 5)
      .map((cell) => cell.trim());
    for (const cell of cells) assert.match(cell, /^\d+\.\d\d % \/ \d+\.\d{3} ms \/ [1-9]\d*$/, row);
  }
  assert.ok(
    output.split('\n').some((line) => line.startsWith('| ceiling (≤ 1 % loss) | up |')),
    output,
  );
});

test('without --baseline the bench runs every path of this build and none of a baseline; naming one is refused at once', { timeout: 60_000 }, async () => {
  const output = await runBench(['--only', 'setup', '--conns', '10'], 55_000);
  const header = output.split('\n').find((line) => line.startsWith('median'));
  assert.ok(header, `no table in:\n${output}`);
  for (const path of ['direct', 'relay', 'relay-tls', 'tunnel', 'tunnel-tls']) assert.ok(header.split(/\s+/).includes(path), header);
  assert.doesNotMatch(output, /-base/);
  const refused = spawn(process.execPath, [benchBin, '--only', 'setup', '--paths', 'tunnel-base', '--no-json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let said = '';
  refused.stderr.on('data', (chunk: Buffer) => (said += chunk.toString()));
  refused.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
  const [code] = await once(refused, 'exit');
  assert.notEqual(code, 0);
  assert.match(said, /tunnel-base needs --baseline/);
});
