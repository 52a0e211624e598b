import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomId } from '../../src/protocol/index.js';

test('randomId hands out each byte of entropy once, across refills of its batch', () => {
  // 16-byte ids: 256 per 4 KB batch, so this crosses many refills, and 32-byte ones mix in.
  const ids = new Set<string>();
  for (let i = 0; i < 3000; i++) ids.add(randomId(i % 7 === 0 ? 32 : 16));
  assert.equal(ids.size, 3000);
  for (const id of ids) assert.match(id, /^[A-Za-z0-9_-]{22}$|^[A-Za-z0-9_-]{43}$/);
  // Overlapping slices would repeat substrings; distinct 16-byte ids share no 8-byte run.
  const runs = new Set<string>();
  for (const id of ids) {
    const bytes = Buffer.from(id, 'base64url');
    for (let at = 0; at + 8 <= bytes.length; at += 8) {
      const run = bytes.subarray(at, at + 8).toString('hex');
      assert.ok(!runs.has(run), 'a run of entropy was handed out twice');
      runs.add(run);
    }
  }
  assert.equal(Buffer.from(randomId(5000), 'base64url').length, 5000);
});
