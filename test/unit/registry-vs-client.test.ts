import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { declaredApps } from '../../src/client/index.js';
import { loadGroupFile } from '../../src/config/index.js';
import { compareWithClient } from '../../src/server/session/registry-vs-client.js';
import { makeConfigDir, randomSecret, type TestAppEntry } from '../helpers/configs.js';
import { CONFIG_FIXTURES } from '../helpers/paths.js';

const fixtures = join(CONFIG_FIXTURES, 'valid', 'groups');

/** One group loaded twice, as the server's registry entry and as the client's own file say it. */
function loadBothSides(registry: TestAppEntry[], client: TestAppEntry[]) {
  const secret = randomSecret();
  const serverSide = makeConfigDir([{ name: 'office', secret, apps: registry }], { tls: false });
  const clientSide = makeConfigDir([{ name: 'office', secret, apps: client }], { tls: false });
  return { registered: loadGroupFile(serverSide.groupFile('office')).apps, declared: declaredApps(loadGroupFile(clientSide.groupFile('office'))) };
}

describe('compareWithClient: the client’s group file against the server’s registry', () => {
  test('the same file on both sides gives no warning (proxyProtocol, remotePort 0 and UDP included)', () => {
    for (const [file, env] of [
      ['office-a.yaml', { NTP_FIXTURE_OFFICE_A_SECRET: 'office-a-secret-from-the-environment' }],
      ['office-udp.yaml', {}],
    ] as const) {
      const spec = loadGroupFile(join(fixtures, file), env);
      assert.deepEqual(compareWithClient(spec.apps, declaredApps(spec)), [], file);
    }
  });

  test('each difference is named with its app, in the registry’s order, then the client’s extra apps', () => {
    const { registered, declared } = loadBothSides(
      [
        { name: 'ssh', localPort: 22, remotePort: 6022 },
        { name: 'auto', localPort: 9000, remotePort: 7000 },
        { name: 'dns', localPort: 53, remotePort: 5353, type: 'udp' },
        { name: 'web', localPort: 8080, remotePort: 6080, extra: { proxyProtocol: 'v2' } },
        { name: 'shared', localPort: 8081, pool: 'web-pool' },
        { name: 'only-server', localPort: 8082, remotePort: 6081 },
      ],
      [
        { name: 'ssh', localPort: 22, remotePort: 6023 },
        { name: 'auto', localPort: 9000, remotePort: 0 },
        { name: 'dns', localPort: 53, remotePort: 5353 },
        { name: 'web', localPort: 8080, remotePort: 6080 },
        // A pooled app's port is the pool's: a client that leaves it to the server agrees.
        { name: 'shared', localPort: 8081, remotePort: 0, pool: 'web-pool' },
        { name: 'only-client', localPort: 8083, remotePort: 6083 },
      ],
    );
    const warnings = compareWithClient(registered, declared);
    const expected = [
      /^app "ssh": .*remotePort 6022, .* says 6023; the server's applies$/,
      /^app "auto": .*remotePort 7000, .* says 0; the server's applies$/,
      /^app "dns": .*type udp, .* says tcp: its users will be refused until both agree$/,
      /^app "web": .*proxyProtocol v2, .* says none; the client's applies/,
      /^app "only-server" is registered on the server but missing from the client's group file/,
      /^app "only-client" is in the client's group file but not in the server's registry/,
    ];
    assert.equal(warnings.length, expected.length, warnings.join('\n'));
    expected.forEach((pattern, index) => assert.match(warnings[index]!, pattern));
  });

  test('a remotePort and a proxyProtocol difference on one app are both reported', () => {
    const { registered, declared } = loadBothSides(
      [{ name: 'web', localPort: 8080, remotePort: 6080 }],
      [{ name: 'web', localPort: 8080, remotePort: 6081, extra: { proxyProtocol: 'v1' } }],
    );
    const warnings = compareWithClient(registered, declared);
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0]!, /^app "web": .*remotePort 6080, .* says 6081/);
    assert.match(warnings[1]!, /^app "web": .*proxyProtocol none, .* says v1/);
  });
});
