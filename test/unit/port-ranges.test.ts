import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  appPublicRefusal,
  describeChanges,
  fileAppIndex,
  loadGroupDirectory,
  loadServerConfig,
  parseGroupFile,
  publicPolicyOf,
  specChanges,
  YamlFile,
  type GroupSpec,
} from '../../src/config/index.js';
import { groupRefusal } from '../../src/server/index.js';
import { configError } from '../helpers/config-errors.js';

const SECRET = 's'.repeat(24);

function group(apps: string, name = 'g'): GroupSpec {
  return parseGroupFile(YamlFile.parse(`${name}.yaml`, `name: ${name}\nsecret: ${SECRET}\napps:\n${apps}`), {}, { baseDir: '.' });
}

/** The field and line of the error a group file with these apps raises, and its message. */
function refused(apps: string): { field: string | undefined; line: number | undefined; message: string } {
  const error = configError(() => group(apps));
  return { field: error.field, line: error.line, message: error.message };
}

describe('port ranges in a group file', () => {
  test('a range expands to one app per port, NAME-PORT, each with its own local port; later apps keep their own entries', () => {
    const spec = group(
      [
        '  - { name: ssh, local: 127.0.0.1:22, remotePort: 6022 }',
        '  - { name: game, local: 127.0.0.1:7000-7010, remotePort: 6000-6010 }',
        '  - { name: dns, type: udp, local: 127.0.0.1:5300-5301, remotePort: "5300 - 5301" }',
        '  - { name: web, local: 127.0.0.1:80, remotePort: 6080 }',
      ].join('\n'),
    );
    assert.equal(spec.apps.length, 1 + 11 + 2 + 1);
    assert.deepEqual(
      spec.apps.slice(1, 12).map((app) => [app.name, app.remotePort, app.local.port]),
      Array.from({ length: 11 }, (_, i) => [`game-${6000 + i}`, 6000 + i, 7000 + i]),
    );
    assert.deepEqual(
      spec.apps.slice(12, 14).map((app) => [app.name, app.type, app.remotePort, app.local.port]),
      [
        ['dns-5300', 'udp', 5300, 5300],
        ['dns-5301', 'udp', 5301, 5301],
      ],
    );
    assert.deepEqual(spec.ranges, [
      { index: 1, name: 'game', from: 6000, to: 6010 },
      { index: 2, name: 'dns', from: 5300, to: 5301 },
    ]);
    // Where each spec app is written: the range's apps at its entry, the apps after it at theirs.
    assert.deepEqual(
      spec.apps.map((_, i) => fileAppIndex(spec.ranges, i)),
      [0, ...Array<number>(11).fill(1), 2, 2, 3],
    );
  });

  test('a file without ranges has no ranges field (its spec is as before)', () => {
    assert.equal('ranges' in group('  - { name: ssh, local: 127.0.0.1:22, remotePort: 6022 }'), false);
  });

  const CASES: [what: string, apps: string, field: string, line: number, says: RegExp][] = [
    ['unequal lengths', '  - { name: a, local: 127.0.0.1:7000-7009, remotePort: 6000-6010 }', 'apps[0].local', 4, /10 local ports for 11 remote ports/],
    ['a remote range with one local port', '  - { name: a, local: 127.0.0.1:7000, remotePort: 6000-6002 }', 'apps[0].local', 4, /127\.0\.0\.1:7000-7002/],
    ['a local range with one remote port', '  - { name: a, local: 127.0.0.1:7000-7002, remotePort: 6000 }', 'apps[0].local', 4, /needs a remotePort range/],
    [
      'a reversed range',
      '  - { name: a, local: 127.0.0.1:7000-7002, remotePort: 6002-6000 }',
      'apps[0].remotePort',
      4,
      /reversed range 6002-6000: write 6000-6002/,
    ],
    ['a reversed local range', '  - { name: a, local: 127.0.0.1:7002-7000, remotePort: 6000-6002 }', 'apps[0].local', 4, /reversed range/],
    ['port 0 in a range', '  - { name: a, local: 127.0.0.1:7000-7002, remotePort: 0-2 }', 'apps[0].remotePort', 4, /from 1 to 65535/],
    ['a range past 65535', '  - { name: a, local: 127.0.0.1:7000-7002, remotePort: 65534-65536 }', 'apps[0].remotePort', 4, /from 1 to 65535/],
    [
      'a range of an http app',
      '  - { name: a, type: http, domains: [a.example.com], local: 127.0.0.1:7000-7002, remotePort: 6000-6002 }',
      'apps[0].remotePort',
      4,
      /for tcp and udp apps/,
    ],
    ['a range in a pool', '  - { name: a, pool: p, local: 127.0.0.1:7000-7002, remotePort: 6000-6002 }', 'apps[0].remotePort', 4, /cannot join a pool/],
    [
      'a range past the hard limit',
      '  - { name: a, local: 127.0.0.1:1-5000, remotePort: 10001-15000 }',
      'apps[0].remotePort',
      4,
      /a range of 5000 ports; at most 4096/,
    ],
    [
      'an overlap with another app, at the later entry',
      '  - { name: a, local: 127.0.0.1:7000-7010, remotePort: 6000-6010 }\n  - { name: b, local: 127.0.0.1:22, remotePort: 6005 }',
      'apps[1].remotePort',
      5,
      /port 6005 is already used by app "a-6005"/,
    ],
    [
      'two ranges that overlap',
      '  - { name: a, local: 127.0.0.1:7000-7010, remotePort: 6000-6010 }\n  - { name: b, local: 127.0.0.1:8000-8010, remotePort: 6010-6020 }',
      'apps[1].remotePort',
      5,
      /port 6010 is already used by app "a-6010"/,
    ],
    [
      'an expanded name that another app has',
      '  - { name: a-6000, local: 127.0.0.1:22, remotePort: 5000 }\n  - { name: a, local: 127.0.0.1:7000-7001, remotePort: 6000-6001 }',
      'apps[1].name',
      5,
      /duplicate app name "a-6000"/,
    ],
    ['a malformed range', '  - { name: a, local: 127.0.0.1:7000-7002, remotePort: 6000-x }', 'apps[0].remotePort', 4, /or a range such as 6000-6010/],
  ];
  for (const [what, apps, field, line, says] of CASES) {
    test(`refused: ${what} (named by field and line)`, () => {
      const error = refused(apps);
      assert.equal(error.field, field, error.message);
      assert.equal(error.line, line, error.message);
      assert.match(error.message, says);
    });
  }

  test('a single local target keeps its own wording for a bad port', () => {
    assert.match(refused('  - { name: a, local: 127.0.0.1:99999, remotePort: 6000 }').message, /apps\[0\]\.local: expected a port number \(1-65535\)/);
  });

  test('a range that grows or shrinks on reload: only the ports it gained or lost change', () => {
    const before = group('  - { name: game, local: 127.0.0.1:7000-7010, remotePort: 6000-6010 }');
    const grown = group('  - { name: game, local: 127.0.0.1:7000-7012, remotePort: 6000-6012 }');
    assert.deepEqual(describeChanges(specChanges(before, grown), 'server'), ['apps.game-6011 opens now', 'apps.game-6012 opens now']);
    const shrunk = group('  - { name: game, local: 127.0.0.1:7001-7010, remotePort: 6001-6010 }');
    assert.deepEqual(describeChanges(specChanges(before, shrunk), 'server'), ['apps.game-6000 closes now (its connections close)']);
  });
});

