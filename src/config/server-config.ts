import { dirname, resolve } from 'node:path';
import { parseAdminSection, type AdminConfig } from './admin-config.js';
import { parseSecurityConfig, SECURITY_KEYS, type SecurityConfig } from './security-config.js';
import { parseDuration, parseHostPort, type HostPort } from './values.js';
import { parseVhostSection, type VhostConfig } from './vhost-config.js';
import { YamlFile } from './yaml-file.js';

export interface ServerConfig extends SecurityConfig {
  /** The common port: control and work connections. */
  readonly bind: HostPort;
  /** Absolute path of the groups directory (the readyGroup registry). */
  readonly groupsDir: string;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  /** How long a user conn waits for its work conn before it is closed. */
  readonly pairingTimeoutMs: number;
  /** How long a new conn on the common port may take to log in or join. */
  readonly handshakeTimeoutMs: number;
  /** Work conns each client keeps open ahead of users (frp's poolCount); 0 disables the pool. */
  readonly workConnPool: number;
  readonly file?: string;
  /** The admin API and dashboard; off unless the file has an `admin:` section. */
  readonly admin?: AdminConfig;
  /** HTTP and HTTPS virtual hosts; off unless the file has a `vhost:` section. */
  readonly vhost?: VhostConfig;
}

export const SERVER_DEFAULTS = {
  heartbeatIntervalMs: 10_000,
  heartbeatTimeoutMs: 30_000,
  pairingTimeoutMs: 10_000,
  handshakeTimeoutMs: 5_000,
  // Each refill is a burst of TLS handshakes on both ends that delays the users arriving
  // meanwhile; 16 (refilled 8 at a time) makes those bursts half as frequent as 8 did: the
  // bench's setup p50 with TLS went from ~2.6x the bare relay to ~1.2-1.5x. About 1 MB of
  // idle TLS work conns per group on each end.
  workConnPool: 16,
} as const;

const MAX_WORK_CONN_POOL = 256;

const SERVER_KEYS = ['bind', 'groups', 'heartbeat', 'pairingTimeout', 'handshakeTimeout', 'workConnPool', 'admin', 'vhost', ...SECURITY_KEYS] as const;

export function loadServerConfig(file: string, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const yaml = YamlFile.read(file);
  const root = yaml.mapAt([], yaml.root() ?? {});
  yaml.onlyKeys([], root, SERVER_KEYS);

  const bind = yaml.expect(['bind'], parseHostPort(root.bind ?? '0.0.0.0:7000', { allowPortZero: true }));
  if (root.groups !== undefined && typeof root.groups !== 'string') {
    throw yaml.error(['groups'], 'expected a directory path');
  }
  const groupsDir = resolve(dirname(file), (root.groups as string | undefined) ?? './groups');

  let heartbeatIntervalMs: number = SERVER_DEFAULTS.heartbeatIntervalMs;
  let heartbeatTimeoutMs: number = SERVER_DEFAULTS.heartbeatTimeoutMs;
  if (root.heartbeat !== undefined) {
    const heartbeat = yaml.mapAt(['heartbeat'], root.heartbeat);
    yaml.onlyKeys(['heartbeat'], heartbeat, ['interval', 'timeout']);
    if (heartbeat.interval !== undefined) heartbeatIntervalMs = yaml.expect(['heartbeat', 'interval'], parseDuration(heartbeat.interval));
    if (heartbeat.timeout !== undefined) heartbeatTimeoutMs = yaml.expect(['heartbeat', 'timeout'], parseDuration(heartbeat.timeout));
  }
  if (heartbeatIntervalMs < 50) throw yaml.error(['heartbeat', 'interval'], 'must be at least 50ms');
  if (heartbeatTimeoutMs <= heartbeatIntervalMs) {
    throw yaml.error(['heartbeat', 'timeout'], `must be longer than the interval (${heartbeatIntervalMs}ms)`);
  }
  const pairingTimeoutMs = root.pairingTimeout === undefined ? SERVER_DEFAULTS.pairingTimeoutMs : yaml.expect(['pairingTimeout'], parseDuration(root.pairingTimeout));
  const handshakeTimeoutMs = root.handshakeTimeout === undefined ? SERVER_DEFAULTS.handshakeTimeoutMs : yaml.expect(['handshakeTimeout'], parseDuration(root.handshakeTimeout));

  const workConnPool = root.workConnPool ?? SERVER_DEFAULTS.workConnPool;
  if (typeof workConnPool !== 'number' || !Number.isInteger(workConnPool) || workConnPool < 0 || workConnPool > MAX_WORK_CONN_POOL) {
    throw yaml.error(['workConnPool'], `expected a whole number of work conns from 0 (no pool) to ${MAX_WORK_CONN_POOL}`);
  }

  const security = parseSecurityConfig(yaml, root);
  const admin = 'admin' in root ? parseAdminSection(yaml, root.admin, env) : undefined;
  const vhost = root.vhost === undefined ? undefined : parseVhostSection(yaml, root.vhost);
  return Object.freeze({
    bind,
    groupsDir,
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    pairingTimeoutMs,
    handshakeTimeoutMs,
    workConnPool,
    ...security,
    file,
    ...(admin ? { admin } : {}),
    ...(vhost ? { vhost } : {}),
  });
}
