import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { parseGroupFile, specChanges, YamlFile, type GroupSpec } from '../../src/config/index.js';
import { configError } from '../helpers/config-errors.js';

const SECRET = 'a-group-secret-long-enough';

function parse(body: Record<string, unknown>): GroupSpec {
  return parseGroupFile(YamlFile.parse('office-a.yaml', stringify({ name: 'office-a', secret: SECRET, ...body })));
}

const redis = { name: 'redis', local: '127.0.0.1:6379', visibility: 'private', allowVisitors: ['office-b'] };

test('a private app: no public port (remotePort 0), its visitor rules kept, its secret masked', () => {
  const spec = parse({
    apps: [
      { ...redis, visitorSecret: 'a-visitor-secret-16+' },
      { ...redis, name: 'dns', type: 'udp' },
    ],
  });
  const [tcp, udp] = spec.apps;
  assert.equal(tcp!.remotePort, 0);
  assert.equal(tcp!.visibility, 'private');
  assert.deepEqual(tcp!.allowVisitors, ['office-b']);
  assert.equal(tcp!.visitorSecret!.reveal(), 'a-visitor-secret-16+');
  assert.doesNotMatch(JSON.stringify(spec), /a-visitor-secret/);
  assert.equal(udp!.type, 'udp');
  assert.equal(udp!.visibility, 'private');
  // Public by default: nothing of the visitor rules.
  const plain = parse({ apps: [{ name: 'web', local: '127.0.0.1:80', remotePort: 8080 }] }).apps[0]!;
  assert.equal(plain.visibility, undefined);
});

test('a private app with a remotePort, a pool or a vhost type is refused at that field', () => {
  assert.match(configError(() => parse({ apps: [{ ...redis, remotePort: 6379 }] })).message, /remotePort.*a private app opens no public port/s);
  assert.match(configError(() => parse({ apps: [{ ...redis, pool: 'p' }] })).message, /a private app opens no public port, so it joins no pool/);
  assert.match(configError(() => parse({ apps: [{ ...redis, type: 'http', domains: ['a.example'] }] })).message, /only tcp and udp apps can be private/);
});

test('allowVisitors and visitorSecret on a public app are refused (add visibility: private)', () => {
  const error = configError(() => parse({ apps: [{ name: 'web', local: '127.0.0.1:80', remotePort: 8080, allowVisitors: ['office-b'] }] }));
  assert.match(error.message, /allowVisitors applies to private apps: add visibility: private/);
});

test('visitors: defaults to tcp; names and binds distinct; a changed visitorSecret is a change', () => {
  const app = { name: 'unused', local: '127.0.0.1:9', remotePort: 0 };
  const visitor = { name: 'redis', group: 'office-b', app: 'redis', bind: '127.0.0.1:16379' };
  const spec = parse({ apps: [app], visitors: [visitor, { ...visitor, name: 'dns', bind: '127.0.0.1:16379', type: 'udp' }] });
  assert.deepEqual(
    spec.visitors!.map((one) => [one.name, one.type, one.bind.port]),
    [
      ['redis', 'tcp', 16379],
      ['dns', 'udp', 16379],
    ],
  );
  assert.match(configError(() => parse({ apps: [app], visitors: [visitor, visitor] })).message, /duplicate visitor name "redis"/);
  assert.match(configError(() => parse({ apps: [app], visitors: [visitor, { ...visitor, name: 'other' }] })).message, /already binds tcp 127.0.0.1:16379/);
  const before = parse({ apps: [{ ...redis, visitorSecret: 'a-visitor-secret-16+' }] });
  const after = parse({ apps: [{ ...redis, visitorSecret: 'another-visitor-secret' }] });
  assert.deepEqual(
    specChanges(before, after).map((change) => change.field),
    ['apps.redis.visitorSecret'],
  );
});
