import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { makeConfigDir, type TestServerSettings } from './configs.js';
import type { EtcdCluster } from './etcd-cluster.js';
import { startFaultRelay, type FaultRelay } from './fault-relay.js';
import { ProcessSet, startCommonServerProcess, type CliProcess } from './processes.js';

/** A commonserver process that is one node of a cluster. */
export interface ClusterNodeProcess {
  name: string;
  /** Its common port and public ports are bound on this loopback address (127.0.0.N). */
  host: string;
  port: number;
  fingerprint?: string;
  process: CliProcess;
  /** Its commonserver.yaml (for `commonserver cluster import` against the same cluster). */
  configFile: string;
  adminUrl: string;
  /** This node reaches each etcd member through its own relay: `cutOff()` black-holes them all. */
  etcdRelays: FaultRelay[];
  cutOffFromEtcd(): void;
  /** Resets every connection of this node to etcd and refuses new ones until `reconnectToEtcd()`. */
  disconnectFromEtcd(): void;
  reconnectToEtcd(): void;
  /** `GET path` on its admin API, parsed as JSON. */
  api(path: string, init?: { method?: string; body?: string }): Promise<{ status: number; body: any }>;
}

export interface ClusterNodesOptions {
  count: number;
  leaseTtl: string;
  /** Every test gets its own prefix: nothing is shared with another cluster on the same etcd. */
  prefix?: string;
  /** The first node's index: 1 names it "b" on 127.0.0.2 (a node added beside others). */
  first?: number;
  /** Each node's environment (a `${VAR}` secret in etcd is read from it). */
  env?: NodeJS.ProcessEnv;
  /** Each node makes its own certificate at start (default: one shared by every test server). */
  ownCertificates?: boolean;
  /** Heartbeat and handshake settings of every node (the test defaults otherwise). */
  server?: Pick<TestServerSettings, 'heartbeatInterval' | 'heartbeatTimeout' | 'handshakeTimeout'>;
}

/**
 * Starts `count` commonserver processes as nodes "a", "b", "c"... on 127.0.0.1, 127.0.0.2...,
 * each with an admin API and the cluster section pointing at `etcd` through relays of its own.
 */
export async function startClusterNodes(
  etcd: EtcdCluster,
  processes: ProcessSet,
  { count, leaseTtl, prefix = `/ntp-${randomBytes(4).toString('hex')}`, first = 0, env = {}, ownCertificates = false, server = {} }: ClusterNodesOptions,
): Promise<ClusterNodeProcess[]> {
  const nodes: ClusterNodeProcess[] = [];
  for (let i = first; i < first + count; i++) {
    const name = String.fromCharCode(97 + i);
    const host = `127.0.0.${i + 1}`;
    const etcdRelays = await Promise.all(etcd.endpoints.map((endpoint) => startFaultRelay(Number(new URL(endpoint).port))));
    const config = makeConfigDir([], {
      ...server,
      bindHost: host,
      ...(ownCertificates ? { certificate: 'on-start' as const } : {}),
      extra: {
        admin: { bind: '127.0.0.1:0' },
        cluster: { etcd: etcdRelays.map((relay) => `http://127.0.0.1:${relay.port}`), node: name, advertise: host, prefix, leaseTtl },
      },
    });
    const started = await startCommonServerProcess(config.serverFile, env);
    processes.add(started.process);
    const adminMatch = await started.process.waitForLine(/admin listening on (http:\/\/\S+)/);
    const adminUrl = adminMatch[1]!;
    nodes.push({
      name,
      host,
      port: started.port,
      ...(started.fingerprint ? { fingerprint: started.fingerprint } : {}),
      process: started.process,
      configFile: config.serverFile,
      adminUrl,
      etcdRelays,
      cutOffFromEtcd: () => etcdRelays.forEach((relay) => relay.blackhole()),
      disconnectFromEtcd: () => etcdRelays.forEach((relay) => relay.reset()),
      reconnectToEtcd: () => etcdRelays.forEach((relay) => relay.heal()),
      async api(path, init = {}) {
        const res = await fetch(`${adminUrl}${path}`, {
          method: init.method ?? 'GET',
          ...(init.body !== undefined ? { body: init.body, headers: { 'content-type': 'application/yaml' } } : {}),
        });
        const text = await res.text();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON
        }
        return { status: res.status, body };
      },
    });
  }
  return nodes;
}

/** Whether `host:port` accepts a TCP connection now (a listening public port = a node accepting users). */
export function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1000, () => done(false));
  });
}

/** Sends a line through `host:port` and resolves with what the echo app sent back. */
export function echoThrough(host: string, port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('connect', () => socket.end(payload));
    socket.once('error', reject);
    socket.once('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}
