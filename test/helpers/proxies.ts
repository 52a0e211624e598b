import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSelfSigned } from '../../src/server/index.js';
import { unusedPort } from './apps.js';
import { acceptsConnections, runNginx, startChild, type ChildProgram } from './programs.js';

/*
 * Real proxies from Debian between a groupclient and the common port, each this test's own
 * child with its config in a temp dir. Each one's outgoing conns leave from PROXY_SIDE, an
 * address of the loopback net that the client never uses: the server seeing every conn come
 * from there (`peersOf`) proves they went through the proxy.
 */

export const TINYPROXY = '/usr/bin/tinyproxy';
export const MICROSOCKS = '/usr/bin/microsocks';
/** Where the proxies' conns to the server come from (Linux answers on all of 127.0.0.0/8). */
export const PROXY_SIDE = '127.0.0.2';

export interface RunningProxy extends ChildProgram {
  port: number;
  /** The program's log so far. */
  log(): string;
  /** The same program with the same config on the same port, once this one is gone (killed): a supervisor's restart. */
  again(): Promise<RunningProxy>;
}

/** Starts `launch()` and waits until `port` accepts; `again()` does the same once more. */
async function listening(port: number, launch: () => ChildProgram, log: () => string): Promise<RunningProxy> {
  const program = launch();
  await acceptsConnections('127.0.0.1', port, program.child);
  return { ...program, port, log, again: () => listening(port, launch, log) };
}

function logOf(file: string): () => string {
  return () => (existsSync(file) ? readFileSync(file, 'utf8') : '');
}

/** tinyproxy with Basic credentials, allowing CONNECT to `connectPort` only (others get a 403). */
export async function startTinyproxy(connectPort: number, user: string, password: string): Promise<RunningProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-tinyproxy-'));
  const port = await unusedPort();
  const config = join(dir, 'tinyproxy.conf');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      `Bind ${PROXY_SIDE}`,
      'Timeout 600',
      `LogFile "${dir}/tinyproxy.log"`,
      'LogLevel Connect',
      `PidFile "${dir}/tinyproxy.pid"`,
      'MaxClients 50',
      'Allow 127.0.0.1',
      `BasicAuth ${user} ${password}`,
      `ConnectPort ${connectPort}`,
      '',
    ].join('\n'),
  );
  return listening(
    port,
    () => {
      // A killed tinyproxy leaves its pid file, which the next one would refuse to overwrite.
      rmSync(join(dir, 'tinyproxy.pid'), { force: true });
      return startChild(TINYPROXY, ['-d', '-c', config], 'tinyproxy');
    },
    logOf(join(dir, 'tinyproxy.log')),
  );
}

/** microsocks (SOCKS5) requiring `user` / `password`. */
export async function startMicrosocks(user: string, password: string): Promise<RunningProxy> {
  const port = await unusedPort();
  return listening(
    port,
    () => startChild(MICROSOCKS, ['-i', '127.0.0.1', '-p', String(port), '-u', user, '-P', password, '-b', PROXY_SIDE], 'microsocks'),
    () => '',
  );
}

/**
 * nginx terminating TLS (its own self-signed certificate, `certFile`, which is not the
 * commonserver's) and passing WebSocket upgrades on `path` to the common port, as a reverse
 * proxy on port 443 would (a free port here: 443 needs privileges and is one per machine).
 */
export async function startNginxWebSocketProxy(serverPort: number, path: string): Promise<RunningProxy & { certFile: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-nginx-wss-'));
  const certFile = join(dir, 'nginx-cert.pem');
  const keyFile = join(dir, 'nginx-key.pem');
  createSelfSigned(certFile, keyFile);
  const port = await unusedPort();
  const http = `  access_log ${dir}/access.log;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
    location = ${path} {
      proxy_pass http://127.0.0.1:${serverPort};
      proxy_bind ${PROXY_SIDE};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
    location / { return 404; }
  }`;
  // Restarted with the same certificate: the one the client was told to trust.
  return { ...(await listening(port, () => runNginx(dir, http, 'nginx-wss'), logOf(join(dir, 'access.log')))), certFile };
}

/** Established TCP conns to or from `port` on this machine: each line's local and peer address (from ss). */
function established(filter: string): { local: string; peer: string; process: string }[] {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', filter], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [, , local = '', peer = '', ...rest] = line.trim().split(/\s+/);
      return { local, peer, process: rest.join(' ') };
    });
}

/** The peer addresses (without ports) of the conns the common port on `port` holds. */
export function peersOf(port: number): string[] {
  return established(`( sport = :${port} )`).map(({ peer }) => peer.replace(/:\d+$/, ''));
}

/** Whether process `pid` holds a TCP conn to `port` (a direct dial of the common port). */
export function dialsDirectly(pid: number, port: number): boolean {
  return established(`( dport = :${port} )`).some(({ process }) => process.includes(`pid=${pid},`));
}
