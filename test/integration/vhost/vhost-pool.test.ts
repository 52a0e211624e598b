import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { loadGroupFile } from '../../../src/config/index.js';
import type { ServerEvent } from '../../../src/server/index.js';
import { startAdmin, type TestAdmin } from '../../helpers/admin.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../../helpers/in-process.js';
import { waitForEvent } from '../../helpers/net.js';
import { makeCertificate, startWebApp, type SeenRequest } from '../../helpers/vhost.js';

type WebApp = Awaited<ReturnType<typeof startWebApp>>;

const MEMBERS = ['a', 'b'] as const;
// Generous for a live app on a loaded 2-core machine: a slow answer must not read as a dead app.
const CHECK_TIMING = { interval: '500ms', timeout: '500ms', failures: 2, successes: 1 };
const CHECK = { type: 'http', path: '/healthz', ...CHECK_TIMING };
/** Failure guard for waits on a loaded machine; never a measured bound. */
const GUARD_MS = 20_000;

/** A pooled http app answering to pool.test, as each member's group file writes it. */
function pooledWeb(localPort: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'web', local: `127.0.0.1:${localPort}`, type: 'http', domains: ['pool.test'], pool: 'web', healthCheck: CHECK, ...extra };
}

/** One GET on a fresh conn (no agent: each request is a new user conn), with the Host given. */
function get(port: number, host: string, path = '/'): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  });
}

/** `count` requests to pool.test one after another: which member's app answered each (all must be 200). */
async function members(port: number, count: number): Promise<string[]> {
  const answered: string[] = [];
  for (let i = 0; i < count; i++) {
    const { status, body } = await get(port, 'pool.test', `/page/${i}`);
    assert.equal(status, 200, `request ${i}: ${status} ${body.toString().slice(0, 200)}`);
    answered.push((JSON.parse(body.toString()) as SeenRequest).app);
  }
  return answered;
}

/** A client per member group, each started once the previous one joined the pool. */
async function startMembers(config: TestConfigDir, started: StartedServer): Promise<StartedClient[]> {
  const clients: StartedClient[] = [];
  for (const member of MEMBERS) {
    clients.push(startClient(loadGroupFile(config.groupFile(member)), started));
    await waitForEvent(started.events, (e) => e.type === 'pool-member-joined' && e.group === member, `${member} joined`, GUARD_MS);
  }
  return clients;
}

const healthOf = (group: string, healthy: boolean) => (event: ServerEvent) =>
  event.type === 'pool-member-health' && event.group === group && event.healthy === healthy;

/**
 * A pool of two groups' web apps behind the HTTP vhost, over the default link (TLS, pinned):
 * the name routes to the pool, which spreads new user conns over its live, healthy members;
 * a member whose local app stops is taken out by its client's checks, and comes back.
 */
