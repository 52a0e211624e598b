import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { HEALTH_CHECK_DEFAULTS, loadGroupDirectory, loadGroupFile, loadServerConfig, type PoolsConfig } from '../../src/config/index.js';
import { startAdmin } from '../helpers/admin.js';
import { configError } from '../helpers/config-errors.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { startServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';
import { REPO_ROOT } from '../helpers/paths.js';

type App = Record<string, unknown>;

/** A groups directory with one file per group, each app written as given. */
function groupsDir(groups: Record<string, App[]>): TestConfigDir {
  const config = makeConfigDir([]);
  for (const [name, apps] of Object.entries(groups)) writeGroup(config, name, apps);
  return config;
}

function writeGroup(config: TestConfigDir, name: string, apps: App[]): string {
  const file = config.groupFile(name);
  writeFileSync(file, stringify({ name, secret: randomSecret(), apps }));
  return file;
}

const web = (port?: number, extra: App = {}): App => ({
  name: 'web',
  local: '127.0.0.1:8080',
  pool: 'web',
  ...(port === undefined ? {} : { remotePort: port }),
  ...extra,
});

/** The directory's one error (it must have exactly one) and the groups it accepted. */
function loadWithOneError(config: TestConfigDir, pools: PoolsConfig = {}) {
  const { groups, errors } = loadGroupDirectory(config.groupsDir, {}, new Map(), { pools });
  assert.equal(errors.length, 1, errors.map((e) => e.message).join('\n'));
  return { error: errors[0]!, accepted: groups.map((g) => g.name) };
}

