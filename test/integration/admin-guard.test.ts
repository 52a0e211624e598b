import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { ConfigError, loadGroupFile, parseGroupFile, YamlFile } from '../../src/config/index.js';
import type { CommonServer } from '../../src/server/index.js';
import { startEchoApp, type TestApp } from '../helpers/apps.js';
import { rawHttp, sse, startAdmin, type TestAdmin } from '../helpers/admin.js';
import { groupYaml, makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';

const TOKEN = 'guard-test-token-0123456789abcdef';

/** Every file under `dir` with its content: what a refused request must leave as it was. */
function snapshot(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (at: string): void => {
    for (const entry of readdirSync(at)) {
      const path = join(at, entry);
      if (statSync(path).isDirectory()) walk(path);
      else files.set(relative(dir, path), readFileSync(path, 'utf8'));
    }
  };
  walk(dir);
  return files;
}

const groupBody = (name: string): string => JSON.stringify({ name, secret: randomSecret(), apps: [{ name: 'web', local: '127.0.0.1:8080', remotePort: 0 }] });

/**
 * The threat model is an admin on loopback without a token (the default) and a web page the
 * operator has open: everything here is plain HTTP over 127.0.0.1, byte for byte.
 */
describe('admin API guards (loopback, no token)', { timeout: 60_000 }, () => {
  let echo: TestApp;
  let config: TestConfigDir;
  let server: CommonServer;
  let api: TestAdmin;
  let port: number;
  let stopClient = (): void => {};

  before(async () => {
    echo = await startEchoApp();
    config = makeConfigDir([{ name: 'alpha', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }], { tls: true });
    // A decoy beside the server's own file: a name with "../" would reach both.
    writeFileSync(join(config.dir, 'victim.yaml'), 'keep: me\n');
    const started = await startServer(config);
    server = started.server;
    api = await startAdmin(server, config);
    port = Number(new URL(api.url).port);
    const { client } = startClient(loadGroupFile(config.groupFile('alpha')), started.port, { transport: { kind: 'tls', fingerprint: started.fingerprint! } });
    stopClient = () => client.stop();
    await waitForEvent(started.events, (e) => e.type === 'group-activated', 'alpha active', 15_000);
  });
  after(async () => {
    stopClient();
    await api.admin.close();
    await server.close();
    await echo.close();
  });

  test('traversal names on GET, PUT, DELETE and kick answer 400 and leave every file and the live group intact', async () => {
    const before = snapshot(config.dir);
    const names = [
      '..%2Fcommonserver',
      '..%2Fvictim',
      '%2e%2e',
      '%2E%2E%2Fcommonserver',
      '..%5Cvictim',
      'a%2Fb',
      'alpha%00',
      '%00',
      '.hidden',
      'a'.repeat(65),
      'b'.repeat(4000),
    ];
    for (const name of names) {
      const decoded = decodeURIComponent(name);
      const answers = [
        await rawHttp(port, { target: `/api/groups/${name}` }),
        await rawHttp(port, { method: 'PUT', target: `/api/groups/${name}`, headers: { 'content-type': 'application/json' }, body: groupBody(decoded) }),
        await rawHttp(port, { method: 'DELETE', target: `/api/groups/${name}` }),
        await rawHttp(port, { method: 'POST', target: `/api/groups/${name}/kick` }),
      ];
      for (const answer of answers) {
        assert.equal(answer.status, 400, `${name}: ${answer.body}`);
        assert.equal(JSON.parse(answer.body).error.code, 'INVALID_GROUP_NAME', name);
      }
      // One rule: the config loader refuses the same name in a group file.
      assert.throws(
        () => parseGroupFile(YamlFile.parse('request body', groupBody(decoded)), {}),
        (error: ConfigError) => error.code === 'CONFIG_INVALID' && error.field === 'name',
        name,
      );
    }
    // Unencoded dot segments are not resolved: no route, nothing touched.
    for (const target of ['/api/groups/../commonserver', '/api/groups/../../victim/kick', '/api/groups/alpha/../../commonserver']) {
      assert.equal((await rawHttp(port, { method: 'DELETE', target })).status, 404, target);
    }
    const posted = await rawHttp(port, {
      method: 'POST',
      target: '/api/groups',
      headers: { 'content-type': 'application/json' },
      body: groupBody('../victim'),
    });
    assert.equal(posted.status, 400);
    assert.equal(JSON.parse(posted.body).error.field, 'name');

    assert.deepEqual(snapshot(config.dir), before, 'every file as it was');
    assert.ok(server.readyGroup.has('alpha'));
    assert.ok(server.inUseGroup.has('alpha'), 'alpha was not kicked');
  });

  test('malformed request targets answer 400, never 500, and the server keeps serving', async () => {
    for (const target of ['/api/groups/%E0%A4%A', '/api/groups/%', '/api/gr%ZZoups', '/%ff.js', '/api/groups/alpha%G0/kick']) {
      const answer = await rawHttp(port, { method: target.endsWith('kick') ? 'POST' : 'GET', target });
      assert.equal(answer.status, 400, target);
      assert.equal(JSON.parse(answer.body).error.code, 'BAD_URL', target);
    }
    // Targets Node's parser or the WHATWG URL parser would choke on.
    for (const target of ['http://[bad/api/groups', '*', 'api/groups', '/api/groups/a\u0001b']) {
      assert.equal((await rawHttp(port, { target })).status, 400, JSON.stringify(target));
    }
    assert.equal((await rawHttp(port, { target: '/api/groups' })).status, 200);
  });

  test('a Host that is not the admin address is refused (DNS rebinding); the loopback names pass', async () => {
    for (const host of [
      'attacker.example',
      `attacker.example:${port}`,
      `127.0.0.1.nip.io:${port}`,
      `127.0.0.1:${port === 1 ? 2 : 1}`,
      `localhost.attacker.example:${port}`,
    ]) {
      const read = await rawHttp(port, { target: '/api/groups', host });
      assert.equal(read.status, 421, host);
      assert.equal(JSON.parse(read.body).error.code, 'HOST_NOT_ALLOWED');
      assert.equal((await rawHttp(port, { target: '/', host })).status, 421, `${host}: the dashboard too`);
      const write = await rawHttp(port, {
        method: 'POST',
        target: '/api/groups',
        host,
        headers: { 'content-type': 'application/json' },
        body: groupBody('rebound'),
      });
      assert.equal(write.status, 421, host);
    }
    assert.notEqual((await rawHttp(port, { target: '/api/groups', host: null })).status, 200, 'no Host at all');
    assert.equal(existsSync(config.groupFile('rebound')), false);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
      assert.equal((await rawHttp(port, { target: '/api/groups', host })).status, 200, host);
    }
  });

  test('admin.allowedHosts adds names (any port, or one port)', async () => {
    const named = await startAdmin(server, config, { admin: { allowedHosts: ['admin.example.com', 'proxy.example.com:8443'] } });
    after(() => named.admin.close());
    const namedPort = Number(new URL(named.url).port);
    const status = async (host: string): Promise<number> => (await rawHttp(namedPort, { target: '/api/groups', host })).status;
    assert.equal(await status('admin.example.com'), 200);
    assert.equal(await status('Admin.Example.com:9999'), 200);
    assert.equal(await status('proxy.example.com:8443'), 200);
    assert.equal(await status(`127.0.0.1:${namedPort}`), 200);
    assert.equal(await status('proxy.example.com'), 421);
    assert.equal(await status('proxy.example.com:8080'), 421);
    assert.equal(await status('evil.example.com'), 421);
  });

  test('a state-changing request from a foreign Origin answers 403 and changes nothing', async () => {
    const before = snapshot(config.dir);
    const json = { 'content-type': 'application/json' };
    for (const origin of ['http://attacker.example', `http://attacker.example:${port}`, 'null', `http://localhost:${port + 1}`]) {
      const answers = [
        await rawHttp(port, { method: 'POST', target: '/api/groups', headers: { ...json, origin }, body: groupBody('mallory') }),
        await rawHttp(port, { method: 'PUT', target: '/api/groups/alpha', headers: { ...json, origin }, body: groupBody('alpha') }),
        await rawHttp(port, { method: 'DELETE', target: '/api/groups/alpha', headers: { origin } }),
        await rawHttp(port, { method: 'POST', target: '/api/groups/alpha/kick', headers: { origin } }),
      ];
      for (const answer of answers) {
        assert.equal(answer.status, 403, origin);
        assert.equal(JSON.parse(answer.body).error.code, 'ORIGIN_NOT_ALLOWED');
      }
    }
    assert.deepEqual(snapshot(config.dir), before);
    assert.ok(server.inUseGroup.has('alpha'), 'alpha was not kicked');

    // The admin's own origin (its dashboard) may.
    const own = { ...json, origin: `http://127.0.0.1:${port}` };
    assert.equal((await rawHttp(port, { method: 'POST', target: '/api/groups', headers: own, body: groupBody('own') })).status, 201);
    assert.equal((await rawHttp(port, { method: 'DELETE', target: '/api/groups/own', headers: own })).status, 200);
  });

  test('a state-changing request with a form content type answers 415 and changes nothing', async () => {
    const before = snapshot(config.dir);
    for (const type of ['text/plain', 'Text/Plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const answers = [
        await rawHttp(port, { method: 'POST', target: '/api/groups', headers: { 'content-type': type }, body: groupBody('formed') }),
        await rawHttp(port, { method: 'PUT', target: '/api/groups/alpha', headers: { 'content-type': type }, body: groupBody('alpha') }),
        await rawHttp(port, { method: 'DELETE', target: '/api/groups/alpha', headers: { 'content-type': type } }),
        await rawHttp(port, { method: 'POST', target: '/api/groups/alpha/kick', headers: { 'content-type': type } }),
      ];
      for (const answer of answers) {
        assert.equal(answer.status, 415, type);
        assert.equal(JSON.parse(answer.body).error.code, 'UNSUPPORTED_MEDIA_TYPE');
      }
    }
    assert.deepEqual(snapshot(config.dir), before);
    assert.ok(server.inUseGroup.has('alpha'), 'alpha was not kicked');
    const yaml = groupYaml({ name: 'yamled', secret: randomSecret(), apps: [{ name: 'x', localPort: 1 }] });
    assert.equal((await rawHttp(port, { method: 'POST', target: '/api/groups', headers: { 'content-type': 'application/yaml' }, body: yaml })).status, 201);
    assert.equal((await rawHttp(port, { method: 'DELETE', target: '/api/groups/yamled' })).status, 200);
  });
});

