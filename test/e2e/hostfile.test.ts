import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parse } from 'yaml';
import { loadGroupFile } from '../../src/config/index.js';
import { startAdmin } from '../helpers/admin.js';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startServer } from '../helpers/in-process.js';
import { echoRoundTrip } from '../helpers/net.js';
import { CliProcess, COMMONSERVER_BIN, GROUPCLIENT_BIN, ProcessSet, startCommonServerProcess, waitForGroupActive } from '../helpers/processes.js';

const TOKEN = 'hostfile-test-token-0123456789';
const processes = new ProcessSet();
after(() => processes.stopAll());

test(
  'commonserver hostfile GROUP --out FILE: identity only (no apps:), mode 600, server:, the fingerprint and the secret (given as ${VAR} on the server); the host runs it as it is, under any file name, and serves the registry’s apps',
  { timeout: 30_000 },
  async () => {
    const echo = await startEchoApp();
    after(() => echo.close());
    const secret = randomSecret();
    const config = makeConfigDir([], { bindPort: await unusedPort() });
    // The server reads the secret from its environment: the host file must carry the value itself.
    config.writeGroup({ name: 'office', secret: '${OFFICE_SECRET}', apps: [{ name: 'echo', localPort: echo.port }] });
    const env = { OFFICE_SECRET: secret };
    const server = processes.add(await startCommonServerProcess(config.serverFile, env).then(({ process }) => process));
    const hostDir = mkdtempSync(join(tmpdir(), 'ntp-host-'));
    // Saved under another name than the group's: accepted on the host, with a warning.
    const out = join(hostDir, 'office-host.yaml');
    const cli = new CliProcess(COMMONSERVER_BIN, ['hostfile', 'office', '--config', config.serverFile, '--public-host', '127.0.0.1', '--out', out], env);
    const { code } = await cli.exited;
    assert.equal(code, 0, cli.output);
    assert.equal(statSync(out).mode & 0o777, 0o600);
    const file = parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
    const fingerprint = server.lines.map((line) => /fingerprint (sha256:[0-9a-f]{64})/.exec(line)?.[1]).find((found) => found !== undefined);
    assert.equal(file.server, `127.0.0.1:${/:(\d+)$/.exec(readFileSync(config.serverFile, 'utf8').match(/bind: (\S+)/)![1]!)![1]}`);
    assert.equal(file.serverFingerprint, fingerprint);
    assert.equal(file.secret, secret);
    assert.equal(file.apps, undefined, 'the apps come from the server');
    assert.equal(file.allowLocal, undefined, 'every target is loopback: the default allows it');
    assert.ok(!cli.output.includes(secret), 'the secret is written to the file, never printed');
    // The host needs nothing else: no --server, no fingerprint, no environment.
    const client = processes.add(new CliProcess(GROUPCLIENT_BIN, ['--config', out]));
    const ports = await waitForGroupActive(client, 'office');
    assert.ok(
      client.lines.some((line) => line.includes('office-host.yaml is not named after its group: it defines group office')),
      client.output,
    );
    assert.equal((await echoRoundTrip(ports.get('echo')!, Buffer.from('through the host file'))).toString(), 'through the host file');
  },
);

test(
  'GET /api/groups/NAME/hostfile: the file with the secret behind the token, 401 without it; without an admin token, no secret',
  { timeout: 20_000 },
  async () => {
    const secret = randomSecret();
    const config = makeConfigDir([{ name: 'office', secret, apps: [{ name: 'ssh', localPort: 22, remotePort: 0 }] }]);
    const started = await startServer(config);
    const withToken = await startAdmin(started.server, config, { token: TOKEN, ...(started.fingerprint ? { fingerprint: started.fingerprint } : {}) });
    const open = await startAdmin(started.server, config, started.fingerprint ? { fingerprint: started.fingerprint } : {});
    after(async () => {
      await withToken.admin.close();
      await open.admin.close();
      await started.server.close();
    });
    const answer = await withToken.request('GET', '/api/groups/office/hostfile?server=tunnel.example.com:7000');
    assert.equal(answer.status, 200);
    const file = parse(answer.body as string) as Record<string, unknown>;
    assert.equal(file.name, 'office');
    assert.equal(file.server, 'tunnel.example.com:7000');
    assert.equal(file.serverFingerprint, started.fingerprint);
    assert.equal(file.secret, secret);
    assert.equal(file.apps, undefined, 'the apps come from the server');
    assert.equal((await withToken.request('GET', '/api/groups/office/hostfile', undefined, { token: null })).status, 401);
    assert.equal((await withToken.request('GET', '/api/groups/nobody/hostfile')).body.error.code, 'GROUP_NOT_FOUND');
    assert.equal((await withToken.request('GET', '/api/groups/office/hostfile?server=nope')).body.error.code, 'INVALID_SERVER');
    const bare = await open.request('GET', '/api/groups/office/hostfile');
    assert.equal(bare.status, 200);
    assert.ok(!(bare.body as string).includes(secret), 'no token, no secret');
    assert.equal((parse(bare.body as string) as Record<string, unknown>).secret, '${NTP_GROUP_SECRET}');
  },
);

test(
  'a host file’s allowLocal: loopback and each target of the group elsewhere (consecutive ports as a range), so the host may dial every app the registry has; a target named by host name is a comment, not an entry',
  { timeout: 20_000 },
  async () => {
    const secret = randomSecret();
    const config = makeConfigDir([
      {
        name: 'lab',
        secret,
        apps: [
          { name: 'web', localPort: 8080 },
          { name: 'db', localPort: 5432, extra: { local: '10.1.2.3:5432' } },
          { name: 'db2', localPort: 5432, extra: { local: '10.1.2.3:5432' } },
          { name: 'db3', localPort: 5433, extra: { local: '10.1.2.3:5433' } },
          { name: 'db4', localPort: 5435, extra: { local: '10.1.2.3:5435' } },
          { name: 'ssh', localPort: 22, extra: { local: '[fd00::5]:22' } },
          { name: 'named', localPort: 80, extra: { local: 'intranet.example:80' } },
        ],
      },
    ]);
    const started = await startServer(config);
    const withToken = await startAdmin(started.server, config, { token: TOKEN, ...(started.fingerprint ? { fingerprint: started.fingerprint } : {}) });
    after(async () => {
      await withToken.admin.close();
      await started.server.close();
    });
    const answer = await withToken.request('GET', '/api/groups/lab/hostfile?server=tunnel.example.com:7000');
    assert.equal(answer.status, 200);
    const text = answer.body as string;
    const file = parse(text) as Record<string, unknown>;
    // Consecutive ports of one address as one range (as a port range's apps are).
    assert.deepEqual(file.allowLocal, ['127.0.0.0/8', '::1', '10.1.2.3:5432-5433', '10.1.2.3:5435', '[fd00::5]:22']);
    assert.match(text, /# app named: its local target intranet\.example:80 is a host name, which allowLocal cannot allow/);
    // The host loads it as it is, and its allowLocal lets every app with an address through.
    const out = join(mkdtempSync(join(tmpdir(), 'ntp-host-')), 'lab.yaml');
    writeFileSync(out, text, { mode: 0o600 });
    const host = loadGroupFile(out, {}, { anyFileName: true });
    assert.deepEqual(host.apps, []);
    for (const app of started.server.readyGroup.get('lab')!.apps) {
      const refusal = host.allowLocal.refusal(app.local);
      if (app.name === 'named') assert.match(refusal ?? '', /is a host name/);
      else assert.equal(refusal, undefined, app.name);
    }
  },
);
