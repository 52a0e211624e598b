import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeLaunchOf } from '../../src/cli/node-flags.js';
import { logSink } from './artifacts.js';
import { linkArgs, type ServerLink } from './link.js';
import { DIST_ROOT } from './paths.js';

export const COMMONSERVER_BIN = join(DIST_ROOT, 'src', 'cli', 'commonserver.js');
export const GROUPCLIENT_BIN = join(DIST_ROOT, 'src', 'cli', 'groupclient.js');

/** A CLI started as a real child process, its output collected line by line. */
export class CliProcess {
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  private readonly child: ChildProcess;
  private readonly waiters = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  /**
   * `nodeArgs` go to node itself (e.g. --cpu-prof, which NODE_OPTIONS refuses), after the
   * flags of `bin`'s own `#!` line, so that it runs as an installed binary does. With
   * `program`, `bin` is that executable itself (a real program behind the tunnel: dnsmasq; an
   * installed binary, found through its own `#!/usr/bin/env node` line). `cwd`: where it runs.
   */
  constructor(
    bin: string,
    args: string[],
    env: NodeJS.ProcessEnv = {},
    nodeArgs: string[] = [],
    { program = false, cwd }: { program?: boolean; cwd?: string } = {},
  ) {
    // Started by node itself, a binary gets what its #! line gives it: flags and environment.
    const launch = program ? { env: {}, flags: [] } : nodeLaunchOf(bin);
    this.child = spawn(program ? bin : process.execPath, program ? args : [...launch.flags, ...nodeArgs, bin, ...args], {
      env: { ...process.env, ...launch.env, ...env },
      ...(cwd !== undefined ? { cwd } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = logSink(bin.replace(/.*[\\/]/, '').replace(/\.js$/, ''));
    log(`$ ${bin} ${args.join(' ')}`);
    this.exited = once(this.child, 'exit').then(([code, signal]) => ({ code, signal }) as { code: number | null; signal: NodeJS.Signals | null });
    collectLines(this.child.stdout!, (line) => {
      log(line);
      this.lines.push(line);
      for (const wake of this.waiters) wake();
    });
    collectLines(this.child.stderr!, (line) => {
      log(line);
      this.stderr.push(line);
      for (const wake of this.waiters) wake();
    });
    void this.exited.then(() => {
      for (const wake of this.waiters) wake();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get output(): string {
    return [...this.lines, ...this.stderr].join('\n');
  }

  /**
   * Resolves with the first line (stdout or stderr, from the start) matching `pattern` that
   * was not already returned for an earlier call with `fromLine`. Fails after `timeoutMs`
   * with everything the process printed.
   */
  waitForLine(pattern: RegExp, { timeoutMs = 10_000, fromLine = 0 } = {}): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const all = [...this.lines.slice(fromLine), ...this.stderr];
        for (const line of all) {
          const match = line.match(pattern);
          if (match) {
            resolve(match);
            return true;
          }
        }
        return false;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`no line matching ${pattern} within ${timeoutMs}ms; output so far:\n${this.output}`));
      }, timeoutMs);
      const wake = (): void => {
        if (check()) {
          clearTimeout(timer);
          this.waiters.delete(wake);
        }
      };
      this.waiters.add(wake);
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGKILL, and resolves once the process is gone. */
  async killHard(): Promise<void> {
    this.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL if it lingers; resolves once the process is gone. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

function collectLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const line of parts) onLine(line);
  });
  stream.on('end', () => {
    if (partial) onLine(partial);
  });
}

/** Every process a test file started, so that `after` stops them all, whatever failed. */
export class ProcessSet {
  private readonly all = new Set<CliProcess>();

  add<T extends CliProcess>(process: T): T {
    this.all.add(process);
    return process;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.all].map((process) => process.stop()));
  }
}

/**
 * Starts `commonserver --config FILE` and waits until it listens; returns it with its port
 * and, when TLS is on, the certificate fingerprint it printed.
 */
export async function startCommonServerProcess(
  configFile: string,
  env: NodeJS.ProcessEnv = {},
  nodeArgs: string[] = [],
  bin = COMMONSERVER_BIN,
): Promise<{ process: CliProcess } & ServerLink> {
  const server = new CliProcess(bin, ['--config', configFile], env, nodeArgs);
  return { process: server, ...(await serverLinkOf(server)) };
}

/**
 * Waits until a commonserver process listens; its port and, when TLS is on, the certificate
 * fingerprint it printed before that line.
 */
export async function serverLinkOf(server: CliProcess): Promise<ServerLink> {
  const match = await server.waitForLine(/commonserver listening on \S+:(\d+)/);
  const fingerprint = server.lines.map((line) => /fingerprint (sha256:[0-9a-f]{64})/.exec(line)?.[1]).find((found) => found !== undefined);
  return { port: Number(match[1]), ...(fingerprint ? { fingerprint } : {}) };
}

interface GroupClientProcessCommon {
  groupsDir?: string;
  configFile?: string;
  group?: string;
  clientId?: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  nodeArgs?: string[];
  /** Another build's groupclient (the bench's baseline); default: this build's. */
  bin?: string;
}

/**
 * The server to reach: `server` (what startCommonServerProcess returns, or `{ ...started, port }`
 * through a relay) pins its fingerprint, or passes `--plaintext` if it printed none. Or a
 * `serverPort` with an explicit `link`: `plaintext`, a pinned fingerprint, or `file` to use
 * only what the group file says.
 */
export type GroupClientProcessOptions = GroupClientProcessCommon &
  ({ server: ServerLink } | { serverPort: number; link: 'plaintext' | { fingerprint: string } | 'file' });

export function startGroupClientProcess(options: GroupClientProcessOptions): CliProcess {
  const port = 'server' in options ? options.server.port : options.serverPort;
  const args = ['--server', `127.0.0.1:${port}`];
  if (options.group !== undefined) args.push('--group', options.group);
  if (options.groupsDir !== undefined) args.push('--groups', options.groupsDir);
  if (options.configFile !== undefined) args.push('--config', options.configFile);
  if (options.clientId !== undefined) args.push('--client-id', options.clientId);
  if ('server' in options) args.push(...linkArgs(options.server));
  else if (options.link === 'plaintext') args.push('--plaintext');
  else if (options.link !== 'file') args.push('--server-fingerprint', options.link.fingerprint);
  args.push(...(options.extraArgs ?? []));
  // A control socket of its own: clients of one group name in tests running side by side
  // would otherwise take the same default path over from each other.
  const env = { XDG_RUNTIME_DIR: mkdtempSync(join(tmpdir(), 'ntp-run-')), ...options.env };
  return new CliProcess(options.bin ?? GROUPCLIENT_BIN, args, env, options.nodeArgs);
}

/**
 * Parses the client's "group X active ...: app → server port N, ..." line into app → port (a
 * vhost app, "web → a.example, b.example on server port N", gets the vhost port).
 */
export function parsePortTable(line: string): Map<string, number> {
  const ports = new Map<string, number>();
  for (const match of line.matchAll(/(\S+) → (?:[^→]*? on )?(?:server port |:)(\d+)/g)) ports.set(match[1]!, Number(match[2]));
  return ports;
}

/**
 * Waits for the groupclient's "group NAME active on ..." line (at or after stdout line
 * `fromLine`) and returns its app → public port table.
 */
export async function waitForGroupActive(client: CliProcess, group: string, { timeoutMs = 10_000, fromLine = 0 } = {}): Promise<Map<string, number>> {
  const match = await client.waitForLine(new RegExp(`group ${group} active on .*`), { timeoutMs, fromLine });
  return parsePortTable(match[0]);
}
