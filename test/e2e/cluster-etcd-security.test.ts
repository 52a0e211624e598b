import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Etcd3, Range } from 'etcd3';
import { createSelfSigned } from '../../src/server/index.js';
import { groupYaml, makeConfigDir, randomSecret } from '../helpers/configs.js';
import { etcdAvailable, EtcdCluster } from '../helpers/etcd-cluster.js';
import { CliProcess, COMMONSERVER_BIN, ProcessSet, startCommonServerProcess } from '../helpers/processes.js';

const PREFIX = '/ntp-auth';

/** A node's config on `etcd`, with more `cluster:` keys (auth, TLS). */
function nodeConfig(etcd: EtcdCluster, more: Record<string, unknown>): string {
  return makeConfigDir([], {
    extra: {
      admin: { bind: '127.0.0.1:0' },
      cluster: { etcd: etcd.endpoints, node: 'a', advertise: '127.0.0.1', prefix: PREFIX, leaseTtl: '3s', ...more },
    },
  }).serverFile;
}

/** User `ntp`, its password from the environment. */
const AUTH = { user: 'ntp', password: '${NTP_TEST_ETCD_PASSWORD}' };

/** Starts a node and registers a group through its admin API; returns the node. */
async function nodeRegistersAGroup(configFile: string, env: NodeJS.ProcessEnv = {}): Promise<CliProcess> {
  const started = await startCommonServerProcess(configFile, env);
  const adminUrl = (await started.process.waitForLine(/admin listening on (http:\/\/\S+)/))[1]!;
  const res = await fetch(`${adminUrl}/api/groups`, {
    method: 'POST',
    headers: { 'content-type': 'application/yaml' },
    body: groupYaml({
      name: `guarded-${Math.random().toString(36).slice(2, 8)}`,
      secret: randomSecret(),
      apps: [{ name: 'echo', localPort: 9, remotePort: 0 }],
    }),
  });
  assert.equal(res.status, 201, await res.text());
  return started.process;
}

describe(
  'a cluster node on an etcd with authentication',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 60_000 },
  () => {
    const processes = new ProcessSet();
    let etcd: EtcdCluster;
    const password = randomSecret();

    before(async () => {
      etcd = await EtcdCluster.start(1);
      // What SECURITY.md recommends: a user whose role may read and write the cluster's prefix, nothing else.
      const admin = new Etcd3({ hosts: etcd.endpoints });
      try {
        await admin.user('root').create(randomSecret());
        await admin.role('root').create();
        await admin.user('root').addRole('root');
        await admin.role('ntp').create();
        await admin.role('ntp').grant({ permission: 'Readwrite', range: Range.prefix(`${PREFIX}/`) });
        await admin.user('ntp').create(password);
        await admin.user('ntp').addRole('ntp');
        await admin.auth.authEnable();
      } finally {
        admin.close();
      }
    });

    after(async () => {
      await processes.stopAll();
      await etcd?.stop();
    });

    test('with the right password the node joins, and a group registered through it is stored; the password is never printed', async () => {
      const node = processes.add(await nodeRegistersAGroup(nodeConfig(etcd, AUTH), { NTP_TEST_ETCD_PASSWORD: password }));
      assert.equal(node.output.includes(password), false);
    });

    test('with a wrong password the node says so and keeps retrying, serving nothing', async () => {
      const node = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', nodeConfig(etcd, AUTH)], { NTP_TEST_ETCD_PASSWORD: `${password}-wrong` }));
      await node.waitForLine(/cluster: no etcd lease yet \(.*(authentication failed|invalid user ID or password)/i, { timeoutMs: 15_000 });
      assert.equal(
        node.lines.some((line) => line.includes('commonserver listening')),
        false,
      );
      assert.equal(node.output.includes(password), false);
      await node.stop();
    });
  },
);

describe(
  'a cluster node on an etcd that speaks TLS',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 60_000 },
  () => {
    const processes = new ProcessSet();
    let etcd: EtcdCluster;
    const dir = mkdtempSync(join(tmpdir(), 'ntp-etcd-tls-'));
    const tls = { certFile: join(dir, 'etcd.crt'), keyFile: join(dir, 'etcd.key') };

    before(async () => {
      createSelfSigned(tls.certFile, tls.keyFile);
      etcd = await EtcdCluster.start(1, { tls });
    });

    after(async () => {
      await processes.stopAll();
      await etcd?.stop();
    });

    test("trusting etcd's certificate (cluster.tls.ca), the node joins and registers a group", async () => {
      processes.add(await nodeRegistersAGroup(nodeConfig(etcd, { tls: { ca: tls.certFile } })));
    });

    test('without the CA the node does not trust etcd: it says why and serves nothing', async () => {
      const node = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', nodeConfig(etcd, {})]));
      await node.waitForLine(/cluster: no etcd lease yet \(.*self-signed certificate.*; this node does not trust etcd's certificate: set cluster\.tls\.ca/, {
        timeoutMs: 15_000,
      });
      assert.equal(
        node.lines.some((line) => line.includes('commonserver listening')),
        false,
      );
      await node.stop();
    });
  },
);

describe(
  'a cluster node on an etcd that checks client certificates',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 60_000 },
  () => {
    const processes = new ProcessSet();
    let etcd: EtcdCluster;
    const dir = mkdtempSync(join(tmpdir(), 'ntp-etcd-mtls-'));
    const server = { certFile: join(dir, 'etcd.crt'), keyFile: join(dir, 'etcd.key') };
    // A self-signed certificate is its own CA: etcd trusts exactly this client.
    const client = { certFile: join(dir, 'node.crt'), keyFile: join(dir, 'node.key') };
    const stranger = { certFile: join(dir, 'stranger.crt'), keyFile: join(dir, 'stranger.key') };

    before(async () => {
      for (const pair of [server, client, stranger]) createSelfSigned(pair.certFile, pair.keyFile);
      etcd = await EtcdCluster.start(1, { tls: { ...server, clients: { caFile: client.certFile, ...client } } });
    });

    after(async () => {
      await processes.stopAll();
      await etcd?.stop();
    });

    test('with a client certificate etcd trusts (cluster.tls.cert and key), the node joins and registers a group', async () => {
      processes.add(await nodeRegistersAGroup(nodeConfig(etcd, { tls: { ca: server.certFile, cert: client.certFile, key: client.keyFile } })));
    });

    for (const [what, tls, says] of [
      [
        'without a client certificate',
        { ca: server.certFile },
        /bad certificate.*; etcd asks for a client certificate: set cluster\.tls\.cert and cluster\.tls\.key/,
      ],
      [
        'with a certificate etcd does not trust',
        { ca: server.certFile, cert: stranger.certFile, key: stranger.keyFile },
        /bad certificate.*; etcd refused this node's client certificate/,
      ],
    ] as const) {
      test(`${what}, etcd refuses the node: it says so, keeps retrying and serves nothing`, async () => {
        const node = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', nodeConfig(etcd, { tls })]));
        await node.waitForLine(new RegExp(`cluster: no etcd lease yet \\(.*${says.source}`), { timeoutMs: 15_000 });
        assert.equal(
          node.lines.some((line) => line.includes('commonserver listening')),
          false,
        );
        await node.stop();
      });
    }
  },
);
