import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { startClusterNodes, type ClusterNodeProcess } from '../helpers/cluster-nodes.js';
import { groupYaml, makeConfigDir, randomSecret } from '../helpers/configs.js';
import { etcdAvailable, EtcdCluster } from '../helpers/etcd-cluster.js';
import { CliProcess, GROUPCLIENT_BIN, ProcessSet, waitForGroupActive } from '../helpers/processes.js';

const LEASE_TTL = '6s';
const GROUP = 'roaming';

/** host:port of each node, comma-separated, for --server. */
function serverList(nodes: ClusterNodeProcess[]): string {
  return nodes.map((node) => `${node.host}:${node.port}`).join(',');
}

/** How many Hellos of the group `node` has seen (its recent events): a client that sent nothing leaves none. */
async function hellosSeen(node: ClusterNodeProcess): Promise<number> {
  const answer = await node.api('/api/events/recent');
  assert.equal(answer.status, 200);
  return (answer.body.events as { type: string; group?: string }[]).filter((event) => event.type === 'client-connected' && event.group === GROUP).length;
}

describe(
  'a groupclient given the nodes of a cluster, some of which refuse it',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 180_000 },
  () => {
    const processes = new ProcessSet();
    let etcd: EtcdCluster;
    let echo: TestApp;
    /** a and b: healthy; c: reads another value for the group's ${VAR} secret; d: on another prefix. */
    let a: ClusterNodeProcess, b: ClusterNodeProcess, c: ClusterNodeProcess, d: ClusterNodeProcess;
    const secret = randomSecret();
    let clientDir: string;

    /** A client of the group with `extraArgs` (servers, fingerprints), from a group file with `fileSecret`. */
    function startClient(args: string[], fileSecret = secret, fileServers?: { address: string; fingerprint: string }[]): CliProcess {
      // A directory per client: the file must be named after its group.
      const file = join(mkdtempSync(join(clientDir, 'client-')), `${GROUP}.yaml`);
      writeFileSync(
        file,
        stringify({
          name: GROUP,
          secret: fileSecret,
          apps: [{ name: 'echo', local: `127.0.0.1:${echo.port}`, remotePort: 0 }],
          ...(fileServers ? { servers: fileServers } : {}),
        }),
        { mode: 0o600 },
      );
      // Not through startGroupClientProcess: it always names one server, and the file's servers must count.
      return processes.add(new CliProcess(GROUPCLIENT_BIN, ['--config', file, '--client-id', 'roaming-agent', ...args]));
    }

    before(async () => {
      etcd = await EtcdCluster.start(1);
      echo = await startEchoApp();
      clientDir = makeConfigDir([]).dir;
      const prefix = `/ntp-client-${process.pid}`;
      const common = { leaseTtl: LEASE_TTL, prefix, ownCertificates: true };
      [a, b] = await startClusterNodes(etcd, processes, { ...common, count: 2, env: { ROAMING_SECRET: secret } });
      [c] = await startClusterNodes(etcd, processes, { ...common, count: 1, first: 2, env: { ROAMING_SECRET: randomSecret() } });
      [d] = await startClusterNodes(etcd, processes, { ...common, count: 1, first: 3, prefix: `${prefix}-elsewhere`, env: { ROAMING_SECRET: secret } });
      assert.equal(new Set([a, b, c, d].map((node) => node!.fingerprint)).size, 4, 'each node has its own certificate');
      // The secret as a reference: each node reads it from its own environment.
      const created = await a!.api('/api/groups', {
        method: 'POST',
        body: groupYaml({ name: GROUP, secret: '${ROAMING_SECRET}', apps: [{ name: 'echo', localPort: echo.port, remotePort: await unusedPort() }] }),
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      for (const node of [b, c]) await node!.process.waitForLine(new RegExp(`group ${GROUP} registered`), { timeoutMs: 5000 });
    });

    after(async () => {
      await processes.stopAll();
      for (const node of [a, b, c, d]) for (const relay of node?.etcdRelays ?? []) await relay.close();
      await echo?.close();
      await etcd?.stop();
    });

    test('UNKNOWN_GROUP from a node on another prefix and BAD_SECRET from a node with another secret: the client tries the next node', async () => {
      const order = [d, c, a, b];
      const client = startClient(['--server', serverList(order), '--server-fingerprint', order.map((node) => node.fingerprint!).join(',')]);
      await waitForGroupActive(client, GROUP, { timeoutMs: 15_000 });
      assert.match(client.output, new RegExp(`login rejected: UNKNOWN_GROUP: .* \\(by ${d.host}:${d.port}; trying the next server\\)`));
      assert.match(client.output, new RegExp(`login rejected: BAD_SECRET: .* \\(by ${c.host}:${c.port}; trying the next server\\)`));
      assert.match(client.output, new RegExp(`group ${GROUP} active on ${a.host}:${a.port}`));
      await client.stop();
    });

    test('every node refuses with the same reason (a wrong secret): the client stops, naming each node and its answer', async () => {
      const client = startClient(['--server', serverList([a, b]), '--server-fingerprint', [a, b].map((node) => node.fingerprint!).join(',')], randomSecret());
      const { code } = await client.exited;
      assert.equal(code, 3, client.output);
      assert.match(
        client.output,
        new RegExp(
          `every server refused \\(BAD_SECRET\\): ${a.host}:${a.port}: wrong secret for group "${GROUP}"; ${b.host}:${b.port}: wrong secret for group "${GROUP}"`,
        ),
      );
    });

    test('a wrong fingerprint pinned for one node: that node is skipped, named, and sent nothing; the client logs in on the next', async () => {
      const [seenByA, seenByB] = [await hellosSeen(a), await hellosSeen(b)];
      // c's fingerprint pinned for a: a's certificate does not match it.
      const client = startClient(['--server', serverList([a, b]), '--server-fingerprint', `${c.fingerprint!},${b.fingerprint!}`]);
      await waitForGroupActive(client, GROUP, { timeoutMs: 15_000 });
      assert.match(
        client.output,
        new RegExp(
          `${a.host}:${a.port}: the server's certificate fingerprint is ${a.fingerprint!}, but ${c.fingerprint!} is pinned; refusing to talk .*; trying ${b.host}:${b.port} next`,
        ),
      );
      assert.match(client.output, new RegExp(`group ${GROUP} active on ${b.host}:${b.port}`));
      assert.equal(await hellosSeen(a), seenByA, 'the node that failed verification got a Hello');
      assert.equal(await hellosSeen(b), seenByB + 1);
      await client.stop();
    });

    test('no node matches its pinned fingerprint: the client stops naming each, having sent a Hello to none', async () => {
      const [seenByA, seenByB] = [await hellosSeen(a), await hellosSeen(b)];
      const client = startClient(['--server', serverList([a, b]), '--server-fingerprint', `${c.fingerprint!},${d.fingerprint!}`]);
      const { code } = await client.exited;
      assert.equal(code, 3, client.output);
      assert.match(
        client.output,
        new RegExp(
          `every server refused \\(TLS_FINGERPRINT_MISMATCH\\): ${a.host}:${a.port}: the server's certificate .*; ${b.host}:${b.port}: the server's certificate`,
        ),
      );
      assert.deepEqual([await hellosSeen(a), await hellosSeen(b)], [seenByA, seenByB]);
    });

    test('servers: in the group file, each with its own fingerprint: the client fails over from a stopped node to the next', async () => {
      const client = startClient([], secret, [
        { address: `${a.host}:${a.port}`, fingerprint: a.fingerprint! },
        { address: `${b.host}:${b.port}`, fingerprint: b.fingerprint! },
      ]);
      await waitForGroupActive(client, GROUP, { timeoutMs: 15_000 });
      assert.match(client.output, new RegExp(`group ${GROUP} active on ${a.host}:${a.port}`));
      const fromLine = client.lines.length;
      // A clean stop revokes a's lease: the group is free at once for b.
      await a.process.stop();
      await client.waitForLine(new RegExp(`group ${GROUP} active on ${b.host}:${b.port}`), { fromLine, timeoutMs: 30_000 });
      await client.stop();
    });
  },
);
