import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PathName } from '../../bench/paths.js';
import type { Figures } from '../../bench/table.js';
import { judgeTargets } from '../../bench/targets.js';

function verdicts(figures: Partial<Record<PathName, Record<string, number>>>): Map<string, boolean> {
  const byPath = new Map<PathName, Figures>(
    Object.entries(figures).map(([path, values]) => [path as PathName, new Map(Object.entries(values).map(([metric, value]) => [metric, [value]]))]),
  );
  return new Map(judgeTargets(byPath).map((result) => [result.figure, result.met]));
}

test("the bench judges issue 22's bounds: bulk ≥ 0.9× the bare relay, peak RSS under 8 streams ≤ 80 MB, RSS at rest ≤ 48 MB", { timeout: 5_000 }, () => {
  const met = verdicts({
    relay: { 'iperf 8 streams Gbit/s': 10 },
    tunnel: { 'iperf 8 streams Gbit/s': 9.1, 'peak RSS 8 streams, server MB': 79, 'RSS at rest, server MB': 47.5 },
  });
  assert.equal(met.get('iperf 8 streams Gbit/s: tunnel ÷ relay'), true);
  assert.equal(met.get('peak RSS 8 streams, server MB: tunnel'), true);
  assert.equal(met.get('RSS at rest, server MB: tunnel'), true);
  const missed = verdicts({
    relay: { 'iperf 8 streams Gbit/s': 10 },
    tunnel: { 'iperf 8 streams Gbit/s': 8.9, 'peak RSS 8 streams, server MB': 81, 'RSS at rest, server MB': 48.5 },
  });
  assert.equal(missed.get('iperf 8 streams Gbit/s: tunnel ÷ relay'), false);
  assert.equal(missed.get('peak RSS 8 streams, server MB: tunnel'), false);
  assert.equal(missed.get('RSS at rest, server MB: tunnel'), false);
});
