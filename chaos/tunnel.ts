import { rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { makeConfigDir, randomSecret } from '../test/helpers/configs.js';
import { startFaultRelay, type FaultRelay } from '../test/helpers/fault-relay.js';
import { startCommonServerProcess, startGroupClientProcess, waitForGroupActive, type CliProcess } from '../test/helpers/processes.js';

/** The group the real groupclient serves; other groups are only registered on the server. */
export const CHAOS_GROUP = 'chaos';

export interface TunnelOptions {
  /** app name → local port, served by the real groupclient. */
  apps: Record<string, number>;
  /** More groups the server knows (app name → local port), for raw clients. */
  otherGroups?: Record<string, Record<string, number>>;
  heartbeatInterval?: string;
  heartbeatTimeout?: string;
  /** Puts a fault relay between the groupclient and the common port. */
  faultRelay?: boolean;
}

/** The real CLIs as users run them: TLS on, the client pinning the fingerprint the server printed. */
export interface Tunnel {
  server: CliProcess;
  client: CliProcess;
  /** app name → public port. */
  ports: Map<string, number>;
  commonPort: number;
  fingerprint: string;
  secrets: Map<string, string>;
  relay?: FaultRelay;
  close(): Promise<void>;
}

/** Every tunnel still open, killed outright if the harness exits early. */
const open = new Set<Tunnel>();
process.once('exit', killOpenTunnels);

/** SIGKILL to every tunnel's processes: a step past its deadline must not run on beside the next. */
export function killOpenTunnels(): void {
  for (const tunnel of open) for (const cli of [tunnel.server, tunnel.client]) cli.kill('SIGKILL');
}

export async function openTunnel(options: TunnelOptions): Promise<Tunnel> {
  const secrets = new Map<string, string>();
  const group = (name: string, apps: Record<string, number>): { name: string; secret: string; apps: Array<{ name: string; localPort: number }> } => {
    const secret = randomSecret();
    secrets.set(name, secret);
    return { name, secret, apps: Object.entries(apps).map(([app, localPort]) => ({ name: app, localPort })) };
  };
  const config = makeConfigDir([group(CHAOS_GROUP, options.apps), ...Object.entries(options.otherGroups ?? {}).map(([name, apps]) => group(name, apps))], {
    heartbeatInterval: options.heartbeatInterval ?? '2s',
    heartbeatTimeout: options.heartbeatTimeout ?? '10s',
    pairingTimeout: '10s',
    handshakeTimeout: '5s',
    tls: true,
    // Dozens of users at once from one address: the default caps, sized against floods,
    // would refuse some of them with a reset and blur the figures.
    extra: { limits: { maxPendingUsersPerApp: 1000, maxHandshakes: 4096, maxHandshakesPerSource: 1000 } },
  });
  const processes: CliProcess[] = [];
  let relay: FaultRelay | undefined;
  const close = async (): Promise<void> => {
    await Promise.all(processes.map((cli) => cli.stop()));
    await relay?.close();
    rmSync(config.dir, { recursive: true, force: true });
  };
  try {
    const server = await startCommonServerProcess(config.serverFile);
    processes.push(server.process);
    if (server.fingerprint === undefined) throw new Error('commonserver printed no certificate fingerprint with TLS on');
    if (options.faultRelay) relay = await startFaultRelay(server.port);
    const client = startGroupClientProcess({
      configFile: config.groupFile(CHAOS_GROUP),
      serverPort: relay?.port ?? server.port,
      link: { fingerprint: server.fingerprint },
    });
    processes.push(client);
    const ports = await waitForGroupActive(client, CHAOS_GROUP, { timeoutMs: 15_000 });
    const tunnel: Tunnel = {
      server: server.process,
      client,
      ports,
      commonPort: server.port,
      fingerprint: server.fingerprint,
      secrets,
      ...(relay ? { relay } : {}),
      close: async () => {
        open.delete(tunnel);
        await close();
      },
    };
    open.add(tunnel);
    return tunnel;
  } catch (error) {
    await close();
    throw error;
  }
}

/** Open file descriptors of a process (sockets included), or NaN once it is gone. */
export async function fdCount(pid: number): Promise<number> {
  try {
    return (await readdir(`/proc/${pid}/fd`)).length;
  } catch {
    return Number.NaN;
  }
}
