import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import {
  describeChanges,
  loadGroupDirectory,
  loadGroupFile,
  MAX_CONFIG_BYTES,
  parseGroupFile,
  sameGroupSpec,
  specChanges,
  YamlFile,
  type GroupSpec,
} from '../../src/config/index.js';
import { configError } from '../helpers/config-errors.js';
import { randomSecret } from '../helpers/configs.js';
import { CONFIG_FIXTURES } from '../helpers/paths.js';

const fixtures = CONFIG_FIXTURES;
const bomb = join(fixtures, 'invalid', 'groups', 'alias-bomb.yaml');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'ntp-config-'));
}

function writeGroup(dir: string, name: string, body: Record<string, unknown>): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify({ name, ...body }));
  return file;
}

const app = (name: string, remotePort: number, extra: Record<string, unknown> = {}) => ({ name, local: '127.0.0.1:1', remotePort, ...extra });

describe('files the parser rejects stay with their own file', () => {
  test('an alias bomb in a groups directory is reported with its file; the other groups load', () => {
    const dir = tempDir();
    copyFileSync(bomb, join(dir, 'alias-bomb.yaml'));
    writeGroup(dir, 'good', { secret: randomSecret(), apps: [app('a', 0)] });
    const { groups, errors } = loadGroupDirectory(dir);
    assert.deepEqual(
      groups.map((g) => g.name),
      ['good'],
    );
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'CONFIG_PARSE');
    assert.equal(errors[0]!.file, join(dir, 'alias-bomb.yaml'));
    assert.match(errors[0]!.message, /alias-bomb\.yaml:6: .*aliases/);
  });

  test('a few aliases are still fine', () => {
    const spec = parseGroupFile(
      YamlFile.parse(
        'aliases.yaml',
        `name: aliases\nsecret: ${randomSecret()}\napps:\n  - &web { name: web, local: "127.0.0.1:1", remotePort: 0, allow: &lan ["10.0.0.0/8"] }\n  - { name: ssh, local: "127.0.0.1:2", remotePort: 0, allow: *lan }\n`,
      ),
    );
    assert.deepEqual(spec.apps[1]!.allow, ['10.0.0.0/8']);
  });

  test('a file over the size bound is refused before it is parsed, naming the file', () => {
    const dir = tempDir();
    const file = writeGroup(dir, 'big', { secret: randomSecret(), apps: [app('a', 0)], padding: 'x'.repeat(MAX_CONFIG_BYTES) });
    const error = configError(() => loadGroupFile(file));
    assert.equal(error.code, 'CONFIG_READ');
    assert.equal(error.file, file);
    assert.match(error.message, /larger than/);
    assert.equal(configError(() => YamlFile.parse('request body', 'x'.repeat(MAX_CONFIG_BYTES + 1))).code, 'CONFIG_READ');
  });

  test('a FIFO or a directory named like a group file is reported, not read (a FIFO would block)', () => {
    const dir = tempDir();
    execFileSync('mkfifo', [join(dir, 'fifo.yaml')]);
    mkdirSync(join(dir, 'folder.yaml'));
    writeGroup(dir, 'good', { secret: randomSecret(), apps: [app('a', 0)] });
    const { groups, errors } = loadGroupDirectory(dir);
    assert.deepEqual(
      groups.map((g) => g.name),
      ['good'],
    );
    assert.deepEqual(
      errors.map((e) => [e.code, e.file]),
      [
        ['CONFIG_READ', join(dir, 'fifo.yaml')],
        ['CONFIG_READ', join(dir, 'folder.yaml')],
      ],
    );
  });
});

