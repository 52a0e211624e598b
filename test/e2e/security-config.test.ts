import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { appPublicRefusal, ConfigError, loadGroupDirectory, loadServerConfig, parseGroupFile, publicPolicyOf, YamlFile } from '../../src/config/index.js';
import { clientTransport } from '../../src/client/index.js';
import { createSelfSigned } from '../../src/server/index.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startCommonServerProcess } from '../helpers/processes.js';
import { REPO_ROOT } from '../helpers/paths.js';

function serverConfig(text: string) {
  const dir = makeConfigDir([]);
  writeFileSync(dir.serverFile, text);
  return () => loadServerConfig(dir.serverFile);
}

function groupFile(extra: string) {
  return () => parseGroupFile(YamlFile.parse('g.yaml', `name: g\nsecret: ${'s'.repeat(20)}\n${extra}`));
}

function rejects(load: () => unknown, field: string, message: RegExp): void {
  assert.throws(load, (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.field, field);
    assert.match(error.message, message);
    return true;
  });
}

test('server security config: defaults are TLS with files beside the config, limits and login limits set', () => {
  const config = serverConfig('bind: 127.0.0.1:0\n')();
  assert.equal(config.tls.plaintext, false);
  assert.ok(!config.tls.plaintext && config.tls.certFile.endsWith(join('tls', 'commonserver.crt')));
  assert.equal(config.loginLimit.blockAfter, 10);
  assert.equal(config.limits.maxPendingUsersPerApp, 128);
  assert.equal(config.limits.maxMuxStreams, 256);
  assert.equal(config.limits.muxBudgetBytes, 64 * 1024 * 1024);
  assert.deepEqual(serverConfig('allowPorts: ["6000-6010", 7022]\n')().policy.allowPorts, [
    { from: 6000, to: 6010 },
    { from: 7022, to: 7022 },
  ]);
});

test('server security config: bad values name their field', () => {
  rejects(serverConfig('plaintext: true\ntls: { cert: a.crt }\n'), 'plaintext', /contradict/);
  rejects(serverConfig('plaintext: yes please\n'), 'plaintext', /true or false/);
  rejects(serverConfig('tls: { certificate: a.crt }\n'), 'tls.certificate', /unknown field/);
  rejects(serverConfig('allowPorts: ["7000-6000"]\n'), 'allowPorts', /port ranges/);
  rejects(serverConfig('maxGroups: 0\n'), 'maxGroups', /at least 1/);
  rejects(serverConfig('loginLimit: { slowAfter: 5, blockAfter: 5 }\n'), 'loginLimit.blockAfter', /larger than slowAfter/);
  rejects(serverConfig('limits: { maxPending: 3 }\n'), 'limits.maxPending', /unknown field/);
  rejects(serverConfig('limits: { maxMuxStreams: 0 }\n'), 'limits.maxMuxStreams', /from 1 to 65536/);
  // Every stream up to the cap must get its initial window from the budget.
  rejects(serverConfig('limits: { maxMuxStreams: 1024 }\n'), 'limits.muxBudgetBytes', /at least 134217728 \(maxMuxStreams 1024 times/);
});

test('group file security fields: allow, maxConnections, serverFingerprint, plaintext', () => {
  const spec = groupFile(
    `serverFingerprint: SHA256:${'AB:'.repeat(31)}AB\napps:\n  - { name: a, local: 127.0.0.1:1, remotePort: 0, allow: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], maxConnections: 3 }\n`,
  )();
  assert.equal(spec.serverFingerprint, `sha256:${'ab'.repeat(32)}`);
  assert.deepEqual(spec.apps[0]!.allow, ['10.0.0.0/8', '2001:db8::/32', '192.0.2.7']);
  assert.equal(spec.apps[0]!.maxConnections, 3);
  rejects(groupFile('apps:\n  - { name: a, local: 127.0.0.1:1, remotePort: 0, allow: ["10.0.0.0/33"] }\n'), 'apps[0].allow[0]', /addresses or CIDRs/);
  rejects(groupFile('apps:\n  - { name: a, local: 127.0.0.1:1, remotePort: 0, maxConnections: -1 }\n'), 'apps[0].maxConnections', /at least 1/);
  rejects(groupFile('serverFingerprint: md5:abc\napps:\n  - { name: a, local: 127.0.0.1:1, remotePort: 0 }\n'), 'serverFingerprint', /sha256:/);
  rejects(
    groupFile(`plaintext: true\nserverFingerprint: sha256:${'ab'.repeat(32)}\napps:\n  - { name: a, local: 127.0.0.1:1, remotePort: 0 }\n`),
    'plaintext',
    /contradicts/,
  );
});

test('a group file with a literal secret readable by others gets a warning line; a private one does not', { timeout: 15_000 }, async () => {
  const config = makeConfigDir([
    { name: 'open', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] },
    { name: 'private', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] },
  ]);
  chmodSync(config.groupFile('open'), 0o644);
  chmodSync(config.groupFile('private'), 0o600);
  const { process: server } = await startCommonServerProcess(config.serverFile);
  after(() => server.stop());
  await server.waitForLine(/warning: \S*open\.yaml holds the secret of group open and is readable by every user \(mode 644\); run chmod 600/);
  assert.ok(!server.output.includes('private.yaml holds'), server.output);
});

