import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { unusedPort } from '../helpers/apps.js';
import { startClusterNodes, type ClusterNodeProcess } from '../helpers/cluster-nodes.js';
import { groupYaml, randomSecret, type TestGroup } from '../helpers/configs.js';
import { etcdAvailable, EtcdCluster } from '../helpers/etcd-cluster.js';
import { eventually } from '../helpers/eventually.js';
import { ProcessSet } from '../helpers/processes.js';

/**
 * A port free on this host that no earlier call returned: groups registered by earlier tests
 * stay registered while nothing listens on their ports, so the OS may hand one out again, and
 * a write naming it would meet that group's claim instead of the race under test.
 */
const handedOut = new Set<number>();
async function freshPort(): Promise<number> {
  let port = await unusedPort();
  while (handedOut.has(port)) port = await unusedPort();
  handedOut.add(port);
  return port;
}

/** Generous: a node cut off from etcd for a moment should not lose its lease on a loaded machine. */
const LEASE_TTL = '6s';
const RACE_ROUNDS = 25;
/** How long a node may take to see a change, at most (it takes milliseconds when all is well). */
const CONVERGE_MS = 30_000;

function tcpGroup(name: string, remotePort: number): TestGroup {
  return { name, secret: randomSecret(), apps: [{ name: 'web', localPort: 9, remotePort }] };
}

interface GroupView {
  name: string;
  apps: { name: string; remotePort: number }[];
}

async function registeredGroups(node: ClusterNodeProcess): Promise<GroupView[]> {
  const answer = await node.api('/api/groups');
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body.groups as GroupView[];
}

/** Polls `node`'s admin API until `check` holds of its groups; fails with the last view after `timeoutMs`. */
async function waitForGroups(node: ClusterNodeProcess, check: (groups: Map<string, GroupView>) => boolean, timeoutMs = CONVERGE_MS): Promise<void> {
  let last: GroupView[] = [];
  await eventually(
    async () => {
      last = await registeredGroups(node).catch(() => last);
      return check(new Map(last.map((group) => [group.name, group])));
    },
    { message: () => `node ${node.name} to converge; it has ${JSON.stringify(last.map((g) => [g.name, g.apps]))}`, timeout: timeoutMs, interval: 100 },
  );
}

/** The public ports two groups of `groups` share, if any ("port: g1, g2"). */
function sharedPorts(groups: GroupView[]): string[] {
  const owners = new Map<number, string[]>();
  for (const group of groups)
    for (const app of group.apps) if (app.remotePort !== 0) owners.set(app.remotePort, [...(owners.get(app.remotePort) ?? []), group.name]);
  return [...owners].filter(([, names]) => names.length > 1).map(([port, names]) => `${port}: ${names.join(', ')}`);
}

