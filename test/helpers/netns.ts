import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeLaunchOf } from '../../src/cli/node-flags.js';
import { CliProcess, GROUPCLIENT_BIN } from './processes.js';

/**
 * A groupclient in a network namespace of its own (`unshare -n`), where loopback holds only
 * what `bridges` carry in: each bridge listens on 127.0.0.1:`port` inside and reaches
 * 127.0.0.1:`to` outside through a unix socket (socat on both sides; the file system is
 * shared, the network is not). Nothing else is reachable from inside: a client given the
 * common port's address can only get there through a bridged proxy.
 */
export interface Bridge {
  port: number;
  to: number;
}

/** Why a network namespace cannot be made here (no unshare, ip or socat, or no privilege), or false. */
export function netnsUnavailable(): false | string {
  for (const program of ['unshare', 'ip', 'socat']) {
    if (spawnSync('sh', ['-c', `command -v ${program}`]).status !== 0) return `${program} is absent`;
  }
  const probe = spawnSync('unshare', ['-n', 'ip', 'link', 'set', 'lo', 'up']);
  return probe.status === 0 ? false : `unshare -n is refused here: ${probe.stderr.toString().trim()}`;
}

export class NamespacedClients {
  private readonly dir = mkdtempSync(join(tmpdir(), 'ntp-netns-'));
  private count = 0;

  /** Starts `groupclient ARGS` inside a new namespace with these bridges (and the outside halves). */
  start(args: string[], bridges: Bridge[], env: NodeJS.ProcessEnv = {}): CliProcess {
    const id = ++this.count;
    const socket = (bridge: Bridge): string => join(this.dir, `c${id}-${bridge.port}.sock`);
    for (const bridge of bridges) {
      // Outside: the unix socket to the real port. Started before the client so that it is there.
      execFileSync('sh', ['-c', `socat UNIX-LISTEN:${socket(bridge)},fork TCP:127.0.0.1:${bridge.to} >/dev/null 2>&1 &`]);
    }
    const inside = bridges.map((bridge) => `socat TCP-LISTEN:${bridge.port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${socket(bridge)} &`);
    const launch = nodeLaunchOf(GROUPCLIENT_BIN);
    const assignments = Object.entries(launch.env).map(([name, value]) => `${name}=${quote(value)}`);
    const node = ['env', ...assignments, ...[process.execPath, ...launch.flags, GROUPCLIENT_BIN, ...args].map(quote)].join(' ');
    // The bridges listen before the client starts; exec keeps the client's pid the process's.
    const script = ['ip link set lo up', ...inside, ...bridges.map((bridge) => waitListening(bridge.port)), `exec ${node}`].join('\n');
    return new CliProcess('unshare', ['-n', 'sh', '-c', script], { XDG_RUNTIME_DIR: mkdtempSync(join(tmpdir(), 'ntp-run-')), ...env }, [], { program: true });
  }

  /** Ends every bridge half started for these clients (they outlive the client otherwise). */
  stop(): void {
    spawnSync('pkill', ['-f', this.dir]);
  }
}

function waitListening(port: number): string {
  return `for i in $(seq 1 50); do ss -ltn | grep -q '127.0.0.1:${port} ' && break; sleep 0.1; done`;
}

function quote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
