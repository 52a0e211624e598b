import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { accepts, echoThrough, startClusterNodes, type ClusterNodeProcess } from '../helpers/cluster-nodes.js';
import { groupYaml, makeConfigDir, randomSecret, type TestConfigDir, type TestGroup } from '../helpers/configs.js';
import { etcdAvailable, EtcdCluster } from '../helpers/etcd-cluster.js';
import { startFaultRelay, type FaultRelay } from '../helpers/fault-relay.js';
import { CliProcess, GROUPCLIENT_BIN, ProcessSet, waitForGroupActive } from '../helpers/processes.js';

/** Long, as in production: without a takeover the group would stay on the broken path this long. */
const HEARTBEAT_TIMEOUT_MS = 30_000;
/** What the move may take at most: well under the heartbeat timeout, with room for a loaded machine. */
const TAKEOVER_BOUND_MS = HEARTBEAT_TIMEOUT_MS / 3;
const CLIENT_ID = 'roaming-agent';

describe(
  'a client whose path to its node broke logs in on another node: the same client takes its group over at once',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 120_000 },
  () => {
    const processes = new ProcessSet();
    let etcd: EtcdCluster;
    let a: ClusterNodeProcess, b: ClusterNodeProcess, c: ClusterNodeProcess;
    let echo: TestApp;
    let relay: FaultRelay;
    let config: TestConfigDir;
    let group: TestGroup;
    let publicPort: number;
    let prefix: string;

    function startClient(servers: ClusterNodeProcess[] | string[], clientId = CLIENT_ID): CliProcess {
      const addresses = servers.map((server) => (typeof server === 'string' ? server : `${server.host}:${server.port}`));
      return processes.add(
        new CliProcess(GROUPCLIENT_BIN, [
          '--config',
          config.groupFile(group.name),
          '--client-id',
          clientId,
          '--server',
          addresses.join(','),
          // One certificate shared by the nodes: one fingerprint per address.
          '--server-fingerprint',
          addresses.map(() => a.fingerprint!).join(','),
        ]),
      );
    }

    before(async () => {
      etcd = await EtcdCluster.start(3);
      [a, b, c] = (await startClusterNodes(etcd, processes, {
        count: 3,
        leaseTtl: '6s',
        server: { heartbeatInterval: '1s', heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS / 1000}s`, handshakeTimeout: '5s' },
      })) as [ClusterNodeProcess, ClusterNodeProcess, ClusterNodeProcess];
      prefix = (await a.api('/api/cluster')).body.prefix as string;
      echo = await startEchoApp();
      publicPort = await unusedPort();
      group = { name: 'roaming', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort: publicPort }] };
      config = makeConfigDir([group]);
      const created = await a.api('/api/groups', { method: 'POST', body: groupYaml(group) });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      for (const node of [b, c]) await node.process.waitForLine(/group roaming registered/, { timeoutMs: 5000 });
      // Node a is on 127.0.0.1, where the relay connects.
      relay = await startFaultRelay(a.port);
    });

    after(async () => {
      await processes.stopAll();
      for (const node of [a, b, c]) for (const etcdRelay of node?.etcdRelays ?? []) await etcdRelay.close();
      await relay?.close();
      await echo?.close();
      await etcd?.stop();
    });

    test('path to node a black-holed, the client restarted against node b: b serves the group well before a heartbeat timeout, a let it go', async () => {
      const first = startClient([`127.0.0.1:${relay.port}`, `${b.host}:${b.port}`]);
      await waitForGroupActive(first, group.name, { timeoutMs: 15_000 });
      assert.equal((await a.api('/api/groups/roaming')).body.group.node.name, 'a');
      assert.equal(await echoThrough(a.host, publicPort, 'through a'), 'through a');

      // The path dies silently (no FIN, no reset) and the agent with it: node a still sees a live session.
      relay.blackhole();
      await first.killHard();
      const fromLineOfA = a.process.lines.length;
      const brokeAt = Date.now();
      const second = startClient([b]);
      await waitForGroupActive(second, group.name, { timeoutMs: TAKEOVER_BOUND_MS });
      const activeAfter = Date.now() - brokeAt;
      assert.equal(await echoThrough(b.host, publicPort, 'through b'), 'through b');
      const servedAfter = Date.now() - brokeAt;
      console.log(
        `# same-client takeover from node a to node b: group active on b ${activeAfter} ms, users through b ${servedAfter} ms after the path broke (heartbeat timeout ${HEARTBEAT_TIMEOUT_MS} ms)`,
      );
      assert.ok(servedAfter < TAKEOVER_BOUND_MS, `took ${servedAfter} ms`);
      await a.process.waitForLine(/group roaming deactivated \(TAKEN_OVER\): taken over by a new session of the same client on node b/, {
        fromLine: fromLineOfA,
        timeoutMs: 1000,
      });
      assert.equal(await accepts(a.host, publicPort), false, 'node a still accepts users of the group');
      for (const node of [a, b, c]) {
        const view = await node.api('/api/groups/roaming');
        assert.equal(view.body.group.node.name, 'b', `node ${node.name} says ${JSON.stringify(view.body.group.node)}`);
      }
      // The request is gone once the takeover is done.
      const admin = new Etcd3({ hosts: etcd.endpoints });
      try {
        const left = await admin.getAll().prefix(`${prefix}/takeover/`).keys();
        assert.deepEqual(left, []);
        const active = JSON.parse((await admin.get(`${prefix}/active/roaming`).string())!) as { node: string; clientId: string };
        assert.deepEqual([active.node, active.clientId], ['b', CLIENT_ID]);
      } finally {
        admin.close();
      }
    });

    test('another client id logging in on node c is refused as before: the session on node b stays', async () => {
      const fromLineOfB = b.process.lines.length;
      const rival = startClient([c], 'another-agent');
      await rival.waitForLine(/login rejected: GROUP_ACTIVE_ELSEWHERE: group "roaming" is active on node b/, { timeoutMs: 10_000 });
      await rival.stop();
      // No request was made: node c did not wait for node b.
      assert.doesNotMatch(rival.output, /did not let its session/);
      assert.equal(
        b.process.lines.slice(fromLineOfB).some((line) => line.includes('TAKEN_OVER')),
        false,
        'node b let the session go',
      );
      assert.equal(await echoThrough(b.host, publicPort, 'still b'), 'still b');
    });

    test('the serving node honours a takeover request only for the client id of its live session', async () => {
      const fromLineOfB = b.process.lines.length;
      const admin = new Etcd3({ hosts: etcd.endpoints });
      const request = (node: string, clientId: string): string =>
        JSON.stringify({ node, advertise: '127.0.0.9', commonPort: 1, clientId, since: new Date().toISOString() });
      try {
        // Written in this order, seen by node b in this order: the first must change nothing.
        await admin.put(`${prefix}/takeover/roaming`).value(request('x', 'another-agent'));
        await admin.put(`${prefix}/takeover/roaming`).value(request('y', CLIENT_ID));
        await b.process.waitForLine(/group roaming deactivated \(TAKEN_OVER\): taken over by a new session of the same client on node y/, {
          fromLine: fromLineOfB,
          timeoutMs: 5000,
        });
        assert.equal(
          b.process.lines.slice(fromLineOfB).some((line) => line.includes('on node x')),
          false,
          'a request for another client id ended the session',
        );
      } finally {
        await admin.delete().prefix(`${prefix}/takeover/`);
        admin.close();
      }
    });
  },
);
