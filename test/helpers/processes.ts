import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const distRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const COMMONSERVER_BIN = join(distRoot, 'src', 'cli', 'commonserver.js');
export const GROUPCLIENT_BIN = join(distRoot, 'src', 'cli', 'groupclient.js');

/** A CLI started as a real child process, its output collected line by line. */
export class CliProcess {
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  private readonly child: ChildProcess;
  private readonly waiters = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  /** `nodeArgs` go to node itself (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  constructor(bin: string, args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []) {
    this.child = spawn(process.execPath, [...nodeArgs, bin, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = once(this.child, 'exit').then(([code, signal]) => ({ code, signal }) as { code: number | null; signal: NodeJS.Signals | null });
    collectLines(this.child.stdout!, (line) => {
      this.lines.push(line);
      for (const wake of this.waiters) wake();
    });
    collectLines(this.child.stderr!, (line) => {
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

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it lingers; resolves once the process is gone. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
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

/** Starts `commonserver --config FILE` and waits until it listens; returns it with its port. */
export async function startCommonServerProcess(configFile: string, env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): Promise<{ process: CliProcess; port: number }> {
  const server = new CliProcess(COMMONSERVER_BIN, ['--config', configFile], env, nodeArgs);
  const match = await server.waitForLine(/commonserver listening on \S+:(\d+)/);
  return { process: server, port: Number(match[1]) };
}

export interface GroupClientProcessOptions {
  groupsDir?: string;
  configFile?: string;
  group?: string;
  serverPort: number;
  clientId?: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  nodeArgs?: string[];
}

export function startGroupClientProcess(options: GroupClientProcessOptions): CliProcess {
  const args = ['--server', `127.0.0.1:${options.serverPort}`];
  if (options.group !== undefined) args.push('--group', options.group);
  if (options.groupsDir !== undefined) args.push('--groups', options.groupsDir);
  if (options.configFile !== undefined) args.push('--config', options.configFile);
  if (options.clientId !== undefined) args.push('--client-id', options.clientId);
  args.push(...(options.extraArgs ?? []));
  return new CliProcess(GROUPCLIENT_BIN, args, options.env, options.nodeArgs);
}

/** Parses the client's "group X active ...: app → server port N, ..." line into app → port. */
export function parsePortTable(line: string): Map<string, number> {
  const ports = new Map<string, number>();
  for (const match of line.matchAll(/(\S+) → (?:server port |:)(\d+)/g)) ports.set(match[1]!, Number(match[2]));
  return ports;
}
