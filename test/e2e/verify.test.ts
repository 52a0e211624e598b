import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { groupYaml, makeConfigDir, randomSecret } from '../helpers/configs.js';
import { CliProcess, COMMONSERVER_BIN, GROUPCLIENT_BIN, startCommonServerProcess } from '../helpers/processes.js';

interface Report {
  code: number | null;
  problems: string[];
  warnings: string[];
  oks: string[];
  verdict: string;
}

async function verify(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Report> {
  const cli = new CliProcess(bin, ['verify', ...args], env);
  const { code } = await cli.exited;
  const pick = (label: string): string[] => cli.lines.filter((line) => line.startsWith(label)).map((line) => line.slice(label.length).trim());
  return { code, problems: pick('problem'), warnings: pick('warning'), oks: pick('ok'), verdict: cli.lines.at(-1) ?? '' };
}

test('commonserver verify: a good config passes with exit 0, naming what it checked', { timeout: 20_000 }, async () => {
  const config = makeConfigDir([{ name: 'good', secret: randomSecret(), apps: [{ name: 'a', localPort: 1, remotePort: 6100 }] }], {
    extra: { allowPorts: ['6000-6999'] },
  });
  chmodSync(config.groupFile('good'), 0o600);
  const report = await verify(COMMONSERVER_BIN, ['--config', config.serverFile]);
  assert.equal(report.code, 0, JSON.stringify(report, null, 1));
  assert.deepEqual(report.problems, []);
  assert.deepEqual(report.warnings, []);
  assert.ok(report.oks.some((line) => /^TLS: .*fingerprint sha256:[0-9a-f]{64}/.test(line)));
  assert.ok(report.oks.some((line) => /^group good: .*secret written in the file; a → :6100/.test(line)));
  assert.ok(report.oks.some((line) => /^common port: 127\.0\.0\.1:0/.test(line)));
  assert.match(report.verdict, /0 problems, 0 warnings: ok$/);
});

test(
  'commonserver verify reports every problem at once (secrets, secretFile mode, policy, port clashes), keeps checking good groups, exit 2',
  { timeout: 20_000 },
  async () => {
    // A common port held by another listener: the check says so (a warning: a running server holds it too).
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    after(() => holder.close());
    const busyPort = (holder.address() as AddressInfo).port;
    const config = makeConfigDir([], { bindPort: busyPort, extra: { allowPorts: ['6000-6999'], admin: { bind: '127.0.0.1:0' } } });
    const good = config.writeGroup({ name: 'good', secret: randomSecret(), apps: [{ name: 'a', localPort: 1, remotePort: 6200 }] });
    chmodSync(good, 0o600);
    writeFileSync(config.groupFile('short'), 'name: short\nsecret: abc\napps: [{ name: a, local: "127.0.0.1:1", remotePort: 6201 }]\n');
    writeFileSync(config.groupFile('unset'), 'name: unset\nsecret: ${NTP_VERIFY_TEST_UNSET}\napps: [{ name: a, local: "127.0.0.1:1", remotePort: 6202 }]\n');
    writeFileSync(join(config.groupsDir, 'lax.secret'), `${randomSecret()}\n`);
    chmodSync(join(config.groupsDir, 'lax.secret'), 0o644);
    writeFileSync(config.groupFile('lax'), 'name: lax\nsecretFile: lax.secret\napps: [{ name: a, local: "127.0.0.1:1", remotePort: 6203 }]\n');
    config.writeGroup({ name: 'outside', secret: randomSecret(), apps: [{ name: 'web', localPort: 1, remotePort: 8080 }] });
    chmodSync(config.groupFile('outside'), 0o600);
    config.writeGroup({ name: 'clash', secret: randomSecret(), apps: [{ name: 'x', localPort: 1, remotePort: busyPort }] });
    chmodSync(config.groupFile('clash'), 0o600);
    const readable = config.writeGroup({ name: 'readable', secret: randomSecret(), apps: [{ name: 'r', localPort: 1, remotePort: 6204 }] });
    chmodSync(readable, 0o644);

    const report = await verify(COMMONSERVER_BIN, ['--config', config.serverFile]);
    assert.equal(report.code, 2, JSON.stringify(report, null, 1));
    const expected: RegExp[] = [
      /short\.yaml:2: secret: too short: use at least 16 characters/,
      /unset\.yaml:2: secret: environment variable NTP_VERIFY_TEST_UNSET is not set/,
      /lax\.yaml:2: secretFile: .*lax\.secret has mode 644: a secret file must be readable by its owner only/,
      /outside\.yaml: outside\/web: port 8080 is outside allowPorts \(6000-6999\)/,
      new RegExp(`clash\\.yaml: clash/x: port ${busyPort} is the common port of this server`),
    ];
    for (const pattern of expected)
      assert.ok(
        report.problems.some((line) => pattern.test(line)),
        `missing ${pattern} in:\n${report.problems.join('\n')}`,
      );
    assert.equal(report.problems.length, expected.length, report.problems.join('\n'));
    assert.ok(
      report.oks.some((line) => line.startsWith('group good:')),
      'a good group is still checked and reported',
    );
    assert.ok(report.warnings.some((line) => /readable\.yaml holds the secret of group readable and is readable by every user \(mode 644\)/.test(line)));
    assert.ok(report.warnings.some((line) => new RegExp(`^common port: 127\\.0\\.0\\.1:${busyPort} is in use now \\(EADDRINUSE\\)`).test(line)));
    assert.ok(report.oks.some((line) => /^admin port: 127\.0\.0\.1:0/.test(line)));
    assert.match(report.verdict, /5 problems, 2 warnings: the configuration is invalid \(exit 2\)$/);
  },
);

test('commonserver verify of an invalid server config says why, and still checks its groups directory', { timeout: 20_000 }, async () => {
  const config = makeConfigDir([], { extra: { heartbeat: { interval: '10s', timeout: '5s' } } });
  writeFileSync(config.groupFile('short'), 'name: short\nsecret: abc\napps: [{ name: a, local: "127.0.0.1:1", remotePort: 0 }]\n');
  const report = await verify(COMMONSERVER_BIN, ['--config', config.serverFile]);
  assert.equal(report.code, 2);
  assert.ok(
    report.problems.some((line) => /^server config: .*commonserver\.yaml:\d+: heartbeat\.timeout: must be longer than the interval/.test(line)),
    report.problems.join('\n'),
  );
  assert.ok(
    report.problems.some((line) => /short\.yaml:2: secret: too short/.test(line)),
    report.problems.join('\n'),
  );
});

test("groupclient verify: the run command's options checked as given; every problem listed; warnings exit 1", { timeout: 40_000 }, async () => {
  const secret = randomSecret();
  const listening = await startEchoApp();
  after(() => listening.close());
  const config = makeConfigDir([{ name: 'host', secret, apps: [{ name: 'ssh', localPort: listening.port, remotePort: 6022 }] }]);
  chmodSync(config.groupFile('host'), 0o600);
  const pinned = ['--group', 'host', '--groups', config.groupsDir, '--server', '127.0.0.1:7000', '--server-fingerprint', `sha256:${'ab'.repeat(32)}`];

  const good = await verify(GROUPCLIENT_BIN, pinned);
  assert.equal(good.code, 0, JSON.stringify(good, null, 1));
  assert.ok(good.oks.some((line) => line === `app ssh: dials 127.0.0.1:${listening.port}: something listens; public port 6022`));
  assert.ok(good.oks.some((line) => line === 'server: 127.0.0.1:7000 (--server)'));
  assert.ok(good.oks.some((line) => line === `TLS: pins the server's certificate sha256:${'ab'.repeat(32)}`));

  // A cluster's nodes: each one's pin is checked, and a count of pins that fits neither is a problem.
  const nodes = ['--group', 'host', '--groups', config.groupsDir, '--server', '127.0.0.1:7000,127.0.0.2:7000'];
  const cluster = await verify(GROUPCLIENT_BIN, [...nodes, '--server-fingerprint', `sha256:${'ab'.repeat(32)},sha256:${'cd'.repeat(32)}`]);
  assert.equal(cluster.code, 0, JSON.stringify(cluster, null, 1));
  assert.ok(cluster.oks.includes('server: 127.0.0.1:7000, 127.0.0.2:7000 (--server)'));
  assert.ok(cluster.oks.includes(`TLS to 127.0.0.2:7000: pins the server's certificate sha256:${'cd'.repeat(32)}`));
  const miscounted = await verify(GROUPCLIENT_BIN, [
    ...nodes,
    '--server-fingerprint',
    `sha256:${'ab'.repeat(32)},sha256:${'cd'.repeat(32)},sha256:${'ef'.repeat(32)}`,
  ]);
  assert.equal(miscounted.code, 2);
  assert.ok(
    miscounted.problems.some((line) => /--server-fingerprint: give one fingerprint for all servers, or one per server \(2\)/.test(line)),
    miscounted.problems.join('\n'),
  );

  // No pin and no CA: it runs, but a self-signed server would be refused.
  const unpinned = await verify(GROUPCLIENT_BIN, ['--group', 'host', '--groups', config.groupsDir]);
  assert.equal(unpinned.code, 1);
  assert.ok(unpinned.warnings.some((line) => /no serverFingerprint or serverCa/.test(line)));

  // Three independent problems on one command line: all three are reported.
  writeFileSync(join(config.groupsDir, 'other.yaml'), groupYaml({ name: 'other', secret, apps: [{ name: 'a', localPort: 1 }] }));
  chmodSync(join(config.groupsDir, 'other.yaml'), 0o600);
  const bad = await verify(GROUPCLIENT_BIN, [
    '--group',
    'host',
    '--config',
    join(config.groupsDir, 'other.yaml'),
    '--server',
    'nowhere',
    '--max-pooled-work-conns',
    '99999',
    '--max-mux-streams',
    '0',
    '--server-fingerprint',
    'sha1:00',
  ]);
  assert.equal(bad.code, 2);
  assert.deepEqual(
    bad.problems.map((line) => line.replace(/:.*/, '')),
    ['group file', 'server', 'TLS', '--max-pooled-work-conns'],
    bad.problems.join('\n'),
  );
  assert.match(bad.problems[0]!, /other\.yaml defines group "other", not "host"/);
  assert.match(bad.problems[2]!, /--server-fingerprint: expected sha256:/);

  // A group file that does not load: its error names file, line and field.
  writeFileSync(config.groupFile('host'), 'name: host\nsecret: short\napps: [{ name: a, local: "127.0.0.1:1", remotePort: 0 }]\n');
  const broken = await verify(GROUPCLIENT_BIN, ['--group', 'host', '--groups', config.groupsDir]);
  assert.equal(broken.code, 2);
  assert.match(broken.problems[0] ?? '', /host\.yaml:2: secret: too short/);
});

test(
  'groupclient verify dials every local target: "nothing listens" is a warning that keeps the exit code, "ok" only when something accepted',
  { timeout: 20_000 },
  async () => {
    const listening = await startEchoApp();
    after(() => listening.close());
    const closed = await unusedPort();
    const noServer = await unusedPort();
    const config = makeConfigDir([]);
    const apps = [
      `{ name: up, local: "127.0.0.1:${listening.port}", remotePort: 6101 }`,
      `{ name: down, local: "127.0.0.1:${closed}", remotePort: 0 }`,
      `{ name: site, type: http, local: "127.0.0.1:${listening.port}", domains: [site.example.com, www.example.com] }`,
    ];
    writeFileSync(config.groupFile('dialed'), `name: dialed\nsecret: ${randomSecret()}\napps:\n${apps.map((app) => `  - ${app}\n`).join('')}`);
    chmodSync(config.groupFile('dialed'), 0o600);
    const report = await verify(GROUPCLIENT_BIN, [
      '--group',
      'dialed',
      '--groups',
      config.groupsDir,
      '--server',
      `127.0.0.1:${noServer}`,
      '--server-fingerprint',
      `sha256:${'ab'.repeat(32)}`,
    ]);
    assert.equal(report.code, 0, JSON.stringify(report, null, 1));
    assert.ok(report.oks.includes(`app up: dials 127.0.0.1:${listening.port}: something listens; public port 6101`), report.oks.join('\n'));
    assert.deepEqual(report.warnings, [
      `app down: nothing listens on 127.0.0.1:${closed} (ECONNREFUSED); public port chosen by the server`,
      `server link: nothing answers on 127.0.0.1:${noServer} (ECONNREFUSED): the groupclient keeps trying`,
    ]);
    // A vhost app has no public port of its own: the server routes its users by name.
    assert.ok(
      report.oks.includes(`app site: dials 127.0.0.1:${listening.port}: something listens; routed by name (site.example.com, www.example.com)`),
      report.oks.join('\n'),
    );
    assert.match(report.verdict, /0 problems, 0 warnings \(and 2 about the host now\): ok$/);
  },
);

test(
  'groupclient verify of an identity-only host file: the apps come from the server inside allowLocal, the server answers and proves itself; a server that proves to be another is a problem',
  { timeout: 30_000 },
  async () => {
    const echo = await startEchoApp();
    after(() => echo.close());
    const secret = randomSecret();
    const config = makeConfigDir([{ name: 'office', secret, apps: [{ name: 'echo', localPort: echo.port }] }]);
    const started = await startCommonServerProcess(config.serverFile);
    after(() => started.process.stop());
    const hostDir = mkdtempSync(join(tmpdir(), 'ntp-host-'));
    writeFileSync(join(hostDir, 'office.secret'), `${secret}\n`, { mode: 0o600 });
    const hostFile = join(hostDir, 'office.yaml');
    writeFileSync(hostFile, `name: office\nsecretFile: office.secret\nserver: 127.0.0.1:${started.port}\nserverFingerprint: ${started.fingerprint}\n`);

    const report = await verify(GROUPCLIENT_BIN, ['--config', hostFile]);
    assert.equal(report.code, 0, JSON.stringify(report, null, 1));
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.warnings, []);
    assert.ok(
      report.oks.some((line) => /^group file: .*office\.yaml: group office, /.test(line)),
      report.oks.join('\n'),
    );
    assert.ok(
      report.oks.includes(
        'apps: none in this file: the server sends them at login and on every change; allowLocal (127.0.0.0/8, ::1) bounds what this host dials for them',
      ),
      report.oks.join('\n'),
    );
    assert.ok(report.oks.includes(`server link: 127.0.0.1:${started.port} answers over TLS and its certificate is the one trusted`), report.oks.join('\n'));
    assert.match(report.verdict, /0 problems, 0 warnings: ok$/);

    // Another server's certificate: refused as a login would refuse it.
    const other = await verify(GROUPCLIENT_BIN, ['--config', hostFile, '--server-fingerprint', `sha256:${'ab'.repeat(32)}`]);
    assert.equal(other.code, 2, JSON.stringify(other, null, 1));
    assert.ok(
      other.problems.some((line) => line.startsWith(`server link: 127.0.0.1:${started.port}: the server's certificate fingerprint is ${started.fingerprint}`)),
      other.problems.join('\n'),
    );
  },
);
