/**
 * Login-to-active latency on a single commonserver against a cluster node (the same login
 * plus one etcd transaction), and a cluster of three nodes activating many groups at once:
 * activation times and etcd traffic per login. Everything in this process except etcd,
 * which runs as a real three-member cluster on loopback (Debian's etcd-server).
 */
import { performance } from 'node:perf_hooks';
import { filter, firstValueFrom } from 'rxjs';
import { GroupClient, type ServerEndpoint } from '../src/client/index.js';
import { loadGroupFile, loadServerConfig, type GroupSpec } from '../src/config/index.js';
import { CommonServer, loadServerTransport, type GroupRegistry } from '../src/server/index.js';
import { ClusterNode } from '../src/server/cluster/index.js';
import { startEchoApp } from '../test/helpers/apps.js';
import { groupYaml, makeConfigDir, randomSecret, type TestGroup } from '../test/helpers/configs.js';
import { EtcdCluster } from '../test/helpers/etcd-cluster.js';
import { percentile } from './proc.js';

export interface LoginBenchSettings {
  /** Sequential logins measured on each setup (single, cluster). */
  logins: number;
  /** Groups activated at once across three nodes (0: skip). */
  groups: number;
  /** Clients logging in at the same time in the many-groups run. */
  concurrency: number;
}

interface Node {
  server: CommonServer;
  cluster?: ClusterNode;
  /** A cluster node's registry: what its admin API calls to add a group. */
  registry?: GroupRegistry;
  endpoint: ServerEndpoint;
}

const LEASE_TTL = '10s';

async function startNode(bindHost: string, clusterSection: Record<string, unknown> | undefined): Promise<Node> {
  const dir = makeConfigDir([], { bindHost, workConnPool: 0, ...(clusterSection ? { extra: { cluster: clusterSection } } : {}) });
  const config = loadServerConfig(dir.serverFile);
  const { transport, fingerprint } = loadServerTransport(config.tls);
  const cluster =
    config.cluster === undefined ? undefined : new ClusterNode({ config: config.cluster, baseDir: dir.dir, handshakeTimeoutMs: config.handshakeTimeoutMs });
  await cluster?.join();
  const server = new CommonServer({ ...config, transport, ...(cluster ? { activationGate: cluster.claims } : {}) });
  const registry = cluster === undefined ? undefined : await cluster.attach(server);
  const { port } = await server.listen();
  await cluster?.announce(port);
  return {
    server,
    ...(cluster ? { cluster } : {}),
    ...(registry ? { registry } : {}),
    endpoint: { server: { host: bindHost, port }, transport: { kind: 'tls', fingerprint: fingerprint! } },
  };
}

async function stopNode(node: Node): Promise<void> {
  await node.server.close();
  await node.cluster?.close();
}

/** One login: from run() to LoginResp accepted, in ms; the client keeps running. */
async function loginOnce(spec: GroupSpec, servers: ServerEndpoint[]): Promise<{ ms: number; client: GroupClient; done: Promise<void> }> {
  const client = new GroupClient({
    spec,
    server: servers[0]!.server,
    transport: servers[0]!.transport,
    servers,
    clientId: `bench-${spec.name}`,
    maxPooledWorkConns: 0,
  });
  const accepted = firstValueFrom(client.events$.pipe(filter((event) => event.type === 'login-accepted')));
  const started = performance.now();
  const done = client.run();
  done.catch(() => undefined);
  await accepted;
  return { ms: performance.now() - started, client, done };
}

function groupsFor(count: number, localPort: number, prefix: string): { spec: GroupSpec; yaml: string }[] {
  const dir = makeConfigDir([]);
  return Array.from({ length: count }, (_, i) => {
    const group: TestGroup = { name: `${prefix}-${i}`, secret: randomSecret(), apps: [{ name: 'echo', localPort, remotePort: 0 }] };
    return { spec: loadGroupFile(dir.writeGroup(group)), yaml: groupYaml(group) };
  });
}

/** p50 / p99 / max of a list of ms. */
function summary(values: number[]): { p50: number; p99: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? Number.NaN };
}

/** Sequential logins, each stopped before the next: what one login costs, nothing else running. */
async function sequentialLogins(node: Node, groups: { spec: GroupSpec }[]): Promise<number[]> {
  const times: number[] = [];
  for (const { spec } of groups) {
    const { ms, client, done } = await loginOnce(spec, [node.endpoint]);
    times.push(ms);
    client.stop();
    await done;
  }
  return times;
}

type Running = { client: GroupClient; done: Promise<void> }[];

/** Logs every group in, `concurrency` clients at a time; the clients keep running. */
async function activateMany(
  groups: { spec: GroupSpec }[],
  concurrency: number,
  serversFor: (i: number) => ServerEndpoint[],
): Promise<{ wallMs: number; times: number[]; running: Running }> {
  const started = performance.now();
  const times: number[] = [];
  const running: Running = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < groups.length) {
        const i = next++;
        const login = await loginOnce(groups[i]!.spec, serversFor(i));
        times.push(login.ms);
        running.push(login);
      }
    }),
  );
  return { wallMs: performance.now() - started, times, running };
}

async function stopAll(running: Running): Promise<void> {
  for (const { client } of running) client.stop();
  await Promise.all(running.map(({ done }) => done));
}

