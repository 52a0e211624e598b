import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { EVENTS_PATH } from '../../src/admin/request-guard.js';
import { REPO_ROOT } from '../helpers/paths.js';

const TIMEOUT = { timeout: 20_000 };
const PAGE = join(REPO_ROOT, 'docs', 'operating.md');

/** The lines of `page` under `## heading`, up to the next heading of that level. */
function section(page: string, heading: string): string {
  const at = page.indexOf(`\n## ${heading}\n`);
  assert.ok(at >= 0, `docs/operating.md has a "## ${heading}" heading`);
  const end = page.indexOf('\n## ', at + 1);
  return page.slice(at, end < 0 ? undefined : end);
}

/** The backticked first cell(s) of each table row: `ntp_x`, or `GET /api/x`, `HEAD /api/x`. */
function firstCells(text: string, pattern: RegExp): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...line.split(' | ')[0]!.matchAll(/`([^`]+)`/g)].map((match) => match[1]!))
    .filter((cell) => pattern.test(cell));
}

const sorted = (items: Iterable<string>): string[] => [...new Set(items)].sort();

/** The table under `## heading` lists exactly what the sources define: each missing row and each stale one named. */
function assertTableMatches(defined: readonly string[], listed: readonly string[], heading: string): void {
  assert.deepEqual(
    defined.filter((entry) => !listed.includes(entry)),
    [],
    `add a row to the table under "## ${heading}" in docs/operating.md`,
  );
  assert.deepEqual(
    listed.filter((entry) => !defined.includes(entry)),
    [],
    `remove the row under "## ${heading}" of what the server no longer has`,
  );
}

describe('docs/operating.md', () => {
  const page = readFileSync(PAGE, 'utf8');

  test('the metrics table lists every series src/admin/metrics.ts defines, and none it does not', TIMEOUT, () => {
    const source = readFileSync(join(REPO_ROOT, 'src', 'admin', 'metrics.ts'), 'utf8');
    const defined = sorted([...source.matchAll(/name: '(ntp_[a-z0-9_]+)'/g)].map((match) => match[1]!));
    assert.ok(defined.length > 20, `the series were found in the source (${defined.length})`);
    assertTableMatches(defined, sorted(firstCells(section(page, 'Metrics'), /^ntp_/)), 'Metrics');
  });

  test('the admin API table lists every route the admin server answers, and none it does not', TIMEOUT, () => {
    const api = readFileSync(join(REPO_ROOT, 'src', 'admin', 'api.ts'), 'utf8');
    const adminServer = readFileSync(join(REPO_ROOT, 'src', 'admin', 'admin-server.ts'), 'utf8');
    // handleApi's comment names each route it serves; the admin server itself serves the metrics and the event stream.
    const commented = [...api.matchAll(/^ \*\s+(GET|POST|PUT|DELETE)\s+(\/api\/\S+)/gm)].map((match) => `${match[1]} ${match[2]}`);
    assert.ok(commented.length > 10, `the routes were found in handleApi's comment (${commented.length})`);
    assert.match(adminServer, /path === '\/metrics'/);
    assert.match(adminServer, /path === EVENTS_PATH/);
    const served = sorted([...commented, 'GET /metrics', 'HEAD /metrics', `GET ${EVENTS_PATH}`]);
    // A route whose path is a literal in handleApi must be in its comment too, so that the comment cannot fall behind.
    const literal = [...api.matchAll(/path === '(\/api\/[^']+)'/g)].map((match) => match[1]!);
    assert.deepEqual(
      literal.filter((path) => !commented.some((route) => route.endsWith(` ${path}`))),
      [],
      "name the route in handleApi's comment",
    );
    assertTableMatches(served, sorted(firstCells(section(page, 'Admin API'), /^(GET|HEAD|POST|PUT|DELETE) \//)), 'Admin API');
  });
});
