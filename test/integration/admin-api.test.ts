import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { firstValueFrom, filter, ReplaySubject, take, timeout, toArray } from 'rxjs';
import { loadGroupFile, loadServerConfig, ConfigError } from '../../src/config/index.js';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { startAdmin, sse, type SseMessage, type TestAdmin } from '../helpers/admin.js';
import { groupYaml, makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import type { ServerLink } from '../helpers/link.js';
import { echoRoundTrip, waitForEvent } from '../helpers/net.js';
import type { CommonServer, ServerEvent } from '../../src/server/index.js';

const TOKEN = 'admin-token-for-tests-0123456789';

describe('admin API', { timeout: 30_000 }, () => {
  let echo: TestApp;
  let config: TestConfigDir;
  let server: CommonServer;
  let events: ReplaySubject<ServerEvent>;
  let serverLink: ServerLink;
  let api: TestAdmin;
  let stopClient = (): void => {};

  before(async () => {
    echo = await startEchoApp();
    config = makeConfigDir([{ name: 'alpha', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }]);
    const started = await startServer(config);
    ({ server, events } = started);
    serverLink = started;
    api = await startAdmin(server, config, { token: TOKEN });
  });
  after(async () => {
    stopClient();
    await api.admin.close();
    await server.close();
    await echo.close();
  });

  test('every /api route and /metrics needs the token; the dashboard page does not', async () => {
    for (const path of ['/api/groups', '/api/readyGroup', '/api/events/recent', '/metrics']) {
      const missing = await api.request('GET', path, undefined, { token: null });
      assert.equal(missing.status, 401, path);
      assert.equal(missing.body.error.code, 'UNAUTHORIZED');
      assert.equal((await api.request('GET', path, undefined, { token: 'wrong-token' })).status, 401, path);
    }
    const page = await fetch(`${api.url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>commonserver dashboard<\/title>/);
    assert.equal((await fetch(`${api.url}/../package.json`)).status, 404);
  });

  test('GET /api/groups shows a registered group as ready, then in use with its client and ports', async () => {
    const ready = await api.request('GET', '/api/groups');
    assert.equal(ready.status, 200);
    assert.deepEqual(
      ready.body.groups.map((g: { name: string; state: string }) => [g.name, g.state]),
      [['alpha', 'ready']],
    );
    assert.equal(ready.body.groups[0].client, null);
    assert.equal(JSON.stringify(ready.body).includes('test-secret'), false, 'no secret in the API');

    const { client } = startClient(loadGroupFile(config.groupFile('alpha')), serverLink, { clientId: 'api-client' });
    stopClient = () => client.stop();
    const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
    assert.equal(activated.type, 'group-activated');
    const port = activated.apps[0]!.remotePort;
    const payload = Buffer.alloc(1000, 7);
    assert.equal((await echoRoundTrip(port, payload)).length, 1000);
    await waitForEvent(events, (e) => e.type === 'conn-closed', 'conn closed');

    const { body } = await api.request('GET', '/api/groups/alpha');
    assert.equal(body.group.state, 'in-use');
    assert.equal(body.group.client.id, 'api-client');
    assert.match(body.group.client.address, /^127\.0\.0\.1:\d+$/);
    assert.ok(Date.parse(body.group.client.connectedSince) <= Date.now());
    assert.ok(Date.parse(body.group.client.lastHeartbeat) > 0);
    assert.deepEqual(
      { name: body.group.apps[0].name, publicPort: body.group.apps[0].publicPort, state: body.group.apps[0].state, liveConns: body.group.apps[0].liveConns },
      { name: 'echo', publicPort: port, state: 'listening', liveConns: 0 },
    );
    assert.equal(body.group.apps[0].bytesIn, 1000);
    assert.equal(body.group.apps[0].bytesOut, 1000);

    assert.deepEqual(
      (await api.request('GET', '/api/inUseGroup')).body.groups.map((g: { name: string }) => g.name),
      ['alpha'],
    );
    assert.deepEqual(
      (await api.request('GET', '/api/readyGroup')).body.groups.map((g: { name: string }) => g.name),
      ['alpha'],
    );
    const missing = await api.request('GET', '/api/groups/nobody');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'GROUP_NOT_FOUND');
  });

  test('POST registers a group: validated like the YAML, written to <name>.yaml (0600), registered at once', async () => {
    const port = await unusedPort();
    const created = await api.request(
      'POST',
      '/api/groups',
      { name: 'beta', secret: '${BETA_SECRET}', apps: [{ name: 'web', local: '127.0.0.1:8080', remotePort: port }] },
      {},
    );
    // ${BETA_SECRET} is not set in this process: refused, with the field named.
    assert.equal(created.status, 400);
    assert.equal(created.body.error.code, 'CONFIG_INVALID');
    assert.equal(created.body.error.field, 'secret');
    assert.match(created.body.error.message, /BETA_SECRET is not set/);
    assert.equal(existsSync(config.groupFile('beta')), false);

    const secret = randomSecret();
    const ok = await api.request('POST', '/api/groups', { name: 'beta', secret, apps: [{ name: 'web', local: '127.0.0.1:8080', remotePort: port }] });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(ok.body.group.name, 'beta');
    assert.equal(ok.body.group.state, 'ready');
    assert.equal(server.readyGroup.get('beta')?.apps[0]?.remotePort, port);
    assert.equal(statSync(config.groupFile('beta')).mode & 0o777, 0o600);
    assert.equal(loadGroupFile(config.groupFile('beta')).secret.reveal(), secret);

    const duplicate = await api.request('POST', '/api/groups', {
      name: 'alpha',
      secret: randomSecret(),
      apps: [{ name: 'x', local: '127.0.0.1:1', remotePort: 0 }],
    });
    assert.equal(duplicate.status, 409);
    assert.equal(duplicate.body.error.code, 'GROUP_EXISTS');
    assert.match(duplicate.body.error.message, /group "alpha" is already registered/);

    const claimed = await api.request('POST', '/api/groups', {
      name: 'gamma',
      secret: randomSecret(),
      apps: [{ name: 'db', local: '127.0.0.1:5432', remotePort: port }],
    });
    assert.equal(claimed.status, 409);
    assert.equal(claimed.body.error.code, 'PORT_CLAIMED');
    assert.equal(claimed.body.error.field, 'apps.db.remotePort');
    assert.match(claimed.body.error.message, new RegExp(`port ${port} is already claimed by beta/web`));

    const cases: [unknown, string, RegExp][] = [
      [{ name: 'delta', secret: randomSecret(), apps: [{ name: 'x', local: 'nowhere', remotePort: 0 }] }, 'apps[0].local', /expected "host:port"/],
      [{ name: 'delta', secret: 'short', apps: [{ name: 'x', local: '127.0.0.1:1', remotePort: 0 }] }, 'secret', /too short/],
      [{ name: 'delta', secret: randomSecret(), apps: [] }, 'apps', /at least one app/],
      [{ name: 'bad name!', secret: randomSecret(), apps: [{ name: 'x', local: '127.0.0.1:1', remotePort: 0 }] }, 'name', /group name/],
      [{ name: 'delta', secret: randomSecret(), apps: [{ name: 'x', local: '127.0.0.1:1', remotePort: 70000 }] }, 'apps[0].remotePort', /port number/],
      [{ name: 'delta', secret: randomSecret(), colour: 'red', apps: [{ name: 'x', local: '127.0.0.1:1', remotePort: 0 }] }, 'colour', /unknown field/],
    ];
    for (const [body, field, message] of cases) {
      const refused = await api.request('POST', '/api/groups', body);
      assert.equal(refused.status, 400, JSON.stringify(body));
      assert.equal(refused.body.error.field, field);
      assert.match(refused.body.error.message, message);
    }
    const notYaml = await api.request('POST', '/api/groups', undefined, { raw: '{ "name": "delta", ' });
    assert.equal(notYaml.status, 400);
    assert.equal(notYaml.body.error.code, 'CONFIG_PARSE');
    const empty = await api.request('POST', '/api/groups', undefined, { raw: '' });
    assert.equal(empty.body.error.code, 'BODY_MISSING');
    const huge = await api.request('POST', '/api/groups', undefined, { raw: 'x'.repeat(100 * 1024) });
    assert.equal(huge.status, 413);
    assert.equal(huge.body.error.code, 'BODY_TOO_LARGE');
    assert.equal(existsSync(config.groupFile('delta')), false);
    assert.deepEqual(readdirSync(config.groupsDir).sort(), ['alpha.yaml', 'beta.yaml'], 'no stray files');
  });

  test('PUT replaces a group file; DELETE removes it; wrong names and methods are refused', async () => {
    const updated = await api.request('PUT', '/api/groups/beta', {
      name: 'beta',
      secret: randomSecret(),
      apps: [
        { name: 'web', local: '127.0.0.1:8081', remotePort: 0 },
        { name: 'ssh', local: '127.0.0.1:22', remotePort: 0 },
      ],
    });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.deepEqual(
      updated.body.group.apps.map((a: { name: string }) => a.name),
      ['web', 'ssh'],
    );
    assert.deepEqual(
      server.readyGroup.get('beta')?.apps.map((a) => a.local.port),
      [8081, 22],
    );

    const mismatch = await api.request('PUT', '/api/groups/beta', {
      name: 'alpha',
      secret: randomSecret(),
      apps: [{ name: 'x', local: '127.0.0.1:1', remotePort: 0 }],
    });
    assert.equal(mismatch.status, 400);
    assert.equal(mismatch.body.error.code, 'NAME_MISMATCH');
    const absent = await api.request('PUT', '/api/groups/nobody', {
      name: 'nobody',
      secret: randomSecret(),
      apps: [{ name: 'x', local: '127.0.0.1:1', remotePort: 0 }],
    });
    assert.equal(absent.status, 404);

    const removed = await api.request('DELETE', '/api/groups/beta');
    assert.equal(removed.status, 200);
    assert.equal(existsSync(config.groupFile('beta')), false);
    assert.equal(server.readyGroup.has('beta'), false);
    assert.equal((await api.request('DELETE', '/api/groups/beta')).status, 404);

    assert.equal((await api.request('DELETE', '/api/groups')).body.error.code, 'METHOD_NOT_ALLOWED');
    assert.equal((await api.request('PATCH', '/api/groups/alpha')).status, 405);
    assert.equal((await api.request('GET', '/api/nothing')).status, 404);
  });

  test('/api/events streams server events; /api/events/recent lists the latest', async () => {
    const stream = new ReplaySubject<SseMessage>();
    const connection = sse(`${api.url}/api/events?token=${TOKEN}`).subscribe(stream);
    after(() => connection.unsubscribe());
    await firstValueFrom(
      stream.pipe(
        filter((m) => m.event === 'open'),
        timeout(10_000),
      ),
    );
    const file = groupYaml({ name: 'epsilon', secret: randomSecret(), apps: [{ name: 'x', localPort: 1 }] });
    assert.equal((await api.request('POST', '/api/groups', undefined, { raw: file })).status, 201, 'YAML bodies are accepted too');
    assert.equal((await api.request('DELETE', '/api/groups/epsilon')).status, 200);
    const messages = await firstValueFrom(
      stream.pipe(
        filter((m) => m.event === 'group-registered' || m.event === 'group-deregistered'),
        take(2),
        toArray(),
        timeout(10_000),
      ),
    );
    connection.unsubscribe();
    assert.deepEqual(
      messages.map((m) => [m.event, m.data.group]),
      [
        ['group-registered', 'epsilon'],
        ['group-deregistered', 'epsilon'],
      ],
    );
    assert.ok(Date.parse(messages[0]!.data.at) > 0);

    const recent = await api.request('GET', '/api/events/recent');
    assert.ok(recent.body.events.some((e: { type: string; group?: string }) => e.type === 'group-deregistered' && e.group === 'epsilon'));
    const unauthorised = await fetch(`${api.url}/api/events`);
    assert.equal(unauthorised.status, 401);
  });

  test("kick disconnects the group's client with Goodbye KICKED", async () => {
    const absent = await api.request('POST', '/api/groups/nobody/kick');
    assert.equal(absent.status, 404);
    assert.equal(absent.body.error.code, 'GROUP_NOT_IN_USE');
    const kicked = await api.request('POST', '/api/groups/alpha/kick');
    assert.equal(kicked.status, 200);
    const gone = await waitForEvent(events, (e) => e.type === 'group-deactivated' && e.code === 'KICKED', 'kick');
    assert.equal(gone.type, 'group-deactivated');
    assert.equal((await api.request('GET', '/api/groups/alpha/kick')).status, 405);
  });
});

describe('admin config', () => {
  test('refuses a non-loopback admin bind without a token; reads ${VAR} tokens and masks them', () => {
    const open = makeConfigDir([], { extra: { admin: { bind: '0.0.0.0:0' } } });
    assert.throws(
      () => loadServerConfig(open.serverFile),
      (error: ConfigError) => error.code === 'CONFIG_INVALID' && error.field === 'admin.token' && /not a loopback address/.test(error.message),
    );
    const withToken = makeConfigDir([], { extra: { admin: { bind: '0.0.0.0:0', token: '${NTP_ADMIN_TOKEN}' } } });
    const config = loadServerConfig(withToken.serverFile, { NTP_ADMIN_TOKEN: TOKEN });
    assert.equal(config.admin?.token?.reveal(), TOKEN);
    assert.equal(JSON.stringify(config).includes(TOKEN), false);
    assert.throws(() => loadServerConfig(withToken.serverFile, {}), /NTP_ADMIN_TOKEN is not set/);
    const local = loadServerConfig(makeConfigDir([], { extra: { admin: {} } }).serverFile);
    assert.deepEqual(local.admin?.bind, { host: '127.0.0.1', port: 7500 });
    assert.equal(loadServerConfig(makeConfigDir([]).serverFile).admin, undefined);
    assert.throws(() => loadServerConfig(makeConfigDir([], { extra: { admin: { user: 'x' } } }).serverFile), /admin\.user: unknown field/);
  });
});

describe('admin API under a server policy', { timeout: 20_000 }, () => {
  test('a group asking for a port outside allowPorts, too many apps or too long a port range, is refused with the reason and nothing is written', async () => {
    const config = makeConfigDir([], { extra: { allowPorts: ['20000-20099'], maxAppsPerGroup: 2, limits: { maxPortRange: 2 } } });
    const { server } = await startServer(config);
    const api = await startAdmin(server, config, { token: TOKEN });
    after(async () => {
      await api.admin.close();
      await server.close();
    });

    const outside = groupYaml({
      name: 'wide',
      secret: randomSecret(),
      apps: [
        { name: 'in', localPort: 1, remotePort: 20001 },
        { name: 'out', localPort: 2, remotePort: 30000 },
      ],
    });
    const refused = await api.request('POST', '/api/groups', undefined, { raw: outside });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.code, 'POLICY', refused.body.error.message);
    assert.equal(refused.body.error.field, 'apps[1].remotePort');
    assert.match(refused.body.error.message, /wide\/out: port 30000 is outside allowPorts \(20000-20099\)/);

    const tooMany = groupYaml({ name: 'many', secret: randomSecret(), apps: [1, 2, 3].map((n) => ({ name: `a${n}`, localPort: n, remotePort: 20010 + n })) });
    const refusedMany = await api.request('POST', '/api/groups', undefined, { raw: tooMany });
    assert.equal(refusedMany.status, 400);
    assert.equal(refusedMany.body.error.field, 'apps');

    const range = groupYaml({
      name: 'ranged',
      secret: randomSecret(),
      apps: [{ name: 'game', localPort: 0, extra: { local: '127.0.0.1:7000-7002', remotePort: '20001-20003' } }],
    });
    const refusedRange = await api.request('POST', '/api/groups', undefined, { raw: range });
    assert.equal(refusedRange.status, 400);
    assert.equal(refusedRange.body.error.code, 'POLICY');
    assert.equal(refusedRange.body.error.field, 'apps[0].remotePort');
    assert.match(refusedRange.body.error.message, /a range of 3 ports \(20001-20003\); this server allows at most 2 \(limits\.maxPortRange\)/);

    assert.deepEqual(readdirSync(config.groupsDir), [], 'nothing written for refused groups');
    assert.equal(server.readyGroup.size, 0);

    const inside = groupYaml({ name: 'fits', secret: randomSecret(), apps: [{ name: 'in', localPort: 1, remotePort: 20050 }] });
    assert.equal((await api.request('POST', '/api/groups', undefined, { raw: inside })).status, 201);
    assert.ok(server.readyGroup.has('fits'));
  });
});
