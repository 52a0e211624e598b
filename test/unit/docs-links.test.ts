import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { anchorsOf, linksOf } from '../helpers/markdown.js';
import { REPO_ROOT } from '../helpers/paths.js';

const TIMEOUT = { timeout: 20_000 };
/** The README is the front page: what it is, the quick start, and links into docs/. */
const README_MAX_LINES = 250;

function markdownUnder(dir: string, only?: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return markdownUnder(path, only);
    return entry.endsWith('.md') && (only === undefined || entry === only) ? [path] : [];
  });
}

/** The pages a reader follows links through: the README, docs/, the examples' READMEs, SECURITY.md and the diagrams. */
const PAGES = [
  join(REPO_ROOT, 'README.md'),
  join(REPO_ROOT, 'SECURITY.md'),
  ...markdownUnder(join(REPO_ROOT, 'docs')),
  ...markdownUnder(join(REPO_ROOT, 'examples'), 'README.md'),
  ...markdownUnder(join(REPO_ROOT, 'diagrams')),
];

/** Why a relative link from `page` does not resolve, or undefined when it does. */
function brokenLink(page: string, link: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(link)) return undefined; // https:, mailto:: not a file of ours
  const [path = '', anchor] = link.split('#', 2);
  const target = path === '' ? page : resolve(dirname(page), decodeURIComponent(path));
  if (!existsSync(target)) return `${link}: no file ${relative(REPO_ROOT, target)}`;
  if (anchor === undefined || anchor === '') return undefined;
  if (!target.endsWith('.md')) return `${link}: an anchor into a file that is not Markdown`;
  return anchorsOf(readFileSync(target, 'utf8')).has(anchor) ? undefined : `${link}: no heading of ${relative(REPO_ROOT, target)} has the anchor #${anchor}`;
}

describe('the documentation', () => {
  test('every relative link of README.md, docs/, the examples, SECURITY.md and diagrams/ names an existing file and heading', TIMEOUT, () => {
    assert.ok(PAGES.length > 10, `the pages were found (${PAGES.length})`);
    const broken = PAGES.flatMap((page) =>
      linksOf(readFileSync(page, 'utf8'))
        .map((link) => brokenLink(page, link))
        .filter((problem) => problem !== undefined)
        .map((problem) => `${relative(REPO_ROOT, page)}: ${problem}`),
    );
    assert.deepEqual(broken, []);
  });

  test(`README.md stays a front page: at most ${README_MAX_LINES} lines, linking every page of docs/`, TIMEOUT, () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const lines = readme.trimEnd().split('\n').length;
    assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines: move the detail into docs/`);
    const linked = new Set(linksOf(readme).map((link) => link.split('#')[0]));
    const unlinked = readdirSync(join(REPO_ROOT, 'docs'))
      .filter((page) => page.endsWith('.md') && !linked.has(`docs/${page}`))
      .map((page) => `docs/${page}`);
    assert.deepEqual(unlinked, [], 'every page of docs/ is one hop from the README');
  });

  test('GitHub anchors: markup and punctuation dropped, repeated headings numbered, nothing read inside code blocks', TIMEOUT, () => {
    const page = [
      '# Operating a host: `groupclient status` and `groupclient reload`',
      '## Web apps by name (HTTP and HTTPS)',
      '## Notes',
      '## Notes',
      '```sh',
      '# not a heading',
      '```',
    ].join('\n');
    assert.deepEqual(
      [...anchorsOf(page)],
      ['operating-a-host-groupclient-status-and-groupclient-reload', 'web-apps-by-name-http-and-https', 'notes', 'notes-1'],
    );
    assert.deepEqual(linksOf('[a](b.md#c) `[d](e.md)` ![i](img.png)\n```\n[f](g.md)\n```'), ['b.md#c', 'img.png']);
  });
});
