import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { ClientStatusReport } from '../../src/client/index.js';
import type { Message } from '../../src/protocol/index.js';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { groupYaml, makeConfigDir, randomSecret } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import { startHostileServer } from '../helpers/hostile-server.js';
import { echoRoundTrip, expectRefused } from '../helpers/net.js';
import { CliProcess, GROUPCLIENT_BIN, ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

const TOKEN = 'registry-apps-test-token-0123456789';
const processes = new ProcessSet();
after(() => processes.stopAll());

/** A host's directory with a secret file (mode 600) and, if given, a group file of identity only. */
function hostDir(secret: string, hostFile?: string): { dir: string; secretFile: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-host-'));
  const secretFile = join(dir, 'office.secret');
  writeFileSync(secretFile, `${secret}\n`);
  chmodSync(secretFile, 0o600);
  const file = join(dir, 'office.yaml');
  if (hostFile !== undefined) writeFileSync(file, hostFile);
  return { dir, secretFile, file };
}

interface ApiApp {
  name: string;
  state: string;
}

test(
  'the registry is the source of truth: a host with only its identity and allowLocal serves the server’s apps, follows a registry change within 2 s, and an app outside allowLocal is refused on both sides with the same reason and opens no port',
  { timeout: 40_000 },
  async () => {
    const echo = await startEchoApp();
    after(() => echo.close());
    const secret = randomSecret();
    const commonPort = await unusedPort();
    const config = makeConfigDir([{ name: 'office', secret, apps: [{ name: 'echo', localPort: echo.port }] }], {
      bindPort: commonPort,
      extra: { admin: { bind: '127.0.0.1:0', token: '${NTP_TEST_ADMIN_TOKEN}' } },
    });
    const started = await startCommonServerProcess(config.serverFile, { NTP_TEST_ADMIN_TOKEN: TOKEN });
    const server = processes.add(started.process);
    const adminUrl = (await server.waitForLine(/admin listening on (http:\/\/\S+) \(token required\)/))[1]!;
    const groupsApi = async (): Promise<ApiApp[]> => {
      const res = await fetch(`${adminUrl}/api/groups`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return ((await res.json()) as { groups: { name: string; apps: ApiApp[] }[] }).groups.find((group) => group.name === 'office')!.apps;
    };

    // No apps: in the host's file, and the host's own file allows only 127.0.0.1.
    const host = hostDir(secret, `name: office\nsecretFile: office.secret\nallowLocal: ["127.0.0.1"]\n`);
    const runDir = mkdtempSync(join(tmpdir(), 'ntp-run-'));
    const client = processes.add(startGroupClientProcess({ server: started, configFile: host.file, env: { XDG_RUNTIME_DIR: runDir } }));
    const ports = await waitForGroupActive(client, 'office');
    await client.waitForLine(new RegExp(`apps of group office from the server: echo → 127\\.0\\.0\\.1:${echo.port}`));
    assert.equal((await echoRoundTrip(ports.get('echo')!, Buffer.from('from the registry'))).toString(), 'from the registry');

    // The registry changes; the host's file does not.
    const refusedPort = await unusedPort();
    const fromLine = client.lines.length;
    const changedAt = Date.now();
    config.writeGroup({
      name: 'office',
      secret,
      apps: [
        { name: 'echo', localPort: echo.port },
        { name: 'echo2', localPort: echo.port },
        { name: 'intranet', localPort: 80, remotePort: refusedPort, extra: { local: '10.255.255.1:80' } },
        // The server's own port: refused by the server, and both ends say so.
        { name: 'clash', localPort: echo.port, remotePort: commonPort },
      ],
    });
    const opened = await client.waitForLine(/group office changed on the server: opened (.*)/, { fromLine, timeoutMs: 2000 });
    const echo2Port = Number(/echo2 → server port (\d+)/.exec(opened[1]!)?.[1]);
    assert.equal((await echoRoundTrip(echo2Port, Buffer.from('added on the server'))).toString(), 'added on the server');
    assert.ok(Date.now() - changedAt < 2000, `served ${Date.now() - changedAt} ms after the registry changed`);

    const clientSays = (await client.waitForLine(/app intranet refused by host: (.*) \(never dialed; the server is told\)/, { fromLine }))[1]!;
    assert.equal(clientSays, 'local target 10.255.255.1:80 is outside allowLocal (127.0.0.1)');
    const serverSays = (await server.waitForLine(/app office\/intranet refused by host: (.*)/))[1]!;
    assert.equal(serverSays, clientSays);
    const apps = await eventually(
      async () => {
        const now = await groupsApi();
        return now.find((app) => app.name === 'intranet')?.state.startsWith('refused by host') === true ? now : false;
      },
      { timeout: 5000, message: 'the API shows intranet refused by host' },
    );
    assert.equal(apps.find((app) => app.name === 'intranet')!.state, `refused by host: ${clientSays}`);
    await expectRefused(refusedPort);

    // The server's own refusal: the same reason on the server, in the API and on the client.
    const serverSaysToo = (await server.waitForLine(/app office\/clash refused by server: (.*)/))[1]!;
    assert.match(serverSaysToo, new RegExp(`port ${commonPort} is the common port`));
    assert.equal(apps.find((app) => app.name === 'clash')!.state, `refused by server: ${serverSaysToo}`);
    assert.ok(opened[1]!.includes(`clash ✗ (refused by server: ${serverSaysToo})`), opened[1]);
    assert.equal(apps.find((app) => app.name === 'echo2')!.state, 'listening');

    // The host's operator sees what it serves: the server's apps, not its own file's (none).
    const status = new CliProcess(GROUPCLIENT_BIN, ['status', '--group', 'office', '--json'], { XDG_RUNTIME_DIR: runDir });
    assert.equal((await status.exited).code, 0, status.stderr.join('\n'));
    const report = JSON.parse(status.lines.join('\n')) as ClientStatusReport;
    const served = new Map(report.apps.map((app) => [app.name, app.target]));
    assert.equal(served.get('echo'), `127.0.0.1:${echo.port}`);
    assert.equal(served.get('echo2'), `127.0.0.1:${echo.port}`);
    assert.equal(served.has('intranet'), false, 'an app refused by the host is not listed as served');

    // An operator adds an app through the admin API: the host follows within 2 s, no change on it.
    const apiFrom = client.lines.length;
    const putAt = Date.now();
    const put = await fetch(`${adminUrl}/api/groups/office`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/yaml' },
      body: groupYaml({
        name: 'office',
        secret,
        apps: [
          { name: 'echo', localPort: echo.port },
          { name: 'echo2', localPort: echo.port },
          { name: 'echo3', localPort: echo.port },
        ],
      }),
    });
    assert.equal(put.status, 200, await put.text());
    const openedByApi = await client.waitForLine(/group office changed on the server: opened (.*)/, { fromLine: apiFrom, timeoutMs: 2000 });
    const echo3Port = Number(/echo3 → server port (\d+)/.exec(openedByApi[1]!)?.[1]);
    assert.equal((await echoRoundTrip(echo3Port, Buffer.from('added through the API'))).toString(), 'added through the API');
    assert.ok(Date.now() - putAt < 2000, `served ${Date.now() - putAt} ms after the API changed the group`);
  },
);

test('groupclient --group NAME --server HOST:PORT --secret-file F with no group file at all: the apps come from the server', { timeout: 30_000 }, async () => {
  const echo = await startEchoApp();
  after(() => echo.close());
  const secret = randomSecret();
  const config = makeConfigDir([{ name: 'office', secret, apps: [{ name: 'echo', localPort: echo.port }] }]);
  const started = await startCommonServerProcess(config.serverFile);
  processes.add(started.process);
  const host = hostDir(secret);
  const client = processes.add(
    startGroupClientProcess({ server: started, group: 'office', groupsDir: host.dir, extraArgs: ['--secret-file', host.secretFile] }),
  );
  const ports = await waitForGroupActive(client, 'office');
  assert.equal((await echoRoundTrip(ports.get('echo')!, Buffer.from('no file on the host'))).toString(), 'no file on the host');
});

test(
  'a hostile server’s apps outside allowLocal are never dialed: refused, reported with the reason, and a user for them fails',
  { timeout: 20_000 },
  async () => {
    let accepts = 0;
    const local = createServer((socket) => {
      accepts++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => local.listen(0, '127.0.0.1', resolve));
    after(() => local.close());
    const target = (local.address() as AddressInfo).port;
    const allowedPort = target === 65535 ? target - 1 : target + 1;
    const received: Message[] = [];
    const hostile = await startHostileServer((channel) => {
      channel.messages$.subscribe({ next: (message) => received.push(message), error: () => {} });
      channel.release();
      channel.send({
        type: 'GroupApps',
        apps: [
          { name: 'meta', local: { host: '127.0.0.1', port: target }, remotePort: 0 },
          { name: 'cloud', local: { host: '169.254.169.254', port: 80 }, remotePort: 0 },
        ],
      });
      channel.send({ type: 'ReqWorkConn', app: 'meta', pairingId: 'pairing-meta-1' });
    });
    after(() => hostile.close());
    const secret = randomSecret();
    const host = hostDir(secret, `name: office\nsecretFile: office.secret\nallowLocal: ["127.0.0.1:${allowedPort}"]\n`);
    const client = processes.add(startGroupClientProcess({ serverPort: hostile.port, link: { fingerprint: hostile.fingerprint }, configFile: host.file }));
    const refused = await eventually(() => received.find((message) => message.type === 'AppsRefused') ?? false, {
      timeout: 10_000,
      message: 'the client’s AppsRefused',
    });
    assert.deepEqual(refused, {
      type: 'AppsRefused',
      apps: [
        { name: 'meta', reason: `local target 127.0.0.1:${target} is outside allowLocal (127.0.0.1:${allowedPort})` },
        { name: 'cloud', reason: `local target 169.254.169.254:80 is outside allowLocal (127.0.0.1:${allowedPort})` },
      ],
    });
    const failed = await eventually(() => received.find((message) => message.type === 'WorkConnFailed') ?? false, {
      timeout: 10_000,
      message: 'the client’s WorkConnFailed for the user of meta',
    });
    assert.equal(failed.type === 'WorkConnFailed' && failed.pairingId, 'pairing-meta-1');
    await client.waitForLine(/app meta refused by host: local target 127\.0\.0\.1:\d+ is outside allowLocal/);
    assert.equal(accepts, 0, 'the local target outside allowLocal was dialed');
  },
);
