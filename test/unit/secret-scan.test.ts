import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { scanForSecrets } from '../helpers/secret-scan.js';

test('the secret scan finds a planted secret and reports it without printing it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-scan-'));
  mkdirSync(join(dir, 'logs'));
  writeFileSync(join(dir, 'secrets.txt'), 'planted-secret-value-123\nanother-secret-value-456\n');
  writeFileSync(join(dir, 'logs', 'clean.log'), 'group a activated\nlogin rejected: BAD_SECRET\n');
  writeFileSync(join(dir, 'logs', 'leaky.log'), 'fine\n{"oops":"xx planted-secret-value-123 yy"}\n');
  const scan = scanForSecrets(join(dir, 'secrets.txt'), join(dir, 'logs'));
  assert.equal(scan.secrets, 2);
  assert.equal(scan.files, 2);
  assert.deepEqual(scan.leaks, [{ file: 'leaky.log', line: 2, secret: 1 }]);
  assert.ok(!JSON.stringify(scan).includes('planted'));
});