describe(
  'the registry of a cluster under concurrent writes and a lagging watch',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 240_000 },
  () => {
    const processes = new ProcessSet();
    let etcd: EtcdCluster;
    let nodes: ClusterNodeProcess[];

    before(async () => {
      etcd = await EtcdCluster.start(3);
      nodes = await startClusterNodes(etcd, processes, { count: 2, leaseTtl: LEASE_TTL });
    });

    after(async () => {
      await processes.stopAll();
      for (const node of nodes ?? []) for (const relay of node.etcdRelays) await relay.close();
      await etcd?.stop();
    });

    test('two groups registered at once through two nodes on one public port: exactly one wins, every round', async () => {
      const [a, b] = nodes;
      const wins = { a: 0, b: 0 };
      for (let round = 0; round < RACE_ROUNDS; round++) {
        const port = await freshPort();
        const viaA = tcpGroup(`race-${round}-a`, port);
        const viaB = tcpGroup(`race-${round}-b`, port);
        const [fromA, fromB] = await Promise.all([
          a!.api('/api/groups', { method: 'POST', body: groupYaml(viaA) }),
          b!.api('/api/groups', { method: 'POST', body: groupYaml(viaB) }),
        ]);
        const statuses = [fromA.status, fromB.status].sort();
        assert.deepEqual(statuses, [201, 409], `round ${round}: ${JSON.stringify([fromA.body, fromB.body])}`);
        const [winner, loser] = fromA.status === 201 ? [viaA, fromB] : [viaB, fromA];
        wins[fromA.status === 201 ? 'a' : 'b'] += 1;
        assert.equal(loser.body.error.code, 'PORT_CLAIMED');
        assert.match(loser.body.error.message, new RegExp(`already claimed by ${winner.name}/web`));
      }
      console.log(`# ${RACE_ROUNDS} rounds of racing registrations: node a won ${wins.a}, node b won ${wins.b}`);
      for (const node of nodes) {
        await waitForGroups(node, (groups) => [...groups.keys()].filter((name) => name.startsWith('race-')).length === RACE_ROUNDS);
        assert.deepEqual(sharedPorts(await registeredGroups(node)), [], `node ${node.name} holds two groups on one port`);
      }
    });

    test('two groups moved at once through two nodes onto one public port: exactly one wins, every round', async () => {
      const [a, b] = nodes;
      const first = tcpGroup('mover-1', await freshPort());
      const second = tcpGroup('mover-2', await freshPort());
      assert.equal((await a!.api('/api/groups', { method: 'POST', body: groupYaml(first) })).status, 201);
      assert.equal((await b!.api('/api/groups', { method: 'POST', body: groupYaml(second) })).status, 201);
      for (let round = 0; round < RACE_ROUNDS / 5; round++) {
        const port = await freshPort();
        // Each node must know both groups before the race, or a replace could fail for another reason.
        for (const node of nodes) await waitForGroups(node, (groups) => groups.has(first.name) && groups.has(second.name));
        const [fromA, fromB] = await Promise.all([
          a!.api(`/api/groups/${first.name}`, { method: 'PUT', body: groupYaml({ ...first, apps: [{ ...first.apps[0]!, remotePort: port }] }) }),
          b!.api(`/api/groups/${second.name}`, { method: 'PUT', body: groupYaml({ ...second, apps: [{ ...second.apps[0]!, remotePort: port }] }) }),
        ]);
        assert.deepEqual([fromA.status, fromB.status].sort(), [200, 409], `round ${round}: ${JSON.stringify([fromA.body, fromB.body])}`);
        const loser = fromA.status === 409 ? fromA : fromB;
        assert.equal(loser.body.error.code, 'PORT_CLAIMED');
      }
      for (const node of nodes) assert.deepEqual(sharedPorts(await registeredGroups(node)), [], `node ${node.name} holds two groups on one port`);
    });

    test("a node whose watch fell behind etcd's compaction re-reads the registry and converges", async () => {
      const [a, b] = nodes;
      const changing = tcpGroup('changing', await freshPort());
      const doomed = tcpGroup('doomed', await freshPort());
      for (const group of [changing, doomed]) assert.equal((await a!.api('/api/groups', { method: 'POST', body: groupYaml(group) })).status, 201);
      await waitForGroups(b!, (groups) => groups.has('changing') && groups.has('doomed'));

      b!.disconnectFromEtcd();
      const late = tcpGroup('late', await freshPort());
      const movedTo = await freshPort();
      assert.equal((await a!.api('/api/groups', { method: 'POST', body: groupYaml(late) })).status, 201);
      assert.equal(
        (await a!.api('/api/groups/changing', { method: 'PUT', body: groupYaml({ ...changing, apps: [{ ...changing.apps[0]!, remotePort: movedTo }] }) }))
          .status,
        200,
      );
      assert.equal((await a!.api('/api/groups/doomed', { method: 'DELETE' })).status, 200);
      const admin = new Etcd3({ hosts: etcd.endpoints });
      try {
        // Everything b missed is compacted away: its watch cannot resume where it stopped.
        const { header } = await admin.get('/compaction-mark').exec();
        await admin.kv.compact({ revision: header.revision, physical: true });
      } finally {
        admin.close();
      }
      b!.reconnectToEtcd();
      await waitForGroups(b!, (groups) => groups.has('late') && !groups.has('doomed') && groups.get('changing')?.apps[0]?.remotePort === movedTo);

      // And the watch runs again: a change made after the re-read reaches b too.
      const after = tcpGroup('after-compaction', await freshPort());
      assert.equal((await a!.api('/api/groups', { method: 'POST', body: groupYaml(after) })).status, 201);
      await waitForGroups(b!, (groups) => groups.has('after-compaction'), 10_000);
    });

    test('the etcd member carrying a watch dies: the watch goes on through another member', async () => {
      const [a, b] = nodes;
      // b's watch runs on one of the three members; killing each in turn kills it once at least.
      for (let member = 0; member < 3; member++) {
        await etcd.kill(member);
        await etcd.waitHealthy();
        const group = tcpGroup(`without-m${member}`, await freshPort());
        // The etcd client stops calling a member for 5 s after it failed; when that leaves no
        // member for a moment, the write is refused with 503 and nothing changed: retried, as
        // the API asks of its callers.
        // Any answer but that 503 ends the polling, for the assert below to judge.
        const created = await eventually(
          async () => {
            const answer = await a!.api('/api/groups', { method: 'POST', body: groupYaml(group) });
            return answer.status === 503 && answer.body?.error?.code === 'REGISTRY_UNAVAILABLE' ? false : answer;
          },
          { message: `the registry to take group ${group.name}`, timeout: 15_000, interval: 500 },
        );
        assert.equal(created.status, 201, JSON.stringify(created.body));
        await waitForGroups(b!, (groups) => groups.has(group.name), 15_000);
        etcd.restart(member);
        await etcd.waitHealthy();
      }
    });
  },
);