describe('a pool of web apps behind the HTTP vhost', () => {
  let config: TestConfigDir;
  let started: StartedServer;
  let port = 0;
  const apps = new Map<string, WebApp>();
  const clients: StartedClient[] = [];

  before(async () => {
    for (const member of MEMBERS) apps.set(member, await startWebApp(`member-${member}`));
    config = makeConfigDir([], { heartbeatInterval: '500ms', heartbeatTimeout: '10s', extra: { vhost: { http: '127.0.0.1:0' } } });
    for (const member of MEMBERS) {
      writeFileSync(config.groupFile(member), stringify({ name: member, secret: randomSecret(), apps: [pooledWeb(apps.get(member)!.port)] }));
    }
    started = await startServer(config);
    port = started.server.vhost!.port('http');
    clients.push(...(await startMembers(config, started)));
  });

  after(async () => {
    for (const { client } of clients) await client.stop();
    await started.server.close();
    for (const app of apps.values()) await app.close();
  });

  test('the pool answers to its name on the vhost port, with both members', () => {
    const [view] = started.server.pools.views();
    assert.equal(view?.name, 'web');
    assert.equal(view.port, 0);
    assert.deepEqual(view.domains, ['pool.test']);
    assert.deepEqual(view.members.map((member) => [member.group, member.healthy]).sort(), [
      ['a', true],
      ['b', true],
    ]);
  });

  test('new user conns are spread over both members (round robin)', { timeout: GUARD_MS }, async () => {
    const answered = await members(port, 20);
    const count = (member: string): number => answered.filter((app) => app === `member-${member}`).length;
    // Round robin alternates; the tolerance covers a health report landing mid-run.
    assert.ok(count('a') >= 6 && count('b') >= 6, `a ${count('a')}, b ${count('b')} of 20`);
    assert.equal(count('a') + count('b'), 20);
  });

  test('a member whose app stops is taken out by its checks: requests keep succeeding on the other', { timeout: GUARD_MS * 2 }, async () => {
    await apps.get('b')!.close();
    await waitForEvent(started.events, healthOf('b', false), 'b reported unhealthy', GUARD_MS);
    const answered = await members(port, 12);
    assert.deepEqual(new Set(answered), new Set(['member-a']));
    const refused = started.server.pools.views()[0]!.members.find((member) => member.group === 'b');
    assert.equal(refused?.healthy, false);
  });

  test('the member comes back once its app passes its checks again', { timeout: GUARD_MS * 2 }, async () => {
    const port$ = apps.get('b')!.port;
    apps.set('b', await startWebApp('member-b', undefined, port$));
    await waitForEvent(started.events, healthOf('b', true), 'b reported healthy again', GUARD_MS);
    const answered = await members(port, 6);
    assert.ok(answered.includes('member-b') && answered.includes('member-a'), answered.join(', '));
  });

  describe('names are shared only within one pool (admin API and hot reload)', () => {
    let api: TestAdmin;
    before(async () => {
      api = await startAdmin(started.server, config);
    });
    after(() => api.admin.close());

    const post = (name: string, app: Record<string, unknown>) => api.request('POST', '/api/groups', { name, secret: randomSecret(), apps: [app] });

    test('refused: the name outside the pool, in another pool, with other names or another type', async () => {
      const outside = await post('c', { name: 'site', local: '127.0.0.1:1', type: 'http', domains: ['pool.test'] });
      assert.equal(outside.status, 409);
      assert.equal(outside.body.error.code, 'DOMAIN_CLAIMED');
      assert.equal(outside.body.error.field, 'apps[0].domains[0]');
      assert.match(outside.body.error.message, /domain pool\.test is already claimed by pool web/);

      const otherPool = await post('c', pooledWeb(1, { pool: 'other' }));
      assert.equal(otherPool.status, 409);
      assert.equal(otherPool.body.error.code, 'DOMAIN_CLAIMED');

      const otherNames = await post('c', pooledWeb(1, { domains: ['pool.test', 'more.test'] }));
      assert.equal(otherNames.status, 409);
      assert.equal(otherNames.body.error.code, 'POOL_CONFLICT');
      assert.equal(otherNames.body.error.field, 'apps[0].domains');
      assert.match(otherNames.body.error.message, /pool "web" answers to pool\.test \(locations \/\) \(fixed by group a/);

      const tcp = await post('c', { name: 'web', local: '127.0.0.1:1', pool: 'web', remotePort: 0 });
      assert.equal(tcp.status, 409);
      assert.equal(tcp.body.error.code, 'POOL_CONFLICT');
      assert.equal(tcp.body.error.field, 'apps[0].type');
      assert.match(tcp.body.error.message, /pool "web" serves http apps \(fixed by group a .*\), this app is tcp/);
    });

    test('a third member with the same names is accepted; a plain app on the name is refused on reload', { timeout: GUARD_MS }, async () => {
      const joined = await post('c', pooledWeb(1));
      assert.equal(joined.status, 201, JSON.stringify(joined.body));
      writeFileSync(
        config.groupFile('d'),
        stringify({ name: 'd', secret: randomSecret(), apps: [{ name: 'site', local: '127.0.0.1:1', type: 'http', domains: ['pool.test'] }] }),
      );
      await api.admin.registry.sync();
      const failure = await waitForEvent(
        started.events,
        (e) => e.type === 'group-registration-failed' && e.file.endsWith('d.yaml'),
        'd refused on reload',
        GUARD_MS,
      );
      assert.match((failure as { reason: string }).reason, /d\.yaml:\d+: apps\[0\]\.domains\[0\]: domain pool\.test is already claimed by pool web/);
      assert.equal(started.server.readyGroup.has('d'), false);
      assert.equal(started.server.readyGroup.has('c'), true);
    });
  });
});

/**
 * A pool of two groups' HTTPS apps: the server routes each TLS conn by its SNI to the pool,
 * which hands it, still encrypted, to one member; the user verifies the members' own
 * certificate (both hosts hold the same one for the name, as a real pool's would).
 */
describe('a pool of HTTPS apps routed by SNI', () => {
  let started: StartedServer;
  let port = 0;
  let certificate: { cert: string; key: string };
  const apps: HttpsServer[] = [];
  const clients: StartedClient[] = [];

  before(async () => {
    certificate = makeCertificate('shop.test');
    const tls = { cert: readFileSync(certificate.cert), key: readFileSync(certificate.key) };
    const config = makeConfigDir([], { heartbeatInterval: '500ms', heartbeatTimeout: '10s', extra: { vhost: { https: '127.0.0.1:0' } } });
    for (const member of MEMBERS) {
      const app = createHttpsServer(tls, (_req, res) => res.end(`shop member ${member}`));
      await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
      apps.push(app);
      const local = `127.0.0.1:${(app.address() as AddressInfo).port}`;
      const shop = { name: 'shop', local, type: 'https', domains: ['shop.test'], pool: 'shop', healthCheck: { type: 'tcp', ...CHECK_TIMING } };
      writeFileSync(config.groupFile(member), stringify({ name: member, secret: randomSecret(), apps: [shop] }));
    }
    started = await startServer(config);
    port = started.server.vhost!.port('https');
    clients.push(...(await startMembers(config, started)));
  });

  after(async () => {
    for (const { client } of clients) await client.stop();
    await started.server.close();
    for (const app of apps) {
      app.closeAllConnections();
      await new Promise<void>((resolve) => app.close(() => resolve()));
    }
  });

  /** One HTTPS GET on a fresh TLS conn to shop.test, its certificate checked against the members' own. */
  function getShop(): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, servername: 'shop.test', ca: readFileSync(certificate.cert), agent: false, path: '/' }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.once('end', () => resolve(body));
        res.once('error', reject);
      });
      req.once('error', reject);
      req.end();
    });
  }

  test('TLS conns are spread over both members, each verified end to end', { timeout: GUARD_MS }, async () => {
    const answered: string[] = [];
    for (let i = 0; i < 10; i++) answered.push(await getShop());
    const count = (member: string): number => answered.filter((body) => body === `shop member ${member}`).length;
    assert.ok(count('a') >= 3 && count('b') >= 3, `a ${count('a')}, b ${count('b')} of 10: ${answered.join(', ')}`);
    assert.equal(count('a') + count('b'), 10);
  });
});