/** etcd's own counters, summed over its members: bytes in and out of its client port, gRPC calls handled. */
async function etcdCounters(etcd: EtcdCluster): Promise<{ bytesIn: number; bytesOut: number; calls: number }> {
  const totals = { bytesIn: 0, bytesOut: 0, calls: 0 };
  for (const endpoint of etcd.endpoints) {
    const text = await (await fetch(`${endpoint}/metrics`)).text();
    const sum = (pattern: RegExp): number => [...text.matchAll(pattern)].reduce((acc, match) => acc + Number(match[1]), 0);
    totals.bytesIn += sum(/^etcd_network_client_grpc_received_bytes_total(?:\{[^}]*\})? (\S+)$/gm);
    totals.bytesOut += sum(/^etcd_network_client_grpc_sent_bytes_total(?:\{[^}]*\})? (\S+)$/gm);
    totals.calls += sum(/^grpc_server_handled_total\{[^}]*\} (\S+)$/gm);
  }
  return totals;
}

export async function loginBench(settings: LoginBenchSettings, say: (line: string) => void = console.log): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};
  const echo = await startEchoApp();
  const etcd = await EtcdCluster.start(3);
  const prefix = `/ntp-bench-${process.pid}`;
  const clusterSection = (node: string, host: string): Record<string, unknown> => ({
    etcd: etcd.endpoints,
    node,
    advertise: host,
    prefix,
    leaseTtl: LEASE_TTL,
  });
  try {
    // Single server against one cluster node, the same groups, one login at a time.
    const single = await startNode('127.0.0.1', undefined);
    const singleGroups = groupsFor(settings.logins, echo.port, 'single');
    for (const { spec } of singleGroups) single.server.registerGroup(spec);
    const singleTimes = await sequentialLogins(single, singleGroups);
    await stopNode(single);

    const nodes = [
      await startNode('127.0.0.1', clusterSection('a', '127.0.0.1')),
      await startNode('127.0.0.2', clusterSection('b', '127.0.0.2')),
      await startNode('127.0.0.3', clusterSection('c', '127.0.0.3')),
    ];
    const clusterGroups = groupsFor(settings.logins, echo.port, 'cluster');
    const registry = nodes[0]!.registry!;
    for (const { yaml } of clusterGroups) await registry.create(yaml);
    await untilEveryNodeHas(nodes, clusterGroups.length);
    const clusterTimes = await sequentialLogins(nodes[1]!, clusterGroups);
    const s = summary(singleTimes);
    const c = summary(clusterTimes);
    Object.assign(figures, { singleP50: s.p50, singleP99: s.p99, clusterP50: c.p50, clusterP99: c.p99 });
    say(
      `login to active, ${settings.logins} logins one after another (ms): single p50 ${s.p50.toFixed(2)} p99 ${s.p99.toFixed(2)} | cluster node p50 ${c.p50.toFixed(2)} p99 ${c.p99.toFixed(2)} (${(c.p50 / s.p50).toFixed(2)}× at p50)`,
    );

    if (settings.groups > 0) {
      const many = groupsFor(settings.groups, echo.port, 'many');
      const registerStarted = performance.now();
      for (const { yaml } of many) await registry.create(yaml);
      await untilEveryNodeHas(nodes, clusterGroups.length + many.length);
      const registerMs = performance.now() - registerStarted;
      const before = await etcdCounters(etcd);
      // Each client lists the nodes from a different first one: the load spreads over the three.
      const { wallMs, times, running } = await activateMany(many, settings.concurrency, (i) => [0, 1, 2].map((k) => nodes[(i + k) % 3]!.endpoint));
      const after = await etcdCounters(etcd);
      const perNode = nodes.map((node) => node.server.inUseGroup.size);
      const m = summary(times);
      const bytesPerLogin = (after.bytesIn + after.bytesOut - before.bytesIn - before.bytesOut) / many.length;
      const callsPerLogin = (after.calls - before.calls) / many.length;
      Object.assign(figures, {
        manyGroups: many.length,
        manyWallMs: wallMs,
        manyP50: m.p50,
        manyP99: m.p99,
        etcdBytesPerLogin: bytesPerLogin,
        etcdCallsPerLogin: callsPerLogin,
        registerMs,
      });
      say(`${many.length} groups registered through node a's registry, on every node after ${registerMs.toFixed(0)} ms`);
      say(
        `${many.length} groups activated across three nodes (${settings.concurrency} clients at a time): all active after ${wallMs.toFixed(0)} ms; per login p50 ${m.p50.toFixed(1)} ms, p99 ${m.p99.toFixed(1)} ms, max ${m.max.toFixed(1)} ms; groups per node ${perNode.join(' / ')}`,
      );
      say(
        `etcd traffic per login (all members, keepalives and watch events of the window included): ${callsPerLogin.toFixed(2)} gRPC calls, ${(bytesPerLogin / 1024).toFixed(2)} KiB`,
      );
      await stopAll(running);
      for (const node of nodes) await stopNode(node);

      // The same groups on one single server, for comparison: what is the cluster's, what is this process's load.
      const lone = await startNode('127.0.0.1', undefined);
      for (const { spec } of many) lone.server.registerGroup(spec);
      const alone = await activateMany(many, settings.concurrency, () => [lone.endpoint]);
      const a = summary(alone.times);
      Object.assign(figures, { manySingleWallMs: alone.wallMs, manySingleP50: a.p50, manySingleP99: a.p99 });
      say(
        `the same ${many.length} groups on one single server: all active after ${alone.wallMs.toFixed(0)} ms; per login p50 ${a.p50.toFixed(1)} ms, p99 ${a.p99.toFixed(1)} ms`,
      );
      await stopAll(alone.running);
      await stopNode(lone);
    } else {
      for (const node of nodes) await stopNode(node);
    }
  } finally {
    await etcd.stop();
    await echo.close();
  }
  return figures;
}

async function untilEveryNodeHas(nodes: Node[], count: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (nodes.some((node) => node.server.readyGroup.size < count)) {
    if (Date.now() > deadline) throw new Error(`the nodes did not all register ${count} groups within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