describe('admin token', { timeout: 30_000 }, () => {
  test('?token= is accepted on /api/events only; every other route wants the Authorization header', async () => {
    const config = makeConfigDir([{ name: 'alpha', secret: randomSecret(), apps: [{ name: 'x', localPort: 1 }] }], { tls: true });
    const { server } = await startServer(config);
    const api = await startAdmin(server, config, { token: TOKEN });
    after(async () => {
      await api.admin.close();
      await server.close();
    });
    const port = Number(new URL(api.url).port);
    for (const [method, target] of [
      ['GET', '/api/groups'],
      ['GET', '/metrics'],
      ['GET', '/api/events/recent'],
      ['DELETE', '/api/groups/alpha'],
      ['POST', '/api/groups/alpha/kick'],
    ] as const) {
      const answer = await rawHttp(port, { method, target: `${target}?token=${TOKEN}` });
      assert.equal(answer.status, 401, `${method} ${target}`);
      assert.match(JSON.parse(answer.body).error.message, /\?token= is accepted on \/api\/events only/);
    }
    assert.ok(existsSync(config.groupFile('alpha')));
    assert.equal((await api.request('GET', '/api/groups')).status, 200, 'the header works');

    const stream = sse(`${api.url}/api/events?token=${TOKEN}`);
    const opened = await firstValueFrom(
      stream.pipe(
        filter((m) => m.event === 'open'),
        timeout(10_000),
      ),
    );
    assert.equal(opened.event, 'open');
    await assert.rejects(firstValueFrom(sse(`${api.url}/api/events?token=wrong-${TOKEN}`).pipe(timeout(10_000))), /HTTP 401/);
  });
});
