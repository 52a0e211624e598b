import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeConfigDir, randomSecret } from '../test/helpers/configs.js';
import { startCommonServerProcess, startGroupClientProcess, waitForGroupActive, type CliProcess } from '../test/helpers/processes.js';
import { writeVhostGroup } from '../test/helpers/vhost.js';
import { runTool, track } from './proc.js';

/** Where the HTTP requests go: straight to the app, through an app's own TCP port, or by name through the vhost. */
export type HttpPath = 'direct' | 'tcp' | 'vhost';
export const HTTP_PATHS: readonly HttpPath[] = ['direct', 'tcp', 'vhost'];

export interface HttpFigures {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

const here = dirname(fileURLToPath(import.meta.url));
const autocannonBin = join(dirname(createRequire(import.meta.url).resolve('autocannon/package.json')), 'autocannon.js');

/** The app process, and the tunnel (TLS, the default link) with the same app as a TCP app and as an HTTP vhost app. */
export async function openHttpPaths(): Promise<{ ports: Record<HttpPath, number>; close(): Promise<void> }> {
  const app = track(spawn(process.execPath, [join(here, 'http-app.js')], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const appPort = await new Promise<number>((resolve, reject) => {
    let out = '';
    app.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening (\d+)/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    app.once('exit', () => reject(new Error('the bench web app exited')));
  });
  const config = makeConfigDir([], { heartbeatInterval: '5s', heartbeatTimeout: '20s', certificate: 'on-start', extra: { vhost: { http: '127.0.0.1:0' } } });
  writeVhostGroup(
    config,
    'bench',
    randomSecret(),
    [{ name: 'web', type: 'http', localPort: appPort, domains: ['web.bench.test'] }],
    [{ name: 'tcp', localPort: appPort }],
  );
  const processes: CliProcess[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(processes.map((p) => p.stop()));
    app.kill('SIGKILL');
    rmSync(config.dir, { recursive: true, force: true });
  };
  try {
    const server = await startCommonServerProcess(config.serverFile);
    processes.push(server.process);
    const client = startGroupClientProcess({ configFile: config.groupFile('bench'), server });
    processes.push(client);
    const ports = await waitForGroupActive(client, 'bench');
    return { ports: { direct: appPort, tcp: ports.get('tcp')!, vhost: ports.get('web')! }, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** autocannon (its own process) against one path: keep-alive conns, the vhost name in Host. */
export async function httpLoad(port: number, connections: number, seconds: number): Promise<HttpFigures> {
  const out = await runTool(
    process.execPath,
    [
      autocannonBin,
      '--json',
      '--connections',
      String(connections),
      '--duration',
      String(seconds),
      '--headers',
      'host=web.bench.test',
      `http://127.0.0.1:${port}/`,
    ],
    (seconds + 30) * 1000,
  );
  const result = JSON.parse(out.slice(out.indexOf('{'))) as {
    requests: { average: number };
    latency: { p50: number; p99: number };
    errors: number;
    non2xx: number;
    timeouts: number;
  };
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.non2xx + result.timeouts,
  };
}
