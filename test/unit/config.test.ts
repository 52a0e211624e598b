import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { format, inspect } from 'node:util';
import {
  ConfigError,
  duration,
  formatDuration,
  loadGroupDirectory,
  loadGroupFile,
  loadServerConfig,
  parseByteRate,
  SERVER_DEFAULTS,
  UDP_DEFAULTS,
  type ConfigErrorCode,
} from '../../src/config/index.js';
import { configError } from '../helpers/config-errors.js';
import { CONFIG_FIXTURES } from '../helpers/paths.js';

const fixtures = CONFIG_FIXTURES;
const valid = join(fixtures, 'valid');
const invalid = join(fixtures, 'invalid');

const OFFICE_A_SECRET = 'office-a-secret-from-the-environment';
const ENV: NodeJS.ProcessEnv = {
  NTP_FIXTURE_OFFICE_A_SECRET: OFFICE_A_SECRET,
  NTP_FIXTURE_PART: 'from-env',
  NTP_FIXTURE_BETA_SECRET: 'beta-secret-long-enough',
};

interface Expected {
  code: ConfigErrorCode;
  /** The dotted field, or undefined for a YAML syntax error (the parser knows no field). */
  field: string | undefined;
  line: number;
}

/** One row per fixture in invalid/groups: a fixture without a row fails the suite. */
const INVALID_GROUPS: Record<string, Expected> = {
  'unknown-key.yaml': { code: 'CONFIG_INVALID', field: 'port', line: 5 },
  'unknown-app-key.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].remote_port', line: 6 },
  'missing-env.yaml': { code: 'CONFIG_INVALID', field: 'secret', line: 2 },
  'short-secret.yaml': { code: 'CONFIG_INVALID', field: 'secret', line: 2 },
  'duplicate-app.yaml': { code: 'CONFIG_INVALID', field: 'apps[1].name', line: 5 },
  'duplicate-port.yaml': { code: 'CONFIG_INVALID', field: 'apps[2].remotePort', line: 6 },
  'bad-host-port.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].local', line: 5 },
  'local-port-out-of-range.yaml': { code: 'CONFIG_INVALID', field: 'apps[1].local', line: 5 },
  'remote-port-out-of-range.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].remotePort', line: 6 },
  'name-mismatch.yaml': { code: 'CONFIG_INVALID', field: 'name', line: 2 },
  'no-apps.yaml': { code: 'CONFIG_INVALID', field: 'apps', line: 3 },
  'yaml-syntax.yaml': { code: 'CONFIG_PARSE', field: undefined, line: 4 },
  'duplicate-key.yaml': { code: 'CONFIG_PARSE', field: undefined, line: 5 },
  'alias-bomb.yaml': { code: 'CONFIG_PARSE', field: undefined, line: 6 },
  'secret-and-secret-file.yaml': { code: 'CONFIG_INVALID', field: 'secretFile', line: 3 },
  'servers-bad-fingerprint.yaml': { code: 'CONFIG_INVALID', field: 'servers[1].fingerprint', line: 5 },
  'udp-bad-type.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].type', line: 6 },
  'udp-settings-on-tcp.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].udp', line: 7 },
  'udp-bad-idle-timeout.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].udp.idleTimeout', line: 10 },
  'udp-datagram-too-large.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].udp.maxDatagramBytes', line: 9 },
  'udp-max-connections.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].maxConnections', line: 8 },
  'udp-duplicate-port.yaml': { code: 'CONFIG_INVALID', field: 'apps[2].remotePort', line: 6 },
  'udp-unknown-setting.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].udp.timeout', line: 9 },
  'bad-proxy-protocol.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].proxyProtocol', line: 7 },
  'bandwidth-in-bits.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].bandwidth.out', line: 9 },
  'bandwidth-unknown-side.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].bandwidth.up', line: 4 },
  'bandwidth-empty.yaml': { code: 'CONFIG_INVALID', field: 'apps[1].bandwidth', line: 10 },
  'bandwidth-too-small.yaml': { code: 'CONFIG_INVALID', field: 'apps[0].bandwidth.out', line: 7 },
};