describe('pool membership in the groups directory', () => {
  test("members may share a port; one that leaves remotePort out gets the pool's", () => {
    const config = groupsDir({ a: [web(6080)], b: [web()], c: [web(6080)] });
    const { groups, errors } = loadGroupDirectory(config.groupsDir, {}, new Map());
    assert.deepEqual(errors, []);
    assert.deepEqual(
      groups.map((g) => [g.name, g.apps[0]!.remotePort]),
      [
        ['a', 6080],
        ['b', 6080],
        ['c', 6080],
      ],
    );
  });

  test('a member on another port is refused, naming both groups and files, its line and field', () => {
    const config = groupsDir({ a: [web(6080)], b: [web(6081)] });
    const { error, accepted } = loadWithOneError(config);
    assert.deepEqual(accepted, ['a']);
    assert.equal(error.file, config.groupFile('b'));
    assert.equal(error.field, 'apps[0].remotePort');
    assert.ok(error.line !== undefined && error.message.startsWith(`${config.groupFile('b')}:${error.line}: apps[0].remotePort:`), error.message);
    assert.match(error.message, /pool "web" is on port 6080 \(fixed by group a \(.*a\.yaml\)\), this file says 6081/);
  });

  test('the server config fixes the port when it names one', () => {
    const config = groupsDir({ a: [web(6081)], b: [web()] });
    const { error, accepted } = loadWithOneError(config, { web: { balance: 'round_robin', remotePort: 6080 } });
    assert.deepEqual(accepted, ['b']);
    assert.match(error.message, /a\.yaml:\d+: apps\[0\]\.remotePort: pool "web" is on port 6080 \(fixed by pools\.web\.remotePort in the server config\)/);
  });

  test('a pool with no port anywhere is refused', () => {
    const { error } = loadWithOneError(groupsDir({ a: [web()] }));
    assert.match(error.message, /pool "web" has no public port yet/);
  });

  test("a plain app on a pool's port is refused, and so is a pooled app on a plain app's port", () => {
    const first = loadWithOneError(groupsDir({ a: [web(6080)], b: [{ name: 'other', local: '127.0.0.1:1', remotePort: 6080 }] }));
    assert.match(first.error.message, /b\.yaml:\d+: apps\[0\]\.remotePort: port 6080 is already claimed by pool web/);
    const second = loadWithOneError(groupsDir({ a: [{ name: 'other', local: '127.0.0.1:1', remotePort: 6080 }], b: [web(6080)] }));
    assert.match(second.error.message, /b\.yaml:\d+: apps\[0\]\.remotePort: port 6080 is already claimed by a\/other/);
  });

  test('policy: a group that pools.NAME.groups does not list is refused at load', () => {
    const pools: PoolsConfig = { web: { balance: 'round_robin', remotePort: 6080, groups: ['a', 'b'] } };
    const { error, accepted } = loadWithOneError(groupsDir({ a: [web()], b: [web()], c: [web()] }), pools);
    assert.deepEqual(accepted, ['a', 'b']);
    assert.equal(error.field, 'apps[0].pool');
    assert.match(error.message, /c\.yaml:\d+: apps\[0\]\.pool: group "c" may not join pool "web": the server's pools\.web\.groups allows only a, b/);
  });
});

test('the shipped config examples load, with office-a and office-b in pool web on port 6080', () => {
  const root = join(REPO_ROOT, 'config');
  const server = loadServerConfig(join(root, 'commonserver.yaml'));
  const env = { OFFICE_A_SECRET: 'office-a-secret-of-the-example', OFFICE_B_SECRET: 'office-b-secret-of-the-example' };
  const { groups, errors } = loadGroupDirectory(server.groupsDir, env, new Map(), server);
  assert.deepEqual(errors, []);
  const web = groups.map((group) => group.apps.find((app) => app.pool === 'web'));
  assert.deepEqual(
    web.map((app) => app?.remotePort),
    [6080, 6080],
  );
  assert.equal(web[0]?.healthCheck?.type, 'http');
});

describe('pool and healthCheck fields in a group file', () => {
  const cases: [string, App, RegExp][] = [
    [
      'a health check without a pool',
      { name: 'x', local: '127.0.0.1:1', remotePort: 1, healthCheck: {} },
      /apps\[0\]\.healthCheck: a health check decides which member of a pool gets users/,
    ],
    ['an unknown check type', web(6080, { healthCheck: { type: 'udp' } }), /apps\[0\]\.healthCheck\.type: expected tcp or http, got "udp"/],
    ['a path on a tcp check', web(6080, { healthCheck: { path: '/health' } }), /apps\[0\]\.healthCheck\.path: a path needs type: http/],
    ['a path without its slash', web(6080, { healthCheck: { type: 'http', path: 'health' } }), /healthCheck\.path: expected a URL path starting with "\/"/],
    [
      'a timeout longer than the interval',
      web(6080, { healthCheck: { interval: '1s', timeout: '2s' } }),
      /healthCheck\.timeout: must be from 1ms to the interval \(1s\)/,
    ],
    ['an interval too short', web(6080, { healthCheck: { interval: '10ms', timeout: '5ms' } }), /healthCheck\.interval: must be at least 100ms/],
    ['zero failures', web(6080, { healthCheck: { failures: 0 } }), /healthCheck\.failures: expected a whole number from 1 to 100, got 0/],
    ['an unknown key', web(6080, { healthCheck: { retries: 3 } }), /healthCheck\.retries: unknown field/],
    ['a bad pool name', { ...web(6080), pool: 'a/b' }, /apps\[0\]\.pool: expected a pool name/],
    ['two apps of one group in one pool', web(6080), /apps\[1\]\.pool: app "web" of this group is already in pool "web"/],
    ['a UDP app in a pool', web(6080, { type: 'udp' }), /apps\[0\]\.pool: pool applies to tcp, http and https apps, not to type: udp/],
    [
      'an http check of an https app',
      { ...web(undefined, { type: 'https', domains: ['shop.test'], healthCheck: { type: 'http' } }) },
      /apps\[0\]\.healthCheck\.type: an https app is checked with type: tcp/,
    ],
  ];
  for (const [what, app, expected] of cases) {
    test(what, () => {
      const config = makeConfigDir([]);
      const apps = what.startsWith('two apps') ? [app, { ...app, name: 'web2', local: '127.0.0.1:8081' }] : [app];
      const file = writeGroup(config, 'g', apps);
      const error = configError(() => loadGroupFile(file));
      assert.equal(error.file, file);
      assert.ok(error.line !== undefined, `${error.message} names a line`);
      assert.match(error.message, expected);
    });
  }

  test('defaults: a pooled app without healthCheck gets a TCP check; http defaults to path /', () => {
    const config = makeConfigDir([]);
    const spec = loadGroupFile(
      writeGroup(config, 'g', [web(6080), { ...web(6081, { healthCheck: { type: 'http', interval: '2s' } }), name: 'api', pool: 'api' }]),
    );
    assert.deepEqual(spec.apps[0]!.healthCheck, HEALTH_CHECK_DEFAULTS);
    assert.deepEqual(spec.apps[1]!.healthCheck, { type: 'http', path: '/', intervalMs: 2000, timeoutMs: 2000, failures: 3, successes: 2 });
  });
});

describe('pools in commonserver.yaml', () => {
  const cases: [string, unknown, RegExp][] = [
    ['an unknown balance', { web: { balance: 'random' } }, /pools\.web\.balance: expected round_robin or least_conn, got "random"/],
    ['a bad group name', { web: { groups: ['ok', '../x'] } }, /pools\.web\.groups\[1\]: expected a group name/],
    ['port 0', { web: { remotePort: 0 } }, /pools\.web\.remotePort: expected a port number \(1-65535\)/],
    ['an unknown key', { web: { port: 6080 } }, /pools\.web\.port: unknown field/],
    ['a port and names', { web: { remotePort: 6080, domains: ['a.test'] } }, /pools\.web\.domains: a pool has a public port \(tcp apps\) or names/],
    ['a bad name', { web: { domains: ['bad name'] } }, /pools\.web\.domains\[0\]: expected a host name/],
  ];
  for (const [what, pools, expected] of cases) {
    test(what, () => {
      const config = makeConfigDir([], { extra: { pools } });
      const error = configError(() => loadServerConfig(config.serverFile));
      assert.equal(error.file, config.serverFile);
      assert.match(error.message, expected);
    });
  }
});

describe('pool policy through the admin API and hot reload', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('refused by the API (400 POLICY, 409 POOL_CONFLICT) and by a reload (the last good version stays)', { timeout: 20_000 }, async () => {
    const config = makeConfigDir([], { extra: { pools: { web: { groups: ['a', 'b'] } } } });
    writeGroup(config, 'a', [web(6080)]);
    const started = await startServer(config);
    cleanups.push(() => started.server.close());
    const api = await startAdmin(started.server, config);
    cleanups.push(() => api.admin.close());

    const notListed = await api.request('POST', '/api/groups', { name: 'c', secret: randomSecret(), apps: [web()] });
    assert.equal(notListed.status, 400);
    assert.equal(notListed.body.error.code, 'POLICY');
    assert.equal(notListed.body.error.field, 'apps[0].pool');
    assert.match(notListed.body.error.message, /group "c" may not join pool "web"/);

    const otherPort = await api.request('POST', '/api/groups', { name: 'b', secret: randomSecret(), apps: [web(6081)] });
    assert.equal(otherPort.status, 409);
    assert.equal(otherPort.body.error.code, 'POOL_CONFLICT');
    assert.match(otherPort.body.error.message, /pool "web" is on port 6080 \(fixed by group a/);

    const joined = await api.request('POST', '/api/groups', { name: 'b', secret: randomSecret(), apps: [web()] });
    assert.equal(joined.status, 201);
    assert.equal(joined.body.group.apps[0].remotePort, 6080);
    assert.equal(joined.body.group.apps[0].pool, 'web');

    // An edit by hand that moves b out of the policy: reported, b keeps its last good version.
    writeFileSync(
      join(config.groupsDir, 'b.yaml'),
      stringify({
        name: 'b',
        secret: randomSecret(),
        apps: [
          { ...web(), pool: 'web', name: 'web' },
          { name: 'x', local: '127.0.0.1:1', pool: 'web', remotePort: 6080 },
        ],
      }),
    );
    writeGroup(config, 'c', [web()]);
    await api.admin.registry.sync();
    const failure = await waitForEvent(started.events, (e) => e.type === 'group-registration-failed' && e.file.endsWith('c.yaml'), 'c refused on reload');
    assert.match((failure as { reason: string }).reason, /may not join pool "web"/);
    assert.equal(started.server.readyGroup.has('c'), false);
    assert.equal(started.server.readyGroup.get('b')?.apps.length, 1, "b's bad edit is refused: its last good version stays");
  });
});
