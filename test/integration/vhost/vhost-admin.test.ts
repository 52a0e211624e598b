import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { traceServer } from '../../../src/trace/index.js';
import { loadGroupFile } from '../../../src/config/index.js';
import { startAdmin, type TestAdmin } from '../../helpers/admin.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../../helpers/in-process.js';
import { waitForEvent } from '../../helpers/net.js';
import { rawGet, startWebApp, writeVhostGroup } from '../../helpers/vhost.js';

/** Domain claims through the admin API and hot reload, and vhost apps in its listing. */
describe('vhost apps in the admin API', () => {
  let config: TestConfigDir;
  let started: StartedServer;
  let admin: TestAdmin;
  let client: StartedClient;
  let web: Awaited<ReturnType<typeof startWebApp>>;
  let port = 0;

  before(async () => {
    web = await startWebApp('web');
    config = makeConfigDir([], { extra: { vhost: { http: '127.0.0.1:0', subdomainHost: 'tunnel.test', allowDomains: { '*': ['*.ok.test'] } } } });
    writeVhostGroup(config, 'alpha', randomSecret(), [{ name: 'web', type: 'http', localPort: web.port, domains: ['www.ok.test'], subdomain: 'alpha' }]);
    started = await startServer(config);
    port = started.server.vhost!.port('http');
    admin = await startAdmin(started.server, config);
    client = startClient(loadGroupFile(config.groupFile('alpha')), started);
    await waitForEvent(started.events, (event) => event.type === 'group-activated' && event.group === 'alpha', 'alpha activated');
  });

  after(async () => {
    await client.client.stop();
    await admin.admin.close();
    await started.server.close();
    await web.close();
  });

  const group = (name: string, domains: string[]): unknown => ({
    name,
    secret: randomSecret(),
    apps: [{ name: 'web', local: `127.0.0.1:${web.port}`, type: 'http', domains }],
  });

  test('GET /api/groups lists a vhost app with its type, names and the vhost port', async () => {
    const { status, body } = await admin.request('GET', '/api/groups/alpha');
    assert.equal(status, 200);
    const app = body.group.apps[0];
    assert.equal(app.type, 'http');
    assert.deepEqual(app.domains, ['www.ok.test', 'alpha.tunnel.test']);
    assert.equal(app.publicPort, port);
    assert.equal(app.state, 'listening');
  });

  test('metrics and --trace name the vhost app with its names', async () => {
    assert.equal((await rawGet(port, 'nobody.test')).status, 404);
    const metrics = await admin.request('GET', '/metrics');
    assert.match(metrics.body, /^ntp_vhost_routes\{group="alpha",app="web",domain="www\.ok\.test"\} 1$/m);
    assert.match(metrics.body, /^ntp_vhost_routes\{group="alpha",app="web",domain="alpha\.tunnel\.test"\} 1$/m);
    assert.match(metrics.body, /^ntp_vhost_refused_total\{kind="http",code="404"\} [1-9]/m);
    const file = join(config.dir, 'trace.md');
    const trace = traceServer(started.events, file, started.server.internalErrors.report);
    await trace.close();
    assert.match(readFileSync(file, 'utf8'), /appGroup ->> appServer: route www\.ok\.test, alpha\.tunnel\.test on the vhost port \d+ to alpha\/web/);
  });

  test('a name another group holds is 409 DOMAIN_CLAIMED, a name outside allowDomains 400, with the field', async () => {
    const taken = await admin.request('POST', '/api/groups', group('beta', ['www.ok.test']));
    assert.equal(taken.status, 409);
    assert.equal(taken.body.error.code, 'DOMAIN_CLAIMED');
    assert.equal(taken.body.error.field, 'apps[0].domains[0]');
    assert.match(taken.body.error.message, /domain www\.ok\.test is already claimed by alpha\/web/);
    const outside = await admin.request('POST', '/api/groups', group('beta', ['evil.test']));
    assert.equal(outside.status, 400);
    assert.equal(outside.body.error.field, 'apps[0].domains[0]');
    assert.match(outside.body.error.message, /may not claim evil\.test/);
    const fine = await admin.request('POST', '/api/groups', group('beta', ['beta.ok.test']));
    assert.equal(fine.status, 201, JSON.stringify(fine.body));
    // Registered, no client yet: its name is known, so it is answered 503 at once.
    assert.equal((await rawGet(port, 'beta.ok.test')).status, 503);
    assert.equal((await rawGet(port, 'alpha.tunnel.test')).status, 200);
  });

  test('an edit that moves a name applies to the next request; a removed group frees its names', async () => {
    const secret = loadGroupFile(config.groupFile('alpha')).secret.reveal();
    const edited = await admin.request('PUT', '/api/groups/alpha', {
      name: 'alpha',
      secret,
      apps: [{ name: 'web', local: `127.0.0.1:${web.port}`, type: 'http', domains: ['new.ok.test'] }],
    });
    assert.equal(edited.status, 200, JSON.stringify(edited.body));
    assert.equal((await rawGet(port, 'new.ok.test')).status, 200);
    assert.equal((await rawGet(port, 'www.ok.test')).status, 404);
    // New names reopen the app: the listing and the metrics follow at once.
    assert.deepEqual((await admin.request('GET', '/api/groups/alpha')).body.group.apps[0].domains, ['new.ok.test']);
    const metrics = (await admin.request('GET', '/metrics')).body as string;
    assert.match(metrics, /^ntp_vhost_routes\{group="alpha",app="web",domain="new\.ok\.test"\} 1$/m);
    assert.doesNotMatch(metrics, /domain="www\.ok\.test"/);
    assert.equal((await admin.request('DELETE', '/api/groups/beta')).status, 200);
    assert.equal((await rawGet(port, 'beta.ok.test')).status, 404);
  });
});
