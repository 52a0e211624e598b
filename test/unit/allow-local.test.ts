import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { servedApps } from '../../src/client/server-apps.js';
import { AllowLocal, ConfigError, DEFAULT_ALLOW_LOCAL, loadGroupFile, parseAllowLocalEntry } from '../../src/config/index.js';
import type { AppTarget } from '../../src/protocol/index.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';

describe('allowLocal: the local targets a host lets the server name', () => {
  test('entries: an address, a CIDR, a port, a port range, IPv6 with and without brackets', () => {
    const allow = AllowLocal.of(['127.0.0.1', '10.0.0.0/8:80-90', '[::1]:22', 'fd00::/8', '192.168.1.0/24:443']);
    assert.equal(allow.refusal({ host: '127.0.0.1', port: 5432 }), undefined);
    assert.equal(allow.refusal({ host: '10.20.30.40', port: 80 }), undefined);
    assert.equal(allow.refusal({ host: '10.20.30.40', port: 90 }), undefined);
    assert.match(allow.refusal({ host: '10.20.30.40', port: 91 })!, /local target 10\.20\.30\.40:91 is outside allowLocal/);
    assert.match(allow.refusal({ host: '11.0.0.1', port: 80 })!, /outside allowLocal/);
    assert.equal(allow.refusal({ host: '::1', port: 22 }), undefined);
    assert.match(allow.refusal({ host: '::1', port: 23 })!, /outside allowLocal/);
    assert.equal(allow.refusal({ host: 'fd12:3456::1', port: 8080 }), undefined);
    assert.match(allow.refusal({ host: 'fe80::1', port: 8080 })!, /outside allowLocal/);
    assert.equal(allow.refusal({ host: '192.168.1.7', port: 443 }), undefined);
    assert.match(allow.refusal({ host: '192.168.2.7', port: 443 })!, /outside allowLocal/);
  });

  test('the default is loopback only, any port; ::ffff:-mapped addresses are judged as IPv4', () => {
    const allow = AllowLocal.of(DEFAULT_ALLOW_LOCAL);
    for (const host of ['127.0.0.1', '127.5.6.7', '::1', 'localhost', '::ffff:127.0.0.1']) assert.equal(allow.refusal({ host, port: 65535 }), undefined, host);
    for (const host of ['10.0.0.1', '169.254.169.254', '0.0.0.0', '::ffff:10.0.0.1', '::'])
      assert.match(allow.refusal({ host, port: 80 })!, /outside allowLocal/, host);
  });

  test('a host name is refused: allowLocal matches addresses, DNS does not get to choose', () => {
    assert.match(AllowLocal.of(['0.0.0.0/0']).refusal({ host: 'db.internal', port: 5432 })!, /db\.internal:5432 is a host name/);
  });

  test('bad entries are refused with the entry and the part named', () => {
    for (const [text, expected] of [
      ['10.0.0.0/33', /"10\.0\.0\.0\/33" is not an address or CIDR/],
      ['example.com', /"example\.com" is not an address or CIDR/],
      ['127.0.0.1:0', /"0" is not a port/],
      ['127.0.0.1:90-80', /"90-80" is not a port/],
      ['127.0.0.1:70000', /"70000" is not a port/],
      ['[::1', /a "\[" without its "\]"/],
      ['[::1]22', /expected ":PORT" after "\]"/],
    ] as const) {
      const parsed = parseAllowLocalEntry(text);
      assert.equal(parsed.ok, false, text);
      assert.match(parsed.ok ? '' : parsed.problem, expected, text);
    }
  });

  test('in a host file: a bad entry is an error naming allowLocal and its index; no apps: is fine in a host file only', () => {
    const config = makeConfigDir([], { tls: false });
    const file = join(config.groupsDir, 'host.yaml');
    writeFileSync(file, `name: office\nsecret: ${randomSecret()}\nallowLocal: ["127.0.0.1", "10.0.0.0/8:99999"]\n`);
    assert.throws(
      () => loadGroupFile(file, {}, { anyFileName: true }),
      (error: unknown) => error instanceof ConfigError && /allowLocal\[1\]|allowLocal\.1/.test(error.message) && /99999/.test(error.message),
    );
    writeFileSync(file, `name: office\nsecret: ${randomSecret()}\nallowLocal: ["10.0.0.0/8:80-90"]\n`);
    const spec = loadGroupFile(file, {}, { anyFileName: true });
    assert.deepEqual(spec.apps, []);
    assert.deepEqual(spec.allowLocal.texts, ['10.0.0.0/8:80-90']);
    const registry = join(config.groupsDir, 'office.yaml');
    writeFileSync(registry, `name: office\nsecret: ${randomSecret()}\n`);
    assert.throws(() => loadGroupFile(registry, {}), /apps: expected a list of at least one app/);
  });
});

