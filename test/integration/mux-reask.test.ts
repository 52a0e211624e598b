import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, test } from 'node:test';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startServer } from '../helpers/in-process.js';
import { rawLogin } from '../helpers/raw-client.js';

test('a client that never brings the mux conn is asked again less and less often (the one backoff policy)', { timeout: 30_000 }, async () => {
  const secret = randomSecret();
  // The scripted client sends no pings.
  const config = makeConfigDir([{ name: 'shy', secret, apps: [{ name: 'app', localPort: 1 }] }], { heartbeatInterval: '5s', heartbeatTimeout: '60s' });
  const started = await startServer(config);
  const session = await rawLogin(started, 'shy', secret, { mux: true });
  after(async () => {
    session.channel.destroy();
    await started.server.close();
  });
  const askedAt: number[] = [];
  for (let ask = 0; ask < 4; ask++) {
    const { pairingId } = await session.channel.next('ReqMuxConn');
    askedAt.push(performance.now());
    session.channel.send({ type: 'WorkConnFailed', pairingId, reason: 'test: no mux conn from this client' });
  }
  const gaps = askedAt.slice(1).map((at, i) => at - askedAt[i]!);
  // BACKOFF: 500 ms doubling, jitter at most a fifth off; lower bounds only (a busy machine is late, never early).
  [400, 800, 1600].forEach((least, i) =>
    assert.ok(gaps[i]! >= least, `gap ${i + 1}: ${gaps[i]!.toFixed(0)}ms, expected at least ${least}ms (all: ${gaps.map((gap) => gap.toFixed(0)).join(', ')})`),
  );
});
