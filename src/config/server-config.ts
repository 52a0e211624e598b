import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { adminSectionSchema } from './admin-config.js';
import { poolsSchema } from './pool-config.js';
import { clusterSectionSchema } from './cluster-config.js';
import { securityConfig, securityShape } from './security-config.js';
import { section } from './sections.js';
import { isIP } from 'node:net';
import { duration, formatDuration, hostPort, logLevel, problem, wholeNumber } from './values.js';
import { vhostSectionSchema } from './vhost-config.js';
import { YamlFile } from './yaml-file.js';

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
  mux: true,
} as const;

const MAX_WORK_CONN_POOL = 256;

/** Where the file is and what it may refer to: the environment and relative paths. */
export interface ServerConfigContext {
  file: string;
  env: NodeJS.ProcessEnv;
}

/** commonserver.yaml. Paths in it are relative to the file. */
export function serverConfigSchema({ file, env }: ServerConfigContext) {
  const base = dirname(file);
  return section({
    bind: hostPort({ allowPortZero: true }).prefault('0.0.0.0:7000').meta({ description: 'The common port: control and work connections' }),
    publicBind: z
      .string(problem('expected an IP address such as 0.0.0.0, 203.0.113.7 or ::'))
      .refine((host) => isIP(host) !== 0, problem('expected an IP address such as 0.0.0.0, 203.0.113.7 or ::'))
      .optional()
      .meta({ description: "The address every app's public port (and pool port) binds to (frp's proxyBindAddr); default: bind's address" }),
    groups: z
      .string(problem('expected a directory path'))
      .prefault('./groups')
      .transform((dir) => resolve(base, dir))
      .meta({ description: 'Directory of group files: the readyGroup registry' }),
    heartbeat: section({
      interval: duration.default(SERVER_DEFAULTS.heartbeatIntervalMs),
      timeout: duration.default(SERVER_DEFAULTS.heartbeatTimeoutMs).meta({ description: 'A client silent this long loses its group' }),
    }).prefault({}),
    pairingTimeout: duration
      .default(SERVER_DEFAULTS.pairingTimeoutMs)
      .meta({ description: 'How long a user conn waits for its work conn before it is closed' }),
    handshakeTimeout: duration
      .default(SERVER_DEFAULTS.handshakeTimeoutMs)
      .meta({ description: 'How long a new conn on the common port may take to log in or join' }),
    workConnPool: wholeNumber(0, MAX_WORK_CONN_POOL, `expected a whole number of work conns from 0 (no pool) to ${MAX_WORK_CONN_POOL}`)
      .default(SERVER_DEFAULTS.workConnPool)
      .meta({ description: "Work conns each client keeps open ahead of users (frp's poolCount); 0 disables the pool" }),
    mux: z.boolean(problem('expected true or false')).default(SERVER_DEFAULTS.mux).meta({
      description:
        "Carry each group's TCP users as streams of one work conn (frp's tcpMux), when its client offers it; false: a work conn per user at a time, from the pool",
    }),
    pools: poolsSchema.default({}),
    // `admin:` with nothing under it turns the admin on with its defaults.
    admin: z.preprocess((value) => value ?? {}, adminSectionSchema(env)).optional(),
    vhost: vhostSectionSchema().optional(),
    logLevel: logLevel.optional(),
    cluster: clusterSectionSchema(base, env).optional(),
    ...securityShape(base),
  })
    .meta({ title: 'commonserver config', description: 'The commonserver: one public common port for every group' })
    .transform(
      (
        {
          bind,
          publicBind,
          groups,
          heartbeat,
          pairingTimeout,
          handshakeTimeout,
          workConnPool,
          mux,
          pools,
          admin,
          vhost,
          logLevel: level,
          cluster,
          ...security
        },
        ctx,
      ) => {
        if (heartbeat.interval < 50) ctx.addIssue({ code: 'custom', path: ['heartbeat', 'interval'], message: 'must be at least 50ms' });
        if (heartbeat.timeout <= heartbeat.interval) {
          ctx.addIssue({ code: 'custom', path: ['heartbeat', 'timeout'], message: `must be longer than the interval (${formatDuration(heartbeat.interval)})` });
        }
        return Object.freeze({
          /** The common port: control and work connections. */
          bind,
          /** The address public app and pool ports bind to; bind's address when unset. */
          ...(publicBind === undefined ? {} : { publicBind }),
          /** Absolute path of the groups directory (the readyGroup registry). */
          groupsDir: groups,
          heartbeatIntervalMs: heartbeat.interval,
          heartbeatTimeoutMs: heartbeat.timeout,
          pairingTimeoutMs: pairingTimeout,
          handshakeTimeoutMs: handshakeTimeout,
          workConnPool,
          /** TCP users on streams of one mux conn per session, when the client offers it. */
          mux,
          /** Shared pools: their public port, how users are spread, who may join (`pools.NAME`). */
          pools,
          ...securityConfig(security, base, ctx),
          file,
          /** The admin API and dashboard; off unless the file has an `admin:` section. */
          ...(admin ? { admin } : {}),
          /** HTTP and HTTPS virtual hosts; off unless the file has a `vhost:` section. */
          ...(vhost ? { vhost } : {}),
          /** What the commonserver prints (`--log-level` overrides it); info when unset. */
          ...(level ? { logLevel: level } : {}),
          /** One node of a cluster sharing its registry through etcd; off unless the file has a `cluster:` section. */
          ...(cluster ? { cluster } : {}),
        });
      },
    );
}

export type ServerConfig = z.output<ReturnType<typeof serverConfigSchema>>;

export function loadServerConfig(file: string, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const yaml = YamlFile.read(file);
  return yaml.parse(serverConfigSchema({ file, env }), yaml.root() ?? {});
}
