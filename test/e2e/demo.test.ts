import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CliProcess } from '../helpers/processes.js';
import { DIST_ROOT } from '../helpers/paths.js';

const DEMO = join(DIST_ROOT, 'src', 'demo', 'demo.js');

test('npm run demo: TLS by default, a round trip through all six apps, clean exit on Ctrl-C', { timeout: 30_000 }, async () => {
  const demo = new CliProcess(DEMO, []);
  after(() => demo.stop());

  await demo.waitForLine(/All apps answered, over TLS pinned to sha256:/, { timeoutMs: 20_000 });
  // Both clients pinned the server's certificate and logged in: no plaintext anywhere.
  await demo.waitForLine(/\[commonserver\] .*TLS on; certificate fingerprint sha256:/);
  assert.ok(!demo.output.includes('plaintext'), `the demo mentions plaintext:\n${demo.output}`);
  const probes = demo.lines.filter((line) => /^ {2}office-[ab]\/\S+ +127\.0\.0\.1:\d+ /.test(line));
  assert.equal(probes.length, 6, demo.output);
  assert.ok(
    probes.some((line) => line.includes('"SSH-2.0-DemoServer"')),
    'the server-speaks-first app answered',
  );

  demo.kill('SIGINT');
  const { code } = await demo.exited;
  assert.equal(code, 0);
});
