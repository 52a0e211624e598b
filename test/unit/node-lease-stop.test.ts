import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { after, test } from 'node:test';
import { NodeLease } from '../../src/server/cluster/node-lease.js';
import { unusedPort } from '../helpers/apps.js';

test('close() while the lease waits to be granted again ends start() at once, not after the delay', { timeout: 30_000 }, async () => {
  // Nothing listens there: every grant fails, and the lease waits before the next one.
  const etcd = new Etcd3({ hosts: `127.0.0.1:${await unusedPort()}`, dialTimeout: 1000, defaultCallOptions: () => ({ deadline: Date.now() + 1000 }) });
  after(() => etcd.close());
  const hour = { firstMs: 3_600_000, maxMs: 3_600_000, factor: 2 };
  const lease = new NodeLease(etcd, { ttlMs: 3000, nodeKey: 'test/nodes/a', nodeValue: () => '{}', backoff: hour });
  let waiting!: (delayMs: number) => void;
  const firstWait = new Promise<number>((resolve) => (waiting = resolve));
  const started = lease.start((_reason, delayMs) => waiting(delayMs));
  assert.ok((await firstWait) >= 0.8 * hour.firstMs);
  await lease.close();
  // An hour's wait that close() did not end would outlast this test's timeout.
  await assert.rejects(started, /closed/);
  assert.equal(lease.current.held, false);
});
