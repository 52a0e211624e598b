import { RECONNECT_DEFAULTS } from '../../src/client/group-client.js';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { accepts, echoThrough, startClusterNodes, type ClusterNodeProcess } from '../helpers/cluster-nodes.js';
import { groupYaml, makeConfigDir, randomSecret, type TestConfigDir, type TestGroup } from '../helpers/configs.js';
import { etcdAvailable, EtcdCluster } from '../helpers/etcd-cluster.js';
import { eventually } from '../helpers/eventually.js';
import { CliProcess, COMMONSERVER_BIN, ProcessSet, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

/** Short, so that a failover fits the suite's budget; the safe bound is two thirds of it. */
const LEASE_TTL_MS = 3000;
/**
 * The client's reconnect delay at its cap: its backoff lasts across sessions that die young (a
 * failover here follows the previous test's by seconds), so after a few failovers in a row it
 * may have grown to the cap. What the tests bound is the lease TTL plus that backoff.
 */
const BACKOFF_BOUND_MS = RECONNECT_DEFAULTS.maxDelayMs;
/** Slack for a machine shared with other builds. */
const LOAD_MARGIN_MS = 3000;

/**
 * Probes every node's public port for the group, round after round, until stopped: records
 * which nodes accepted in each round, and every round where more than one did.
 */
function probeNodes(nodes: ClusterNodeProcess[], port: number): { stop(): Promise<{ rounds: number; doubles: string[] }>; acceptedBy(): string[] } {
  let running = true;
  let rounds = 0;
  let last: string[] = [];
  const doubles: string[] = [];
  const loop = (async () => {
    while (running) {
      const answers = await Promise.all(nodes.map((node) => accepts(node.host, port)));
      last = nodes.filter((_, i) => answers[i]).map((node) => node.name);
      if (last.length > 1) doubles.push(`${new Date().toISOString()}: ${last.join('+')}`);
      rounds += 1;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    acceptedBy: () => last,
    async stop() {
      running = false;
      await loop;
      return { rounds, doubles };
    },
  };
}

/** The node whose public port answers an echo (the one serving the group), within `timeoutMs`. */
async function servingNode(nodes: ClusterNodeProcess[], port: number, timeoutMs: number): Promise<ClusterNodeProcess> {
  return eventually(
    async () => {
      for (const node of nodes) {
        if (!node.process.running) continue;
        const payload = `hello via ${node.name} ${Date.now()}`;
        const answer = await echoThrough(node.host, port, payload).catch(() => '');
        if (answer === payload) return node;
      }
      return false;
    },
    { message: `a node to serve port ${port}`, timeout: timeoutMs, interval: 25 },
  );
}

describe(
  'a cluster of three commonservers on a three-member etcd',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 180_000 },
  () => {
    const processes = new ProcessSet();
    let etcd: EtcdCluster;
    let nodes: ClusterNodeProcess[];
    let echo: TestApp;
    let config: TestConfigDir;
    let group: TestGroup;
    let publicPort: number;
    let client: CliProcess;

    before(async () => {
      etcd = await EtcdCluster.start(3);
      nodes = await startClusterNodes(etcd, processes, { count: 3, leaseTtl: `${LEASE_TTL_MS / 1000}s` });
      echo = await startEchoApp();
      publicPort = await unusedPort();
      group = { name: 'roaming', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort: publicPort }] };
      config = makeConfigDir([group]);
    });

    after(async () => {
      await processes.stopAll();
      for (const node of nodes ?? []) for (const relay of node.etcdRelays) await relay.close();
      await echo?.close();
      await etcd?.stop();
    });

    test('a group registered through node a is live on node c within 1 s', async () => {
      const [a, , c] = nodes;
      const fromLine = c!.process.lines.length;
      const started = Date.now();
      const created = await a!.api('/api/groups', { method: 'POST', body: groupYaml(group) });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      await c!.process.waitForLine(/group roaming registered/, { fromLine, timeoutMs: 5000 });
      const elapsed = Date.now() - started;
      console.log(`# registered on a, live on c after ${elapsed} ms`);
      assert.ok(elapsed < 1000, `took ${elapsed} ms`);
      const onC = await c!.api('/api/groups/roaming');
      assert.equal(onC.status, 200);
      assert.equal(JSON.stringify(onC.body).includes(group.secret), false, 'the secret is never in an answer');
      // The same name again, through another node: etcd's transaction refuses it.
      const again = await c!.api('/api/groups', { method: 'POST', body: groupYaml(group) });
      assert.equal(again.status, 409);
      assert.equal(again.body.error.code, 'GROUP_EXISTS');
    });

    test('commonserver cluster import DIR stores a groups directory in etcd; a bad file, or a group on a port a group in etcd holds, is named and skipped', async () => {
      const imported: TestGroup = { name: 'imported', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort: 0 }] };
      const dir = makeConfigDir([imported]);
      writeFileSync(join(dir.groupsDir, 'broken.yaml'), 'name: broken\napps: []\n');
      // The public port of "roaming", registered in etcd by the first test: refused, naming it.
      dir.writeGroup({ name: 'clashing', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort: publicPort }] });
      const fromLine = nodes[2]!.process.lines.length;
      // A relative DIR, as an operator types it (the CLI runs in this process's directory).
      const run = processes.add(
        new CliProcess(COMMONSERVER_BIN, ['cluster', 'import', relative(process.cwd(), dir.groupsDir), '--config', nodes[0]!.configFile]),
      );
      const { code } = await run.exited;
      assert.equal(code, 2, run.output);
      assert.match(run.output, /not imported: .*broken\.yaml:\d+: /);
      assert.match(
        run.output,
        new RegExp(`not imported: .*clashing\\.yaml: apps\\[0\\]\\.remotePort: port ${publicPort} is already claimed by roaming/echo \\(in etcd\\)`),
      );
      assert.match(run.output, /imported 1 group\(s\)/);
      await nodes[2]!.process.waitForLine(/group imported registered/, { fromLine, timeoutMs: 5000 });
      // A second import keeps what etcd holds.
      const again = processes.add(new CliProcess(COMMONSERVER_BIN, ['cluster', 'import', dir.groupsDir, '--config', nodes[1]!.configFile]));
      await again.exited;
      assert.match(again.output, /imported 0 group\(s\).*already there, kept: imported/);
      assert.equal(run.output.includes(imported.secret) || again.output.includes(imported.secret), false);
    });

    test('the client logs in on the first live node; every node shows where the group is active', async () => {
      const servers = nodes.map((node) => `${node.host}:${node.port}`).join(',');
      const fingerprints = nodes.map((node) => node.fingerprint!).join(',');
      client = processes.add(
        startGroupClientProcess({
          configFile: config.groupFile('roaming'),
          serverPort: 0,
          link: 'file',
          clientId: 'roaming-agent',
          extraArgs: ['--server', servers, '--server-fingerprint', fingerprints],
        }),
      );
      await waitForGroupActive(client, 'roaming', { timeoutMs: 10_000 });
      const serving = await servingNode(nodes, publicPort, 5000);
      assert.equal(serving.name, 'a');
      for (const node of nodes) {
        const view = await node.api('/api/groups/roaming');
        assert.equal(view.body.group.state, 'in-use');
        assert.equal(view.body.group.node.name, 'a', `node ${node.name} says ${JSON.stringify(view.body.group.node)}`);
        assert.equal(view.body.group.node.advertise, nodes[0]!.host);
        const cluster = await node.api('/api/cluster');
        assert.deepEqual(
          cluster.body.nodes.map((n: { name: string }) => n.name),
          ['a', 'b', 'c'],
        );
      }
      // A node kicks only its own sessions, and says which node serves the group.
      const kick = await nodes[1]!.api('/api/groups/roaming/kick', { method: 'POST' });
      assert.equal(kick.status, 409, JSON.stringify(kick.body));
      assert.equal(kick.body.error.code, 'GROUP_ACTIVE_ELSEWHERE');
      const metrics = await nodes[1]!.api('/metrics');
      assert.match(metrics.body as string, /ntp_cluster_groups_active\{serving_node="a",node="b"\} 1/);
    });

    test('kill -9 of the serving node: the group is active on another node within lease TTL + backoff, never on two at once', async () => {
      const probe = probeNodes(nodes, publicPort);
      const fromLine = client.lines.length;
      const killedAt = Date.now();
      await nodes[0]!.process.killHard();
      const next = await servingNode(nodes, publicPort, LEASE_TTL_MS + BACKOFF_BOUND_MS + LOAD_MARGIN_MS + 5000);
      const back = Date.now() - killedAt;
      const { rounds, doubles } = await probe.stop();
      console.log(
        `# kill -9 of node a: users served again through node ${next.name} after ${back} ms (lease TTL ${LEASE_TTL_MS} ms; ${rounds} probe rounds, ${doubles.length} with two nodes accepting)`,
      );
      assert.notEqual(next.name, 'a');
      assert.deepEqual(doubles, [], 'two nodes accepted users for one group at once');
      assert.ok(back <= LEASE_TTL_MS + BACKOFF_BOUND_MS + LOAD_MARGIN_MS, `took ${back} ms`);
      // Until the dead node's lease expired, the others said where the group was held.
      await client.waitForLine(/GROUP_ACTIVE_ELSEWHERE: group "roaming" is active on node a/, { fromLine, timeoutMs: 1000 });
      // The same client asked the dead node to let go; nobody answered, and no request is left behind.
      assert.match(client.output, /that node did not let its session of this client go within \d+(\.\d)?(ms|s|m)/);
      const admin = new Etcd3({ hosts: etcd.endpoints });
      try {
        const prefix = (await next.api('/api/cluster')).body.prefix as string;
        assert.deepEqual(await admin.getAll().prefix(`${prefix}/takeover/`).keys(), []);
      } finally {
        admin.close();
      }
    });

    test('a lease revoked in etcd: its node drops the group at once, takes a new lease, and the group is back within a TTL plus the client backoff', async () => {
      const serving = await servingNode(nodes, publicPort, 5000);
      const probe = probeNodes(nodes, publicPort);
      const admin = new Etcd3({ hosts: etcd.endpoints });
      try {
        const prefix = (await serving.api('/api/cluster')).body.prefix as string;
        const [record] = (await admin.get(`${prefix}/nodes/${serving.name}`).exec()).kvs;
        assert.ok(record !== undefined && record.lease !== '0', 'the node record is attached to its lease');
        const fromLine = serving.process.lines.length;
        const revokedAt = Date.now();
        await admin.leaseClient.leaseRevoke({ ID: record.lease });
        await serving.process.waitForLine(/cluster: etcd lease lost \(etcd revoked the lease/, { fromLine, timeoutMs: LEASE_TTL_MS });
        const droppedAfter = Date.now() - revokedAt;
        await serving.process.waitForLine(/holds a new etcd lease/, { fromLine, timeoutMs: LEASE_TTL_MS + LOAD_MARGIN_MS });
        const next = await servingNode(nodes, publicPort, LEASE_TTL_MS + BACKOFF_BOUND_MS + LOAD_MARGIN_MS);
        const back = Date.now() - revokedAt;
        const { doubles } = await probe.stop();
        console.log(
          `# lease of node ${serving.name} revoked: groups dropped after ${droppedAfter} ms; users served again through node ${next.name} after ${back} ms`,
        );
        assert.deepEqual(doubles, []);
        // Seen by the watch, not by the keepalive watchdog (two thirds of the TTL).
        assert.ok(droppedAfter < LEASE_TTL_MS / 2, `dropped ${droppedAfter} ms after the revocation`);
        // Revocation frees the keys at once: nobody waits for an expiry, only for the client's backoff.
        assert.ok(back < LEASE_TTL_MS + BACKOFF_BOUND_MS + LOAD_MARGIN_MS, `took ${back} ms`);
      } finally {
        admin.close();
        await probe.stop();
      }
    });

    test('a node cut off from etcd drops its groups before their lease could be taken elsewhere', async () => {
      const serving = await servingNode(nodes, publicPort, 5000);
      const probe = probeNodes(nodes, publicPort);
      const fromLine = serving.process.lines.length;
      const cutAt = Date.now();
      serving.cutOffFromEtcd();
      await serving.process.waitForLine(/cluster: etcd lease lost \(no keepalive answered/, { fromLine, timeoutMs: LEASE_TTL_MS + LOAD_MARGIN_MS });
      // Its port closes with the drop: nothing answers there any more.
      const droppedAfter = Date.now() - cutAt;
      assert.equal(await accepts(serving.host, publicPort), false, `node ${serving.name} still accepts users after losing its lease`);
      // The last keepalive etcd answered was sent before the cut: the lease lives at least TTL past it.
      assert.ok(droppedAfter < LEASE_TTL_MS, `dropped ${droppedAfter} ms after the cut, past the lease TTL`);
      const next = await servingNode(
        nodes.filter((node) => node !== serving),
        publicPort,
        LEASE_TTL_MS + BACKOFF_BOUND_MS + LOAD_MARGIN_MS + 5000,
      );
      const back = Date.now() - cutAt;
      const { doubles } = await probe.stop();
      console.log(`# node ${serving.name} cut off from etcd: it dropped its groups after ${droppedAfter} ms; node ${next.name} served them after ${back} ms`);
      assert.deepEqual(doubles, [], 'two nodes accepted users for one group at once');
      assert.ok(back >= droppedAfter);
    });

    test('an etcd member killed: the cluster keeps registering groups and activating them', async () => {
      const live = nodes.filter((node) => node.process.running && !node.etcdRelays.some(() => false));
      const healthy = live.filter((node) => !node.process.lines.some((line) => line.includes('etcd lease lost')));
      assert.ok(healthy.length >= 1, 'a node that kept its lease');
      await etcd.kill(0);
      await etcd.waitHealthy();
      const other: TestGroup = {
        name: 'after-member-loss',
        secret: randomSecret(),
        apps: [{ name: 'echo', localPort: echo.port, remotePort: await unusedPort() }],
      };
      const writer = healthy[0]!;
      const created = await writer.api('/api/groups', { method: 'POST', body: groupYaml(other) });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const otherConfig = makeConfigDir([other]);
      const otherClient = processes.add(
        startGroupClientProcess({
          configFile: otherConfig.groupFile(other.name),
          serverPort: writer.port,
          link: { fingerprint: writer.fingerprint! },
          extraArgs: ['--server', `${writer.host}:${writer.port}`],
        }),
      );
      await waitForGroupActive(otherClient, other.name, { timeoutMs: 10_000 });
      const payload = `after the member loss ${Date.now()}`;
      assert.equal(await echoThrough(writer.host, other.apps[0]!.remotePort!, payload), payload);
      for (const node of healthy)
        assert.equal(
          node.process.lines.some((line) => line.includes('etcd lease lost')),
          false,
          `node ${node.name} lost its lease with one etcd member down`,
        );
    });
  },
);