const INVALID_SERVERS: Record<string, Expected> = {
  'bad-duration.yaml': { code: 'CONFIG_INVALID', field: 'heartbeat.interval', line: 3 },
  'heartbeat-timeout-not-longer.yaml': { code: 'CONFIG_INVALID', field: 'heartbeat.timeout', line: 4 },
  'unknown-key.yaml': { code: 'CONFIG_INVALID', field: 'heartbeat.jitter', line: 3 },
  'bad-bind.yaml': { code: 'CONFIG_INVALID', field: 'bind', line: 2 },
  'bind-port-out-of-range.yaml': { code: 'CONFIG_INVALID', field: 'bind', line: 1 },
  'bad-pairing-timeout.yaml': { code: 'CONFIG_INVALID', field: 'pairingTimeout', line: 2 },
  'yaml-syntax.yaml': { code: 'CONFIG_PARSE', field: undefined, line: 4 },
  'cluster-lease-ttl.yaml': { code: 'CONFIG_INVALID', field: 'cluster.leaseTtl', line: 6 },
  'cluster-no-node.yaml': { code: 'CONFIG_INVALID', field: 'cluster.node', line: 4 },
  'cluster-etcd-url.yaml': { code: 'CONFIG_INVALID', field: 'cluster.etcd[0]', line: 2 },
};

function assertNamesItsPlace(error: ConfigError, file: string, expected: Expected): void {
  assert.equal(error.code, expected.code, error.message);
  assert.equal(error.file, file);
  assert.equal(error.field, expected.field, error.message);
  assert.equal(error.line, expected.line, error.message);
  // The message alone must be enough for a person: file:line, then the field.
  assert.ok(error.message.startsWith(`${file}:${expected.line}: `), error.message);
  if (expected.field !== undefined) assert.ok(error.message.includes(` ${expected.field}: `), error.message);
}

describe('invalid config fixtures', () => {
  for (const [dir, table, load] of [
    ['groups', INVALID_GROUPS, (file: string) => loadGroupFile(file, ENV)],
    ['server', INVALID_SERVERS, (file: string) => loadServerConfig(file)],
  ] as const) {
    test(`every file in invalid/${dir} has an expectation`, () => {
      assert.deepEqual(readdirSync(join(invalid, dir)).sort(), Object.keys(table).sort());
    });
    for (const [name, expected] of Object.entries(table)) {
      test(`invalid/${dir}/${name} → ${expected.field ?? 'syntax'} at line ${expected.line}`, () => {
        const file = join(invalid, dir, name);
        assertNamesItsPlace(
          configError(() => load(file)),
          file,
          expected,
        );
      });
    }
  }

  test('a secret variable set to the empty string counts as unset', () => {
    const file = join(valid, 'groups', 'office-a.yaml');
    const error = configError(() => loadGroupFile(file, { ...ENV, NTP_FIXTURE_OFFICE_A_SECRET: '' }));
    assertNamesItsPlace(error, file, { code: 'CONFIG_INVALID', field: 'secret', line: 2 });
    assert.ok(error.message.includes('NTP_FIXTURE_OFFICE_A_SECRET'), 'the message names the variable');
  });

  test('a too-short secret is not quoted in the error', () => {
    const error = configError(() => loadGroupFile(join(invalid, 'groups', 'short-secret.yaml'), ENV));
    assert.ok(!error.message.includes('hunter2'), error.message);
  });

  test('a missing file is a CONFIG_READ error naming it', () => {
    const file = join(invalid, 'groups', 'no-such-group.yaml');
    const error = configError(() => loadGroupFile(file, ENV));
    assert.equal(error.code, 'CONFIG_READ');
    assert.equal(error.file, file);
    assert.ok(error.message.includes(file));
  });
});

