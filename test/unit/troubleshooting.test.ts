import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ADMIN_ERROR_CODES } from '../../src/admin/http-util.js';
import { CONTROL_EXIT, EXIT, STOP_SIGNALS, stoppedAgainExit, VERIFY_EXIT } from '../../src/cli/exit-codes.js';
import { TRUST_ERROR_CODES } from '../../src/client/index.js';
import { PROXY_ERROR_CODES } from '../../src/client/proxy-handshake.js';
import { CONFIG_ERROR_CODES } from '../../src/config/index.js';
import { WEBSOCKET_ERROR_CODES } from '../../src/net/websocket-stream.js';
import { GOODBYE_CODES, LOGIN_REJECT_CODES, PROTOCOL_ERROR_CODES } from '../../src/protocol/index.js';
import { BAD_PEER_CODES, DEPARTURE_CODES, REGISTRY_ERROR_CODES } from '../../src/server/index.js';
import { VHOST_STATUSES } from '../../src/vhost/pages.js';
import { HTTPS_REFUSAL_CODES } from '../../src/vhost/index.js';
import { REPO_ROOT } from '../helpers/paths.js';

const TIMEOUT = { timeout: 20_000 };
const PAGE = join(REPO_ROOT, 'docs', 'troubleshooting.md');

/** Each heading of the page with a table, and the codes the sources define for it. */
const SECTIONS: Readonly<Record<string, readonly (string | number)[]>> = {
  'Login refused': [...LOGIN_REJECT_CODES, ...TRUST_ERROR_CODES],
  'Cannot reach the server through a proxy or WebSocket': [...PROXY_ERROR_CODES, ...WEBSOCKET_ERROR_CODES],
  Disconnected: [...GOODBYE_CODES, ...DEPARTURE_CODES],
  'Connections cut off on the common port': [...BAD_PEER_CODES, ...PROTOCOL_ERROR_CODES],
  'Vhost refusals': [...HTTPS_REFUSAL_CODES, ...VHOST_STATUSES],
  'Config errors': CONFIG_ERROR_CODES,
  'Registry changes refused': REGISTRY_ERROR_CODES,
  'Admin API errors': ADMIN_ERROR_CODES,
  'Every command': [...Object.values(EXIT), ...STOP_SIGNALS.map(stoppedAgainExit)],
  '`verify`': Object.values(VERIFY_EXIT),
  '`groupclient status` and `groupclient reload`': Object.values(CONTROL_EXIT),
};

/** Codes of other programs that our code reads (Node's, llhttp's, OpenSSL's), never emits. */
const FOREIGN = /^(ERR_|HPE_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$)/;

/** The codes of each table row (its first cell: `CODE` or a number), by the heading above it. */
function pageEntries(text: string): Map<string, string[]> {
  const entries = new Map<string, string[]>();
  let heading = '';
  for (const line of text.split('\n')) {
    const title = /^#{2,3} (.+)$/.exec(line);
    if (title) heading = title[1]!;
    const row = /^\| (?:`([A-Z][A-Z0-9_]*)`|(\d+)) \|/.exec(line);
    if (row) entries.set(heading, [...(entries.get(heading) ?? []), row[1] ?? row[2]!]);
  }
  return entries;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

describe('docs/troubleshooting.md', () => {
  const entries = pageEntries(readFileSync(PAGE, 'utf8'));

  for (const [heading, codes] of Object.entries(SECTIONS)) {
    test(`"${heading}" lists exactly the codes the sources define`, TIMEOUT, () => {
      const listed = entries.get(heading) ?? [];
      const expected = new Set(codes.map(String));
      const missing = [...expected].filter((code) => !listed.includes(code));
      const stale = listed.filter((code) => !expected.has(code));
      assert.deepEqual(missing, [], `add a row to docs/troubleshooting.md under "${heading}" for: ${missing.join(', ')}`);
      assert.deepEqual(stale, [], `the sources no longer define, under "${heading}": ${stale.join(', ')}`);
      assert.equal(new Set(listed).size, listed.length, `a code listed twice under "${heading}"`);
    });
  }

  test('every table of the page is one the test checks', TIMEOUT, () => {
    assert.deepEqual(
      [...entries.keys()].filter((heading) => !(heading in SECTIONS)),
      [],
    );
  });

  test('every code-like string literal in src/ is in one of the lists above (a new code goes in its typed list)', TIMEOUT, () => {
    const known = new Set(Object.values(SECTIONS).flat().map(String));
    const loose = new Map<string, string>();
    for (const file of sourceFiles(join(REPO_ROOT, 'src'))) {
      for (const [, code] of readFileSync(file, 'utf8').matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)'/g))
        if (!known.has(code!) && !FOREIGN.test(code!)) loose.set(code!, file.slice(REPO_ROOT.length + 1));
    }
    assert.deepEqual(Object.fromEntries(loose), {});
  });

  test('the CLIs exit only through the exit tables, each status meaning one thing per table', TIMEOUT, () => {
    for (const file of sourceFiles(join(REPO_ROOT, 'src', 'cli'))) {
      const bare = readFileSync(file, 'utf8').match(/return \d+;|exit: \d|process\.exit\(\d/g);
      assert.equal(bare, null, `${file.slice(REPO_ROOT.length + 1)}: use EXIT, VERIFY_EXIT or CONTROL_EXIT (src/cli/exit-codes.ts)`);
    }
    for (const table of [EXIT, VERIFY_EXIT, CONTROL_EXIT]) assert.equal(new Set(Object.values(table)).size, Object.values(table).length);
  });
});
