import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logSink } from './artifacts.js';
import { eventually } from './eventually.js';

/** One etcd member: a real `etcd` process on loopback ports with its own throwaway data dir. */
export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  /** http://127.0.0.1:clientPort */
  endpoint: string;
  running: boolean;
}

interface MemberState extends EtcdMember {
  child?: ChildProcess;
  exited?: Promise<unknown>;
}

/** Ports the kernel hands out for port 0, released at once for etcd to bind. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, async () => {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return server;
    }),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** The tests skip themselves without etcd on PATH; CI installs it (and checks it did). */
export function etcdAvailable(): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, 'etcd')));
}

/**
 * A real etcd cluster of `size` members on 127.0.0.1, started by the test itself (the
 * Debian `etcd-server` package's binary), each member's data in a throwaway directory.
 */
export class EtcdCluster {
  // In memory where there is /dev/shm: etcd fsyncs every write, and a shared disk's fsync
  // latency would show in every registration and claim (and slow lease renewals).
  private readonly dataRoot = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ntp-etcd-'));
  private constructor(
    private readonly members: MemberState[],
    private readonly token: string,
    private readonly tls: EtcdTls | undefined,
  ) {}

  /** `tls`: clients reach etcd over TLS with this certificate and key (peers stay on loopback in the clear). */
  static async start(size = 3, { tls }: { tls?: EtcdTls } = {}): Promise<EtcdCluster> {
    const ports = await freePorts(size * 2);
    const members: MemberState[] = Array.from({ length: size }, (_, i) => ({
      name: `m${i}`,
      clientPort: ports[2 * i]!,
      peerPort: ports[2 * i + 1]!,
      endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${ports[2 * i]!}`,
      running: false,
    }));
    const cluster = new EtcdCluster(members, `ntp-test-${process.pid}-${Date.now()}`, tls);
    for (const member of members) cluster.spawnMember(member, 'new');
    await cluster.waitHealthy();
    return cluster;
  }

  get endpoints(): string[] {
    return this.members.map((member) => member.endpoint);
  }

  member(index: number): EtcdMember {
    return this.members[index]!;
  }

  private spawnMember(member: MemberState, state: 'new' | 'existing'): void {
    const initialCluster = this.members.map((other) => `${other.name}=http://127.0.0.1:${other.peerPort}`).join(',');
    const args = [
      '--name',
      member.name,
      '--data-dir',
      join(this.dataRoot, member.name),
      '--listen-client-urls',
      member.endpoint,
      '--advertise-client-urls',
      member.endpoint,
      '--listen-peer-urls',
      `http://127.0.0.1:${member.peerPort}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${member.peerPort}`,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-token',
      this.token,
      '--initial-cluster-state',
      state,
      // Loopback: a short heartbeat makes elections (after a member is killed) take well under a second.
      '--heartbeat-interval',
      '50',
      '--election-timeout',
      '500',
      ...(this.tls ? ['--cert-file', this.tls.certFile, '--key-file', this.tls.keyFile] : []),
      ...(this.tls?.clients ? ['--client-cert-auth', '--trusted-ca-file', this.tls.clients.caFile] : []),
      '--log-level',
      'warn',
      '--logger',
      'zap',
    ];
    const child = spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const log = logSink(`etcd-${member.name}`);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line) log(line);
    });
    member.child = child;
    member.running = true;
    member.exited = once(child, 'exit').then(() => {
      member.running = false;
    });
  }

  /** SIGKILL one member; resolves once it is gone. */
  async kill(index: number): Promise<void> {
    const member = this.members[index]!;
    if (!member.running) return;
    member.child!.kill('SIGKILL');
    await member.exited;
  }

  /** Starts a stopped member again on its data dir. */
  restart(index: number): void {
    const member = this.members[index]!;
    if (!member.running) this.spawnMember(member, 'existing');
  }

  /**
   * Resolves once every running member answers /health with "true" (a leader is elected and
   * it is in the quorum); fails after `timeoutMs`.
   */
  async waitHealthy(timeoutMs = 15_000): Promise<void> {
    const running = (): EtcdMember[] => this.members.filter((member) => member.running);
    await eventually(
      async () => {
        const answers = await Promise.all(running().map((member) => health(member.endpoint, this.tls)));
        return answers.length > 0 && answers.every((ok) => ok);
      },
      {
        message: () =>
          `a healthy etcd cluster (members up: ${running()
            .map((m) => m.name)
            .join(', ')})`,
        timeout: timeoutMs,
        interval: 100,
      },
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((_, i) => this.kill(i)));
    rmSync(this.dataRoot, { recursive: true, force: true });
  }
}

export interface EtcdTls {
  certFile: string;
  keyFile: string;
  /**
   * etcd accepts only clients with a certificate signed by `caFile` (`--client-cert-auth`);
   * `certFile`/`keyFile`: one such client, for the health checks.
   */
  clients?: { caFile: string; certFile: string; keyFile: string };
}

/** etcd's /health says "true" (over TLS, trusting the member's own certificate). */
function health(endpoint: string, tls: EtcdTls | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const options = {
      timeout: 1000,
      ...(tls ? { ca: readFileSync(tls.certFile) } : {}),
      ...(tls?.clients ? { cert: readFileSync(tls.clients.certFile), key: readFileSync(tls.clients.keyFile) } : {}),
    };
    const request = (tls ? httpsGet : httpGet)(`${endpoint}/health`, options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(/"health":\s*"true"/.test(text)));
      res.on('error', () => resolve(false));
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => request.destroy());
  });
}