describe('valid config fixtures', () => {
  test('a group file with ${VAR} read from the environment', () => {
    const spec = loadGroupFile(join(valid, 'groups', 'office-a.yaml'), ENV);
    assert.equal(spec.name, 'office-a');
    assert.equal(spec.secret.reveal(), OFFICE_A_SECRET);
    assert.deepEqual(
      spec.apps.map((app) => [app.name, app.local, app.remotePort]),
      [
        ['ssh', { host: '127.0.0.1', port: 22 }, 6022],
        ['web', { host: '::1', port: 8080 }, 6080],
        ['auto', { host: 'localhost', port: 9000 }, 0],
      ],
    );
    assert.equal(spec.server, undefined);
    assert.ok(Object.isFrozen(spec) && Object.isFrozen(spec.apps) && Object.isFrozen(spec.apps[0]));
  });

  test('proxyProtocol and bandwidth (bytes per second, KB and MB as powers of 1024, "/s" allowed)', () => {
    const [ssh, web] = loadGroupFile(join(valid, 'groups', 'office-a.yaml'), ENV).apps;
    assert.equal(web!.proxyProtocol, 'v2');
    assert.deepEqual(web!.bandwidth, { in: 512 * 1024, out: 1.5 * 1024 * 1024 });
    assert.equal(ssh!.proxyProtocol, undefined, 'no header unless asked for');
    assert.equal(ssh!.bandwidth, undefined, 'unlimited unless limited');
  });

  test('a bandwidth rate: units, bounds, and bits refused with the conversion', () => {
    const ok = (value: unknown): number => {
      const parsed = parseByteRate(value);
      assert.ok(parsed.ok, JSON.stringify(value));
      return parsed.value;
    };
    assert.deepEqual(['2048', 4096, '1KB', '1KiB', '10MB', '10 MB/s', '10MiB', '1GB', '1.5GB', '700000B'].map(ok), [
      2048,
      4096,
      1024,
      1024,
      10 * 1024 ** 2,
      10 * 1024 ** 2,
      10 * 1024 ** 2,
      1024 ** 3,
      1.5 * 1024 ** 3,
      700_000,
    ]);
    for (const bad of ['100Mbps', '100Mb', '1Gbit', '8kb', '10Mbit/s']) {
      const parsed = parseByteRate(bad);
      assert.ok(!parsed.ok && parsed.problem.includes('not bits'), `${bad}: ${JSON.stringify(parsed)}`);
    }
    // The conversion is given, decimal as network rates are: 100 Mbit/s = 12,500,000 bytes/s.
    const bits = parseByteRate('100Mbps');
    assert.ok(!bits.ok && bits.problem.includes('12500000 bytes per second, about 11.9MB'), JSON.stringify(bits));
    for (const bad of ['', 'fast', '-1MB', '1023', '0', '2048GB', null, true, '10 TB']) assert.equal(parseByteRate(bad).ok, false, JSON.stringify(bad));
  });

  test('${VAR} inside a literal, and a client-side server address', () => {
    const spec = loadGroupFile(join(valid, 'groups', 'office-b.yaml'), ENV);
    assert.equal(spec.secret.reveal(), 'prefix-from-env-suffix');
    assert.deepEqual(spec.server, { host: 'commonserver.example.net', port: 7000 });
  });

  test('UDP apps: type udp with the defaults or its own udp settings, beside a TCP app on the same port number', () => {
    const spec = loadGroupFile(join(valid, 'groups', 'office-udp.yaml'), ENV);
    assert.deepEqual(
      spec.apps.map((app) => [app.name, app.type ?? 'tcp', app.remotePort, app.udp]),
      [
        ['dns', 'udp', 5353, UDP_DEFAULTS],
        ['dns-tcp', 'tcp', 5353, undefined],
        ['wireguard', 'udp', 51820, { idleTimeoutMs: 180_000, maxSessions: 16, maxDatagramBytes: 1500 }],
      ],
    );
    assert.deepEqual(spec.apps[2]!.allow, ['10.0.0.0/8']);
    assert.deepEqual(UDP_DEFAULTS, { idleTimeoutMs: 60_000, maxSessions: 1024, maxDatagramBytes: 8192 });
  });

  test('a complete server file, with groups relative to it', () => {
    const config = loadServerConfig(join(valid, 'commonserver.yaml'));
    assert.deepEqual(config.bind, { host: '127.0.0.1', port: 7000 });
    assert.equal(config.groupsDir, join(valid, 'groups'));
    assert.equal(config.heartbeatIntervalMs, 500);
    assert.equal(config.heartbeatTimeoutMs, 1500);
    assert.equal(config.pairingTimeoutMs, 2000);
    assert.equal(config.handshakeTimeoutMs, 250, 'a bare number is milliseconds');
  });

  test('a cluster node: etcd endpoints, node, advertise, prefix, lease and a password from the environment', () => {
    const password = 'etcd-password-from-env';
    const config = loadServerConfig(join(valid, 'cluster-node.yaml'), { NTP_FIXTURE_ETCD_PASSWORD: password });
    const cluster = config.cluster!;
    assert.deepEqual(cluster.etcd, ['http://10.0.0.5:2379', 'https://10.0.0.6:2379']);
    assert.equal(cluster.node, 'node-b');
    assert.equal(cluster.advertise, 'b.tunnel.example');
    assert.equal(cluster.prefix, '/ntp/prod');
    assert.equal(cluster.leaseTtlMs, 6000);
    assert.equal(cluster.auth?.user, 'ntp');
    assert.equal(cluster.auth?.password.reveal(), password);
    assert.equal(JSON.stringify(config).includes(password), false, 'the etcd password never shows when the config is serialised');
    assert.equal(loadServerConfig(join(valid, 'minimal-server.yaml')).cluster, undefined, 'no cluster: section, no cluster');
  });

  test("a group file naming a cluster's nodes: servers with their own fingerprint or the file's", () => {
    const spec = loadGroupFile(join(valid, 'cluster-groups', 'roaming.yaml'));
    assert.deepEqual(spec.servers, [
      { address: { host: 'a.tunnel.example', port: 7000 } },
      { address: { host: '127.0.0.2', port: 7000 }, fingerprint: `sha256:${'22'.repeat(32)}` },
    ]);
    assert.equal(spec.serverFingerprint, `sha256:${'11'.repeat(32)}`);
  });

  test('a minimal server file gets the defaults', () => {
    const config = loadServerConfig(join(valid, 'minimal-server.yaml'));
    assert.deepEqual(config.bind, { host: '::1', port: 0 });
    assert.equal(config.groupsDir, join(valid, 'groups'));
    assert.equal(config.heartbeatIntervalMs, SERVER_DEFAULTS.heartbeatIntervalMs);
    assert.equal(config.heartbeatTimeoutMs, SERVER_DEFAULTS.heartbeatTimeoutMs);
    assert.equal(config.pairingTimeoutMs, SERVER_DEFAULTS.pairingTimeoutMs);
    assert.equal(config.handshakeTimeoutMs, SERVER_DEFAULTS.handshakeTimeoutMs);
  });
});

