import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import { parseGroupFile, YamlFile, type GroupSpec } from '../../../src/config/index.js';
import { rewriteResponseHead, withHeaderRules } from '../../../src/vhost/header-rewrite.js';
import { parseResponseHead } from '../../../src/net/http-head.js';
import { configError } from '../../helpers/config-errors.js';

const SECRET = 's'.repeat(24);

function group(app: Record<string, unknown>): GroupSpec {
  const text = stringify({ name: 'g', secret: SECRET, apps: [{ name: 'web', local: '127.0.0.1:8080', type: 'http', domains: ['web.test'], ...app }] });
  return parseGroupFile(YamlFile.parse('g.yaml', text), {}, { baseDir: '.' });
}

describe('requestHeaders and responseHeaders in a group file', () => {
  test('read into set lines (names as written) and removed names (lower case, "_" as "-")', () => {
    const vhost = group({
      requestHeaders: { set: { 'X-Env': 'prod', 'X-Version': 2 }, remove: ['X_Debug'] },
      responseHeaders: { set: { 'Cache-Control': 'no-store' } },
    }).apps[0]!.vhost!;
    assert.deepEqual(vhost.requestHeaders, {
      set: [
        ['X-Env', 'prod'],
        ['X-Version', '2'],
      ],
      remove: ['x-debug'],
    });
    assert.deepEqual(vhost.responseHeaders, { set: [['Cache-Control', 'no-store']], remove: [] });
  });

  const REFUSED: [what: string, app: Record<string, unknown>, field: string, says: RegExp][] = [
    ['a hop-by-hop header in set', { requestHeaders: { set: { Connection: 'close' } } }, 'apps[0].requestHeaders.set.Connection', /hop-by-hop or framing/],
    [
      'a framing header in set',
      { responseHeaders: { set: { 'Transfer-Encoding': 'chunked' } } },
      'apps[0].responseHeaders.set.Transfer-Encoding',
      /hop-by-hop or framing/,
    ],
    ['Content-Length in remove', { responseHeaders: { remove: ['content-length'] } }, 'apps[0].responseHeaders.remove[0]', /hop-by-hop or framing/],
    ['Upgrade under its "_" spelling', { requestHeaders: { set: { Keep_Alive: '1' } } }, 'apps[0].requestHeaders.set.Keep_Alive', /hop-by-hop or framing/],
    ['Host in set', { requestHeaders: { set: { Host: 'other.test' } } }, 'apps[0].requestHeaders.set.Host', /use hostHeaderRewrite/],
    ['a CR LF in a value', { requestHeaders: { set: { 'X-A': 'one\r\nX-Injected: two' } } }, 'apps[0].requestHeaders.set.X-A', /without line breaks/],
    ['a NUL in a value', { responseHeaders: { set: { 'X-A': 'a\u0000b' } } }, 'apps[0].responseHeaders.set.X-A', /without line breaks or control characters/],
    ['a value past 4096 characters', { requestHeaders: { set: { 'X-A': 'x'.repeat(4097) } } }, 'apps[0].requestHeaders.set.X-A', /at most 4096/],
    ['a name with a space', { requestHeaders: { set: { 'X A': '1' } } }, 'apps[0].requestHeaders.set.X A', /expected a header name/],
    ['a name with a colon in remove', { requestHeaders: { remove: ['X-A:'] } }, 'apps[0].requestHeaders.remove[0]', /expected a header name/],
    ['one name twice', { requestHeaders: { set: { 'X-A': '1', 'x-a': '2' } } }, 'apps[0].requestHeaders.set.x-a', /already named as X-A/],
    ['a name in set and remove', { requestHeaders: { set: { 'X-A': '1' }, remove: ['X-A'] } }, 'apps[0].requestHeaders.remove[0]', /already named/],
    ['an unknown key', { requestHeaders: { add: { 'X-A': '1' } } }, 'apps[0].requestHeaders.add', /unknown field/],
    ['more than 64 lines', { responseHeaders: { remove: Array.from({ length: 65 }, (_, i) => `X-${i}`) } }, 'apps[0].responseHeaders.remove', /at most 64/],
    ['on an https app', { type: 'https', requestHeaders: { set: { 'X-A': '1' } } }, 'apps[0].requestHeaders', /only http apps have this field/],
    [
      'on a tcp app',
      { type: 'tcp', domains: undefined, remotePort: 6000, responseHeaders: { set: { 'X-A': '1' } } },
      'apps[0].responseHeaders',
      /only apps of type http or https/,
    ],
  ];
  for (const [what, app, field, says] of REFUSED) {
    test(`refused: ${what}, naming the field`, () => {
      const error = configError(() => group(app));
      assert.equal(error.field, field, error.message);
      assert.match(error.message, says);
    });
  }
});

describe('applying header rules', () => {
  const rules = { set: [['X-Frame-Options', 'DENY'] as const, ['Cache-Control', 'no-store'] as const], remove: ['x-powered-by'] };

  test('lines named in set or remove are dropped (any case, "_" as "-"), set lines come last', () => {
    assert.deepEqual(
      withHeaderRules(
        [
          ['Content-Type', 'text/html'],
          ['cache-control', 'public'],
          ['X_Powered_By', 'php'],
          ['X-Powered-By', 'express'],
          ['Content-Length', '5'],
        ],
        rules,
      ),
      [
        ['Content-Type', 'text/html'],
        ['Content-Length', '5'],
        ['X-Frame-Options', 'DENY'],
        ['Cache-Control', 'no-store'],
      ],
    );
  });

  test("a response head keeps its status line as written; without rules its bytes are the app's own", () => {
    const bytes = Buffer.from('HTTP/1.1 404 Not Here\r\nX-Powered-By: express\r\nContent-Length: 0\r\n\r\n', 'latin1');
    const head = parseResponseHead(bytes);
    assert.equal(rewriteResponseHead(bytes, head, undefined), bytes);
    assert.equal(
      rewriteResponseHead(bytes, head, rules).toString('latin1'),
      'HTTP/1.1 404 Not Here\r\nContent-Length: 0\r\nX-Frame-Options: DENY\r\nCache-Control: no-store\r\n\r\n',
    );
  });
});