test('the shipped config: TLS on, and every shipped app allowed by its policy', () => {
  const shipped = join(REPO_ROOT, 'config');
  const config = loadServerConfig(join(shipped, 'commonserver.yaml'));
  assert.equal(config.tls.plaintext, false);
  const env = { OFFICE_A_SECRET: 'a'.repeat(24), OFFICE_B_SECRET: 'b'.repeat(24) };
  const registry = loadGroupDirectory(config.groupsDir, env, new Map(), config);
  assert.deepEqual(registry.errors, []);
  assert.ok(registry.groups.length > 0);
  for (const group of registry.groups) {
    assert.ok(group.apps.length <= config.policy.maxAppsPerGroup!);
    group.apps.forEach((app, index) => assert.equal(appPublicRefusal(publicPolicyOf(config), group.name, app, index), undefined));
  }
});

test('client trust from the group file: CA, client certificate, pin override, explicit plaintext', () => {
  const dir = makeConfigDir([]);
  createSelfSigned(join(dir.dir, 'ca.crt'), join(dir.dir, 'ca.key'));
  createSelfSigned(join(dir.dir, 'me.crt'), join(dir.dir, 'me.key'));
  const file = join(dir.dir, 'g.yaml');
  const apps = 'apps:\n  - { name: a, local: 127.0.0.1:1, remotePort: 0 }\n';
  writeFileSync(file, `name: g\nsecret: ${'s'.repeat(20)}\nserverCa: ca.crt\nclientCert: me.crt\nclientKey: me.key\n${apps}`);
  const spec = parseGroupFile(YamlFile.read(file));
  const transport = clientTransport(spec);
  assert.equal(transport.kind, 'tls');
  assert.ok(transport.kind === 'tls' && transport.ca && transport.cert && transport.key && transport.fingerprint === undefined);
  const pinned = clientTransport(spec, { fingerprint: `sha256:${'CD'.repeat(32)}` });
  assert.ok(pinned.kind === 'tls' && pinned.fingerprint === `sha256:${'cd'.repeat(32)}`);
  assert.throws(() => clientTransport(spec, { fingerprint: 'sha1:00' }), /--server-fingerprint/);
  assert.throws(() => clientTransport(spec, { plaintext: true }), /plaintext contradicts/);
  const bare = parseGroupFile(YamlFile.parse('g.yaml', `name: g\nsecret: ${'s'.repeat(20)}\n${apps}`));
  assert.deepEqual(clientTransport(bare), { kind: 'tls' }, 'nothing said means TLS with the system CAs');
  assert.deepEqual(clientTransport(bare, { plaintext: true }), { kind: 'plain' });
  writeFileSync(file, `name: g\nsecret: ${'s'.repeat(20)}\nserverCa: missing.crt\n${apps}`);
  assert.throws(
    () => clientTransport(parseGroupFile(YamlFile.read(file))),
    (error: unknown) => error instanceof ConfigError && error.field === 'serverCa',
  );
});