describe('loadGroupDirectory', () => {
  const dir = join(fixtures, 'directory');

  test('keeps the good files and reports each bad one with its field and line', () => {
    const { groups, errors } = loadGroupDirectory(dir, ENV);
    assert.deepEqual(
      groups.map((g) => g.name),
      ['alpha', 'beta'],
    );
    assert.deepEqual(
      errors.map((e) => [e.file, e.field, e.line]),
      [
        [join(dir, 'alpha.yml'), 'name', 2],
        [join(dir, 'delta.yaml'), 'secret', 2],
        [join(dir, 'gamma.yaml'), 'apps[1].remotePort', 6],
      ],
    );
    for (const error of errors) assert.ok(error.message.startsWith(`${error.file}:${error.line}: ${error.field}: `), error.message);
    const conflict = errors[2]!;
    assert.ok(conflict.message.includes('7101') && conflict.message.includes('alpha/ssh'), 'names the port and who holds it');
  });

  test('a missing directory is a CONFIG_READ error', () => {
    const missing = join(dir, 'no-such-dir');
    const error = configError(() => loadGroupDirectory(missing, ENV));
    assert.equal(error.code, 'CONFIG_READ');
    assert.equal(error.file, missing);
  });
});

test('a secret never shows when a GroupSpec is printed, serialised or inspected', () => {
  const spec = loadGroupFile(join(valid, 'groups', 'office-a.yaml'), ENV);
  const renderings = [
    String(spec),
    `${spec.secret}`,
    String(spec.secret),
    JSON.stringify(spec),
    JSON.stringify(spec.secret),
    inspect(spec, { depth: Infinity, showHidden: true }),
    inspect(spec.secret, { showHidden: true }),
    format('%o %O %s %j', spec, spec, spec.secret, spec),
    JSON.stringify({ ...spec }),
  ];
  for (const text of renderings) assert.ok(!text.includes(OFFICE_A_SECRET), `secret leaked in: ${text}`);
  assert.ok(JSON.stringify(spec).includes('"secret":"[secret]"'), 'the field is there, masked');
  assert.ok(inspect(spec).includes('[secret]'));
});

test('durations in lines are written as people write them in the config (30s, not 30000ms)', () => {
  const cases: [number, string][] = [
    [0, '0ms'],
    [250, '250ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [3000, '3s'],
    [12_345, '12s'],
    [30_000, '30s'],
    [90_000, '90s'],
    [120_000, '2m'],
    [3_600_000, '1h'],
  ];
  for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, `${ms}`);
  // What the text says is what the config parser reads back.
  for (const [ms, text] of cases.filter(([ms]) => ms < 10_000 || ms % 1000 === 0)) assert.equal(duration.parse(text), ms, text);
});