describe('a public port claimed by two files', () => {
  test('is a port per protocol: a UDP app and a TCP app of two groups share its number; two UDP apps do not', () => {
    const dir = tempDir();
    writeGroup(dir, 'tcp-side', { secret: randomSecret(), apps: [app('dns-tcp', 7353)] });
    writeGroup(dir, 'udp-side', { secret: randomSecret(), apps: [app('dns', 7353, { type: 'udp' })] });
    const both = loadGroupDirectory(dir);
    assert.deepEqual(both.errors, []);
    assert.deepEqual(
      both.groups.map((g) => g.name),
      ['tcp-side', 'udp-side'],
    );

    writeGroup(dir, 'another-udp', { secret: randomSecret(), apps: [app('syslog', 7353, { type: 'udp' })] });
    const third = loadGroupDirectory(dir, process.env, new Map(both.groups.map((spec) => [spec.name, spec])));
    assert.deepEqual(
      third.groups.map((g) => g.name),
      ['tcp-side', 'udp-side'],
    );
    assert.equal(third.errors.length, 1);
    assert.equal(third.errors[0]!.field, 'apps[0].remotePort');
    assert.match(third.errors[0]!.message, /port 7353\/udp is already claimed by udp-side\/dns/);
  });

  test('stays with the group that holds it, whatever the names sort as; the newcomer is refused', () => {
    const dir = tempDir();
    writeGroup(dir, 'zeta', { secret: randomSecret(), apps: [app('web', 7301)] });
    writeGroup(dir, 'alpha', { secret: randomSecret(), apps: [app('web', 7302)] });
    const first = loadGroupDirectory(dir);
    assert.deepEqual(first.errors, []);
    const registered = new Map(first.groups.map((spec) => [spec.name, spec]));

    // alpha now claims zeta's port: alpha sorts first, but zeta holds it.
    writeGroup(dir, 'alpha', { secret: randomSecret(), apps: [app('web', 7301)] });
    writeGroup(dir, 'zeta', { secret: randomSecret(), apps: [app('web', 7301), app('extra', 7303)] });
    const second = loadGroupDirectory(dir, process.env, registered);
    assert.deepEqual(
      second.groups.map((g) => g.name),
      ['zeta'],
      'zeta’s edit applies',
    );
    assert.equal(second.groups[0]!.apps.length, 2);
    assert.equal(second.errors.length, 1);
    assert.equal(second.errors[0]!.file, join(dir, 'alpha.yaml'));
    assert.equal(second.errors[0]!.field, 'apps[0].remotePort');
    assert.match(second.errors[0]!.message, /port 7301 is already claimed by zeta\/web/);

    // Once zeta lets the port go, alpha may have it.
    writeGroup(dir, 'zeta', { secret: randomSecret(), apps: [app('extra', 7303)] });
    const third = loadGroupDirectory(dir, process.env, new Map(second.groups.map((spec) => [spec.name, spec])));
    assert.deepEqual(third.errors, []);
    assert.deepEqual(
      third.groups.map((g) => g.name),
      ['alpha', 'zeta'],
    );
  });

  test('a group whose file became invalid keeps its ports reserved for its last good version', () => {
    const dir = tempDir();
    writeGroup(dir, 'holder', { secret: randomSecret(), apps: [app('web', 7311)] });
    const registered = new Map(loadGroupDirectory(dir).groups.map((spec) => [spec.name, spec]));
    writeFileSync(join(dir, 'holder.yaml'), 'name: holder\napps: [oops\n');
    writeGroup(dir, 'newcomer', { secret: randomSecret(), apps: [app('web', 7311)] });
    const { groups, errors } = loadGroupDirectory(dir, process.env, registered);
    assert.deepEqual(groups, []);
    assert.deepEqual(
      errors.map((e) => e.file),
      [join(dir, 'holder.yaml'), join(dir, 'newcomer.yaml')],
    );
    assert.match(errors[1]!.message, /claimed by holder\/web/);
  });
});

