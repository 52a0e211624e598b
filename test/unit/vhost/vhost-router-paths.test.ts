import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseGroupFile, YamlFile } from '../../../src/config/index.js';
import { normalisePath, PathError, VhostRouter } from '../../../src/vhost/index.js';

/**
 * The vhost router against an independent reading of each path: WHATWG URL (as browsers and
 * Node resolve it: dot segments, `%2e`, `\` as `/`), then each segment decoded, repeated
 * slashes merged, with and without `;` parameters, without regard to case. A location covers
 * a reading when the reading starts with it (or is its directory, `/admin` for `/admin/`); the
 * longest cover is the route. The router must pick that route for every reading, or refuse.
 */

const SEGMENTS = ['admin', 'Admin', 'api', 'a', 'b'];
const location = fc
  .tuple(fc.array(fc.constantFrom(...SEGMENTS), { maxLength: 3 }), fc.boolean())
  .map(([segments, directory]) => `/${segments.join('/')}${directory && segments.length > 0 ? '/' : ''}`);
/** One to four locations, none equal to another without regard to case (the config would refuse those as one claim). */
const locations = fc.uniqueArray(location, { minLength: 1, maxLength: 4, selector: (value) => value.toLowerCase() });

/** Pieces of paths an attacker writes: dot segments plain and escaped, escaped letters, slashes, parameters... */
const CLEAN_PIECES = [
  '/',
  '//',
  '.',
  '..',
  '%2e',
  '%2E',
  '%2e%2e',
  '.%2E',
  'admin',
  'ADMIN',
  'dmin',
  'a',
  'b',
  'api',
  'apis',
  'x',
  '%61',
  '%41',
  '%64min',
  '%7e',
  '~',
  '{',
  '%7B',
  '%20',
  '-',
  '%3F',
  '%23',
  '?q=/admin',
];
const HOSTILE_PIECES = ['%25', '%2F', '%2f', '\\', '%5c', '%5C', ';', ';p', '..;', '%3B', '%3b', '%2561', '%252e', '#', '%00', '%0a', '%zz', '%'];
const rawPath = (pieces: string[]): fc.Arbitrary<string> => fc.array(fc.constantFrom(...pieces), { maxLength: 12 }).map((parts) => `/${parts.join('')}`);

