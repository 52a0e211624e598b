import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import {
  parseGroupFile,
  reloadEffect,
  serverConfigSchema,
  specChanges,
  YamlFile,
  type ConfigKind,
  type FieldEffect,
  type GroupSpec,
} from '../../src/config/index.js';
import { CONFIGURATION_PAGE, configurationPage, fileReference } from '../../scripts/config-reference.js';
import { REPO_ROOT } from '../helpers/paths.js';

const TIMEOUT = { timeout: 20_000 };

/** Every section's example put together: one file of `kind` as the page shows it. */
function pageExample(kind: ConfigKind): Record<string, unknown> {
  const file: Record<string, unknown> = {};
  for (const section of fileReference(kind).sections) {
    if (section.exampleValue === undefined) continue;
    if (section.name === undefined) Object.assign(file, section.exampleValue);
    else file[section.name] = section.exampleValue;
  }
  return file;
}

describe('docs/configuration.md', () => {
  test('the committed page is what the script writes from the schemas', TIMEOUT, () => {
    assert.equal(CONFIGURATION_PAGE, join(REPO_ROOT, 'docs', 'configuration.md'));
    const committed = readFileSync(CONFIGURATION_PAGE, 'utf8');
    assert.ok(committed === configurationPage(), 'docs/configuration.md differs from the zod schemas: run `npm run docs` and commit docs/configuration.md');
  });

  test('every field of both files has a row, with a type and when a change applies', TIMEOUT, () => {
    const server = fileReference('commonserver').sections.flatMap((section) => section.rows.map((row) => row.path));
    for (const path of ['bind', 'heartbeat.interval', 'pools.<name>.balance', 'admin.token', 'cluster.tls.ca', 'limits.maxMuxStreams'])
      assert.ok(server.includes(path), path);
    const group = fileReference('group').sections.flatMap((section) => section.rows);
    for (const path of ['secret', 'serverCa', 'apps[].local', 'apps[].udp.maxSessions', 'apps[].basicAuth.password', 'servers[].fingerprint'])
      assert.ok(
        group.some((row) => row.path === path),
        path,
      );
    for (const row of group) assert.ok(row.type !== '' && row.reload !== '', row.path);
  });

  test('a default is shown as it is written: durations in their unit, not milliseconds', TIMEOUT, () => {
    const rows = fileReference('commonserver').sections.flatMap((section) => section.rows);
    const row = (path: string) => rows.find((one) => one.path === path);
    assert.equal(row('heartbeat.timeout')?.default, '30s');
    assert.equal(row('admin.headersTimeout')?.default, '10s');
    assert.equal(row('cluster.leaseTtl')?.type, 'duration');
    assert.equal(row('bind')?.default, '0.0.0.0:7000');
  });

  test("the page's examples load, each file's sections put together", TIMEOUT, () => {
    const dir = mkdtempSync(join(tmpdir(), 'config-reference-'));
    const server = join(dir, 'commonserver.yaml');
    writeFileSync(server, stringify(pageExample('commonserver')));
    const yaml = YamlFile.read(server);
    assert.doesNotThrow(() => yaml.parse(serverConfigSchema({ file: server, env: {} }), yaml.root() ?? {}));
    const group = pageExample('group');
    const file = join(dir, `${String(group.name)}.yaml`);
    writeFileSync(file, stringify(group));
    assert.doesNotThrow(() => parseGroupFile(YamlFile.read(file), { OFFICE_A_SECRET: 'a-secret-of-sixteen-chars' }));
  });
});

describe('the Reload column is what a reload does', () => {
  const base = {
    name: 'g',
    secret: 's'.repeat(16),
    apps: [
      { name: 'web', local: '127.0.0.1:80', type: 'http', domains: ['web.example.com'] },
      { name: 'dns', local: '127.0.0.1:53', type: 'udp', remotePort: 5353 },
    ],
  };
  const dir = mkdtempSync(join(tmpdir(), 'config-reference-'));
  writeFileSync(join(dir, 'ca.pem'), '');
  const spec = (body: Record<string, unknown>): GroupSpec => parseGroupFile(YamlFile.parse(join(dir, 'g.yaml'), stringify(body)));
  const withApp = (index: number, fields: Record<string, unknown>) => ({
    ...base,
    apps: base.apps.map((app, i) => (i === index ? { ...app, ...fields } : app)),
  });

  // Fields whose name in the file differs from the spec's (serverCa is kept as serverCaFile,
  // domains under vhost), and nested ones, which take their section's effect.
  const cases: [path: string[], after: Record<string, unknown>][] = [
    [['secret'], { ...base, secret: 't'.repeat(16) }],
    [['serverCa'], { ...base, serverCa: 'ca.pem' }],
    [['logLevel'], { ...base, logLevel: 'debug' }],
    [['apps', 'domains'], withApp(0, { domains: ['www.example.com'] })],
    [['apps', 'hostHeaderRewrite'], withApp(0, { hostHeaderRewrite: 'internal' })],
    [['apps', 'udp', 'maxSessions'], withApp(1, { udp: { maxSessions: 8 } })],
    [['apps', 'allow'], withApp(1, { allow: '10.0.0.0/8' })],
  ];
  test('a field no table describes has no effect, which the page refuses to guess', TIMEOUT, () => {
    assert.equal(reloadEffect(['noSuchField']), undefined);
    assert.equal(reloadEffect(['apps', 'noSuchField']), undefined);
  });

  for (const [path, after] of cases) {
    test(`${path.join('.')}: the page says what specChanges reports`, TIMEOUT, () => {
      const changes = specChanges(spec(base), spec(after));
      assert.equal(changes.length, 1, JSON.stringify(changes));
      assert.deepEqual<FieldEffect | undefined>(reloadEffect(path), changes[0]!.effect);
    });
  }
});