describe('secretFile', () => {
  const setup = (content: string, mode: number) => {
    const dir = tempDir();
    mkdirSync(join(dir, 'secrets'));
    const secretPath = join(dir, 'secrets', 'office.secret');
    writeFileSync(secretPath, content, { mode });
    chmodSync(secretPath, mode);
    const file = writeGroup(dir, 'office', { secretFile: 'secrets/office.secret', apps: [app('a', 0)] });
    return { file, secretPath };
  };

  test('read relative to the group file, trimmed, and never shown', () => {
    const secret = randomSecret();
    const { file, secretPath } = setup(`\n  ${secret}\n`, 0o600);
    const spec = loadGroupFile(file);
    assert.equal(spec.secret.reveal(), secret);
    assert.equal(spec.secretFile, secretPath);
    assert.equal(spec.secretInFile, false, 'the group file itself holds no secret');
    assert.ok(!JSON.stringify(spec).includes(secret));
    assert.equal(loadGroupFile(setup(secret, 0o400).file).secret.reveal(), secret, '400 is stricter than 600');
  });

  test('a file others can read is refused, naming its path and mode, without its content', () => {
    for (const mode of [0o640, 0o604, 0o660]) {
      const secret = randomSecret();
      const { file, secretPath } = setup(secret, mode);
      const error = configError(() => loadGroupFile(file));
      assert.equal(error.field, 'secretFile');
      assert.ok(error.message.includes(secretPath), error.message);
      assert.ok(error.message.includes(`mode ${mode.toString(8)}`), error.message);
      assert.ok(!error.message.includes(secret));
    }
  });

  test('same length rule as a literal secret; a missing file and a bad value are named', () => {
    const short = setup('  short-one \n', 0o600);
    const error = configError(() => loadGroupFile(short.file));
    assert.match(error.message, /secretFile: too short \(in .*office\.secret\): use at least 16/);
    assert.ok(!error.message.includes('short-one'));

    const dir = tempDir();
    const missing = writeGroup(dir, 'office', { secretFile: 'nope.secret', apps: [app('a', 0)] });
    assert.match(configError(() => loadGroupFile(missing)).message, /secretFile: cannot read .*nope\.secret: ENOENT/);
    const empty = writeGroup(dir, 'office', { secretFile: '', apps: [app('a', 0)] });
    assert.equal(configError(() => loadGroupFile(empty)).field, 'secretFile');
    const neither = writeGroup(dir, 'office', { apps: [app('a', 0)] });
    assert.match(configError(() => loadGroupFile(neither)).message, /secret: expected secret: .* or secretFile: PATH/);
  });
});

describe('what a reload changes, field by field', () => {
  const base = (): Record<string, unknown> => ({
    secret: 'the-first-secret-long-enough',
    apps: [app('web', 7401, { allow: ['10.0.0.0/8'], maxConnections: 5 }), app('ssh', 7402)],
  });
  const spec = (body: Record<string, unknown>): GroupSpec => parseGroupFile(YamlFile.parse('g.yaml', stringify({ name: 'g', ...body })));

  test('every app and group field is classified, for the server and the client', () => {
    const before = spec(base());
    const after = spec({
      secret: 'the-second-secret-long-enough',
      serverFingerprint: `sha256:${'ab'.repeat(32)}`,
      apps: [app('web', 7401, { allow: ['10.0.0.0/8', '127.0.0.1'], maxConnections: 1, local: '127.0.0.1:2' }), app('new', 7403)],
    });
    assert.equal(sameGroupSpec(before, after), false);
    assert.deepEqual(describeChanges(specChanges(before, after), 'server'), [
      'secret changed: the session that logged in with the old one ends now',
      'apps.web.allow applies to the next user',
      'apps.web.maxConnections applies to the next user',
      'apps.new opens now',
      'apps.ssh closes now (its connections close)',
    ]);
    assert.deepEqual(describeChanges(specChanges(before, after), 'client'), [
      'secret applies at the next login',
      'serverFingerprint applies when the groupclient restarts',
      'apps.web.local applies to the next user',
      'apps.new served from now on',
      'apps.ssh no longer served',
    ]);
  });

  test('a change of allow or maxConnections alone makes the specs differ (it used to be ignored)', () => {
    const before = spec(base());
    for (const appChange of [{ allow: ['192.0.2.0/24'] }, { maxConnections: 6 }, { allow: undefined }]) {
      const body = base();
      body.apps = [app('web', 7401, { allow: ['10.0.0.0/8'], maxConnections: 5, ...appChange }), app('ssh', 7402)];
      assert.equal(sameGroupSpec(before, spec(body)), false, JSON.stringify(appChange));
    }
    assert.equal(sameGroupSpec(before, spec(base())), true);
  });
});