/** How a backend may read `raw`: the WHATWG path, segments decoded, slashes merged; with and without `;` parameters. */
function readings(raw: string): string[] {
  const resolved = new URL(`http://h.test${raw}`).pathname;
  const decoded = resolved.split('/').map(decodeSegment).join('/');
  const merged = decoded.replace(/\/{2,}/g, '/');
  const withoutParams = merged
    .split('/')
    .map((segment) => segment.split(';')[0]!)
    .join('/')
    .replace(/\/{2,}/g, '/');
  return [merged, resolveDots(withoutParams)].map((reading) => reading.toLowerCase());
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function resolveDots(path: string): string {
  // Characters the URL parser would read as delimiters, or trim and drop, stand for any other non-letter.
  return new URL(`http://h.test${path.replace(/[?#%\\\s]/g, '_')}`).pathname;
}

/** The longest location covering `reading`, as its index. */
function coveringLocation(all: readonly string[], reading: string): number | undefined {
  let best: number | undefined;
  let bestLength = -1;
  for (const [index, candidate] of all.entries()) {
    const lower = candidate.toLowerCase();
    const length = reading.startsWith(lower)
      ? lower.length
      : lower.endsWith('/') && lower.length > 1 && reading === lower.slice(0, -1)
        ? lower.length - 0.5
        : -1;
    if (length > bestLength) [best, bestLength] = [index, length];
  }
  return best;
}

/** A router whose apps `app0`, `app1`... of group `g` hold `all` on `paths.test`, in that order. */
function routerFor(all: readonly string[]): VhostRouter {
  const apps = all.map(
    (path, index) => `  - { name: app${index}, local: 127.0.0.1:${1000 + index}, type: http, domains: [paths.test], locations: ["${path}"] }`,
  );
  const spec = parseGroupFile(YamlFile.parse('g.yaml', `name: g\nsecret: ${'s'.repeat(20)}\napps:\n${apps.join('\n')}\n`), {}, { baseDir: '.' });
  const router = new VhostRouter({ http: { host: '127.0.0.1', port: 0 }, headersTimeoutMs: 10_000 });
  router.rebuild([spec]);
  return router;
}

/** What the router does with `raw`: the index of the app it routes to, undefined for none, 'refused' for a 400. */
function routed(router: VhostRouter, raw: string): number | undefined | 'refused' {
  let path: string;
  try {
    path = normalisePath(raw.split('?')[0]!);
  } catch (error) {
    if (error instanceof PathError) return 'refused';
    throw error;
  }
  const route = router.resolve('http', 'paths.test', path);
  if (route.kind === 'ambiguous') return 'refused';
  if (route.kind === 'unknown') return undefined;
  assert.equal(route.kind, 'offline', 'no target is attached: a known route is offline');
  return Number(/^g\/app(\d+)$/.exec(route.kind === 'offline' ? route.label : '')![1]);
}

/** Paths per set of locations: building a router parses a group file, which costs far more than a path. */
const PATHS_PER_ROUTER = 20;

test('a location matches exactly when every reading of the path is under it, or the path is refused', { timeout: 60_000 }, () => {
  fc.assert(
    fc.property(
      locations,
      fc.array(rawPath([...CLEAN_PIECES, ...HOSTILE_PIECES]), { minLength: PATHS_PER_ROUTER, maxLength: PATHS_PER_ROUTER }),
      (all, raws) => {
        const router = routerFor(all);
        for (const raw of raws) {
          const ours = routed(router, raw);
          if (ours === 'refused') continue;
          for (const reading of readings(raw))
            assert.equal(ours, coveringLocation(all, reading), `${raw} routed to ${String(ours)}, read by an app as ${reading}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('paths without hostile pieces are never refused, and route as the app reads them', { timeout: 60_000 }, () => {
  fc.assert(
    fc.property(locations, fc.array(rawPath(CLEAN_PIECES), { minLength: PATHS_PER_ROUTER, maxLength: PATHS_PER_ROUTER }), (all, raws) => {
      const router = routerFor(all);
      for (const raw of raws) {
        const ours = routed(router, raw);
        assert.notEqual(ours, 'refused', `${raw} was refused`);
        assert.equal(ours, coveringLocation(all, readings(raw)[0]!), raw);
      }
    }),
    { numRuns: 300 },
  );
});

test('the normal form is a fixed point, and every spelling of a path normalises to it', { timeout: 60_000 }, () => {
  const segment = fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,=:@-]{1,8}$/).filter((value) => value !== '.' && value !== '..');
  const spelling = fc.constantFrom('plain', 'escaped', 'lower-hex');
  fc.assert(
    fc.property(
      fc.array(segment, { minLength: 1, maxLength: 5 }),
      fc.array(fc.tuple(spelling, fc.constantFrom('', './', 'zz/../', '/')), { minLength: 40, maxLength: 40 }),
      (segments, noise) => {
        const normal = `/${segments.join('/')}`;
        assert.equal(normalisePath(normal), normal);
        let i = 0;
        const respelt = segments
          .map((part) => {
            const [how, extra] = noise[i++ % noise.length]!;
            const chars = [...part].map((char) => {
              const hex = char.charCodeAt(0).toString(16).padStart(2, '0');
              return how === 'plain' ? char : `%${how === 'escaped' ? hex.toUpperCase() : hex}`;
            });
            return `${extra}${chars.join('')}`;
          })
          .join('/');
        assert.equal(normalisePath(`/${respelt}`), normal, `/${respelt}`);
      },
    ),
    { numRuns: 2000 },
  );
});

test('what the normal form keeps escaped, and what it refuses', () => {
  assert.equal(normalisePath('/caf\xc3\xa9/a{b}/%3f/%23/%25/x%20y'), '/caf%C3%A9/a%7Bb%7D/%3F/%23/%25/x%20y');
  assert.equal(normalisePath('/a/b/..'), '/a/');
  assert.equal(normalisePath('/../..//a/./'), '/a/');
  assert.equal(normalisePath('/x;p/..;/admin'), '/x;p/..;/admin', 'parameters are kept: the router matches both readings');
  for (const raw of ['/a%2Fb', '/a\\b', '/a%5cb', '/%2561', '/a%3Bb', '/%00', '/%0d%0a', '/a#b', '/%g1', '/%4', 'admin']) {
    assert.throws(() => normalisePath(raw), PathError, raw);
  }
});