describe('port ranges on the server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-ranges-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('limits.maxPortRange (default 256) refuses a larger range, naming the file and field; maxAppsPerGroup counts every port', () => {
    writeFileSync(join(dir, 'commonserver.yaml'), 'limits: { maxPortRange: 10 }\nmaxAppsPerGroup: 20\n');
    const config = loadServerConfig(join(dir, 'commonserver.yaml'), {});
    assert.equal(config.limits.maxPortRange, 10);
    const eleven = {
      ...group('  - { name: ssh, local: 127.0.0.1:22, remotePort: 22 }\n  - { name: game, local: 127.0.0.1:7000-7010, remotePort: 6000-6010 }'),
      file: '/etc/g.yaml',
    };
    assert.equal(
      groupRefusal(config.policy, eleven, 0, false),
      '/etc/g.yaml: apps[1].remotePort: app "game": a range of 11 ports (6000-6010); this server allows at most 10 (limits.maxPortRange)',
    );
    assert.equal(groupRefusal(config.policy, group('  - { name: game, local: 127.0.0.1:7000-7009, remotePort: 6000-6009 }'), 0, false), undefined);
    assert.match(groupRefusal(config.policy, group('  - { name: game, local: 127.0.0.1:7000-7020, remotePort: 6000-6020 }'), 0, false)!, /21 apps.*at most 20/);
    writeFileSync(join(dir, 'commonserver.yaml'), 'bind: 0.0.0.0:7000\n');
    assert.equal(loadServerConfig(join(dir, 'commonserver.yaml'), {}).limits.maxPortRange, 256);
    writeFileSync(join(dir, 'commonserver.yaml'), 'limits: { maxPortRange: 5000 }\n');
    const tooBig = configError(() => loadServerConfig(join(dir, 'commonserver.yaml'), {}));
    assert.equal(tooBig.field, 'limits.maxPortRange');
  });

  test("allowPorts and claims across groups see each port of a range; the error names the file's entry", () => {
    const registry = join(dir, 'groups');
    mkdirSync(registry);
    writeFileSync(
      join(registry, 'alpha.yaml'),
      `name: alpha\nsecret: ${SECRET}\napps:\n  - { name: game, local: 127.0.0.1:7000-7010, remotePort: 6000-6010 }\n`,
    );
    writeFileSync(
      join(registry, 'beta.yaml'),
      `name: beta\nsecret: ${SECRET}\napps:\n  - { name: ssh, local: 127.0.0.1:22, remotePort: 5022 }\n  - { name: more, local: 127.0.0.1:8000-8001, remotePort: 5023-5024 }\n  - { name: web, local: 127.0.0.1:80, remotePort: 6010 }\n`,
    );
    const { groups: loaded, errors } = loadGroupDirectory(registry, {});
    assert.deepEqual(
      loaded.map((spec) => spec.name),
      ['alpha'],
    );
    assert.equal(errors.length, 1);
    // beta's web is its fourth app once more-5023 and more-5024 are expanded, but the third entry of its file.
    assert.equal(errors[0]!.field, 'apps[2].remotePort');
    assert.equal(errors[0]!.line, 6);
    assert.match(errors[0]!.message, /port 6010 is already claimed by alpha\/game-6010/);
    // allowPorts judges each port of the range: the ones outside it fail alone.
    const policy = publicPolicyOf({ bind: { host: '0.0.0.0', port: 7000 }, policy: { allowPorts: [{ from: 6000, to: 6005 }] } });
    const alpha = loaded[0]!;
    assert.deepEqual(
      alpha.apps.map((app, index) => appPublicRefusal(policy, alpha.name, app, index)?.problem).filter((problem) => problem !== undefined),
      [6006, 6007, 6008, 6009, 6010].map((port) => `alpha/game-${port}: port ${port} is outside allowPorts (6000-6005)`),
    );
  });
});
