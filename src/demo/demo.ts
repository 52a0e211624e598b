import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeLaunchOf } from '../cli/node-flags.js';
import { bannerApp, echoApp, httpApp, type SampleApp } from './sample-apps.js';

/**
 * `npm run demo`: a commonserver, two groupclients (office-a, office-b) and sample local apps,
 * all on loopback. Proves one round trip through every app, prints the public ports, and runs
 * until Ctrl-C.
 */
const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli');
const children: ChildProcess[] = [];

function start(
  label: string,
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): { child: ChildProcess; line(pattern: RegExp): Promise<RegExpMatchArray> } {
  const bin = join(cli, script);
  // With the flags and environment of the binary's `#!` line: the demo runs the binaries as users do.
  const launch = nodeLaunchOf(bin);
  const child = spawn(process.execPath, [...launch.flags, bin, ...args], { env: { ...process.env, ...launch.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const seen: string[] = [];
  const waiting = new Set<() => void>();
  const onText = (text: string): void => {
    for (const line of text.split('\n').filter(Boolean)) {
      process.stdout.write(`[${label}] ${line}\n`);
      seen.push(line);
    }
    for (const wake of waiting) wake();
  };
  child.stdout!.setEncoding('utf8').on('data', onText);
  child.stderr!.setEncoding('utf8').on('data', onText);
  child.once('exit', (code) => {
    if (!stopping) {
      process.stdout.write(`[${label}] exited with code ${code}\n`);
      void shutdown(1);
    }
  });
  const line = (pattern: RegExp): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label}: no line matching ${pattern}`)), 15_000);
      const check = (): void => {
        for (const text of seen) {
          const match = text.match(pattern);
          if (match) {
            clearTimeout(timer);
            waiting.delete(check);
            resolve(match);
            return;
          }
        }
      };
      waiting.add(check);
      check();
    });
  return { child, line };
}

/** Connects, optionally sends, and reads until `expected` bytes arrived. */
function roundTrip(port: number, send: string, expectedLength: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer on port ${port}`));
    }, 5000);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (received.length >= expectedLength) {
        clearTimeout(timer);
        socket.destroy();
        resolve(received);
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    if (send) socket.write(send);
  });
}

let stopping = false;
let workDir = '';
let apps: SampleApp[] = [];

async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(children.map((child) => (child.exitCode !== null ? undefined : new Promise((r) => child.once('exit', r)))));
  for (const app of apps) app.server.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  process.exit(code);
}

async function main(): Promise<void> {
  process.once('SIGINT', () => void shutdown(0));
  process.once('SIGTERM', () => void shutdown(0));

  const groups = {
    'office-a': [await bannerApp('ssh', 'SSH-2.0-DemoServer\r\n'), await httpApp('web', 'hello from office-a/web\n'), await echoApp('echo')],
    'office-b': [await echoApp('db'), await bannerApp('smtp', '220 office-b ESMTP demo\r\n'), await httpApp('status', 'office-b is fine\n')],
  };
  apps = Object.values(groups).flat();

  workDir = mkdtempSync(join(tmpdir(), 'ntp-demo-'));
  mkdirSync(join(workDir, 'groups'));
  // TLS as in production: the server makes its key and certificate on first start, and each
  // client pins the fingerprint the server prints.
  writeFileSync(
    join(workDir, 'commonserver.yaml'),
    'bind: 127.0.0.1:0\ngroups: ./groups\nheartbeat: { interval: 5s, timeout: 15s }\ntls: { cert: ./tls/commonserver.crt, key: ./tls/commonserver.key }\n',
  );
  const env: NodeJS.ProcessEnv = {};
  for (const [group, groupApps] of Object.entries(groups)) {
    const variable = `${group.toUpperCase().replace('-', '_')}_SECRET`;
    env[variable] = randomBytes(24).toString('base64url');
    const lines = groupApps.map((app) => `  - { name: ${app.name}, local: 127.0.0.1:${app.port}, remotePort: 0 }`);
    writeFileSync(join(workDir, 'groups', `${group}.yaml`), `name: ${group}\nsecret: \${${variable}}\napps:\n${lines.join('\n')}\n`);
  }

  const server = start('commonserver', 'commonserver.js', ['--config', join(workDir, 'commonserver.yaml')], env);
  const fingerprint = (await server.line(/certificate fingerprint (sha256:[0-9a-f:]+)/i))[1]!;
  const commonPort = (await server.line(/listening on \S+:(\d+)/))[1]!;
  const publicPorts = new Map<string, Map<string, number>>();
  for (const group of Object.keys(groups)) {
    const client = start(
      group,
      'groupclient.js',
      ['--group', group, '--groups', join(workDir, 'groups'), '--server', `127.0.0.1:${commonPort}`, '--server-fingerprint', fingerprint],
      env,
    );
    const active = (await client.line(/active on .*/))[0];
    publicPorts.set(group, new Map([...active.matchAll(/(\S+) → server port (\d+)/g)].map((m) => [m[1]!, Number(m[2])])));
  }

  console.log('\nRound trip through every app:');
  for (const [group, groupApps] of Object.entries(groups)) {
    for (const app of groupApps) {
      const port = publicPorts.get(group)!.get(app.name)!;
      const probe =
        app.describe === 'HTTP'
          ? (await httpBody(port)).trim()
          : app.describe === 'echo'
            ? await roundTrip(port, 'ping through the tunnel', 'ping through the tunnel'.length)
            : (await roundTrip(port, '', 10)).trim();
      console.log(`  ${group}/${app.name.padEnd(6)} 127.0.0.1:${port}  ${app.describe.padEnd(16)} → ${JSON.stringify(probe)}`);
    }
  }
  console.log(
    `\nAll apps answered, over TLS pinned to ${fingerprint.slice(0, 23)}….\nTry one yourself, e.g. \`nc 127.0.0.1 ${publicPorts.get('office-a')!.get('ssh')}\`. Ctrl-C stops the demo.`,
  );
}

function httpBody(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve(text.split('\r\n\r\n')[1] ?? ''));
    socket.on('error', reject);
    socket.write('GET / HTTP/1.0\r\nHost: demo\r\n\r\n');
  });
}

main().catch((error: unknown) => {
  console.error(`demo failed: ${(error as Error).message}`);
  void shutdown(1);
});