describe('servedApps: the server’s apps against the host’s file', () => {
  const file = join(makeConfigDir([], { tls: false }).groupsDir, 'office.yaml');
  writeFileSync(file, `name: office\nsecret: ${randomSecret()}\napps:\n  - { name: db, local: "10.0.0.5:5432", remotePort: 0 }\n`);
  const host = loadGroupFile(file);
  const app = (name: string, host: string, port: number): AppTarget => ({ name, local: { host, port }, remotePort: 0 });

  test('before any GroupApps the host file’s apps are served as they are', () => {
    assert.deepEqual(servedApps(host, undefined).spec.apps, host.apps);
  });

  test('the server’s list wins: inside allowLocal served, outside refused with the reason, the host’s own target kept', () => {
    const { spec, refused, warnings } = servedApps(host, [app('web', '127.0.0.1', 8080), app('db', '10.0.0.5', 5432), app('meta', '169.254.169.254', 80)]);
    assert.deepEqual(
      spec.apps.map((one) => one.name),
      ['web', 'db'],
    );
    assert.deepEqual(refused, [
      { app: 'meta', target: '169.254.169.254:80', reason: 'local target 169.254.169.254:80 is outside allowLocal (127.0.0.0/8, ::1)' },
    ]);
    assert.deepEqual(warnings, []);
  });

  test('a host entry that differs is a warning naming the app, and the server’s target must pass allowLocal', () => {
    const { spec, refused, warnings } = servedApps(host, [app('db', '10.0.0.6', 5432)]);
    assert.deepEqual(spec.apps, []);
    assert.equal(refused[0]?.app, 'db');
    assert.deepEqual(warnings, ['app "db": this host\'s file says local 10.0.0.5:5432 where the server says 10.0.0.6:5432; the server\'s applies']);
  });

  test('an app only in the host’s file, or whose pooled health check differs, is a warning naming it; the server’s check is the one run', () => {
    const pooledFile = join(makeConfigDir([], { tls: false }).groupsDir, 'pooled.yaml');
    writeFileSync(
      pooledFile,
      `name: pooled\nsecret: ${randomSecret()}\napps:\n  - { name: web, local: "127.0.0.1:8080", pool: web, healthCheck: { type: http, path: /health, interval: 1s } }\n  - { name: mine, local: "127.0.0.1:9000", remotePort: 0 }\n`,
    );
    const pooled = loadGroupFile(pooledFile);
    const check = { type: 'tcp' as const, intervalMs: 2000, timeoutMs: 1000, failures: 3, successes: 2 };
    const { spec, warnings } = servedApps(pooled, [{ ...app('web', '127.0.0.1', 8080), pool: 'web', healthCheck: check }]);
    assert.deepEqual(spec.apps[0]?.healthCheck, check);
    assert.deepEqual(warnings, [
      'app "web": this host\'s file says healthCheck http /health every 1s (timeout 1s, 3 failures, 2 successes) where the server says tcp every 2s (timeout 1s, 3 failures, 2 successes); the server\'s applies',
      'app "mine" is in this host\'s file but not in the server\'s registry: not served',
    ]);
  });
});
