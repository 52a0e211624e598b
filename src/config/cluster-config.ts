import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isGroupName, GROUP_NAME_RULE } from './group-file.js';
import { Secret } from './secret.js';
import { parseDuration } from './values.js';
import type { YamlFile } from './yaml-file.js';

/**
 * The `cluster:` section of commonserver.yaml: this server is one node of a cluster whose
 * registry (readyGroup) and activations (inUseGroup) live in etcd. Absent: a single server
 * whose groups directory is the registry, and nothing of etcd is loaded.
 */
export interface ClusterConfig {
  /** etcd client URLs (http:// or https://). */
  readonly etcd: readonly string[];
  /** This node's name, unique in the cluster. */
  readonly node: string;
  /** The host clients and users reach this node at (shown by every node's admin API). */
  readonly advertise: string;
  /** Every key of the cluster lives under it. */
  readonly prefix: string;
  /** The etcd lease that holds this node's groups; a node that cannot renew it drops them. */
  readonly leaseTtlMs: number;
  /** TLS to etcd: a CA to verify it, and a client certificate if etcd asks for one. */
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  /** etcd authentication (user and password; `${VAR}` reads the password from the environment). */
  readonly auth?: { readonly user: string; readonly password: Secret };
}

export const CLUSTER_DEFAULTS = { prefix: '/ntp', leaseTtlMs: 10_000 } as const;
/** Below this the keepalives (six per TTL) would crowd etcd and the event loop for no gain. */
const MIN_LEASE_TTL_MS = 2_000;
const CLUSTER_KEYS = ['etcd', 'node', 'advertise', 'prefix', 'leaseTtl', 'tls', 'user', 'password'] as const;

export function parseClusterSection(yaml: YamlFile, raw: unknown, env: NodeJS.ProcessEnv): ClusterConfig {
  const section = yaml.mapAt(['cluster'], raw);
  yaml.onlyKeys(['cluster'], section, CLUSTER_KEYS);
  const endpoints = Array.isArray(section.etcd) ? section.etcd : [section.etcd];
  if (endpoints.length === 0 || !endpoints.every((url) => typeof url === 'string' && /^https?:\/\/[^/\s]+\/?$/.test(url))) {
    throw yaml.error(['cluster', 'etcd'], 'expected a list of etcd client URLs such as ["http://10.0.0.5:2379"]');
  }
  if (typeof section.node !== 'string' || !isGroupName(section.node)) throw yaml.error(['cluster', 'node'], `expected this node's name: ${GROUP_NAME_RULE}`);
  if (typeof section.advertise !== 'string' || !/^[A-Za-z0-9.:\-[\]]+$/.test(section.advertise)) {
    throw yaml.error(['cluster', 'advertise'], 'expected the host name or address clients and users reach this node at');
  }
  const prefix = section.prefix ?? CLUSTER_DEFAULTS.prefix;
  if (typeof prefix !== 'string' || !/^\/[A-Za-z0-9_.\-/]*[^/]$/.test(prefix)) throw yaml.error(['cluster', 'prefix'], 'expected a key prefix such as /ntp (starts with "/", no trailing "/")');
  const leaseTtlMs = section.leaseTtl === undefined ? CLUSTER_DEFAULTS.leaseTtlMs : yaml.expect(['cluster', 'leaseTtl'], parseDuration(section.leaseTtl));
  if (leaseTtlMs < MIN_LEASE_TTL_MS || leaseTtlMs % 1000 !== 0) throw yaml.error(['cluster', 'leaseTtl'], `expected whole seconds, at least ${MIN_LEASE_TTL_MS / 1000}s (etcd counts leases in seconds)`);

  const config: { -readonly [K in keyof ClusterConfig]: ClusterConfig[K] } = {
    etcd: Object.freeze(endpoints.map((url: string) => url.replace(/\/$/, ''))),
    node: section.node,
    advertise: section.advertise,
    prefix,
    leaseTtlMs,
  };
  if (section.tls !== undefined) {
    const tls = yaml.mapAt(['cluster', 'tls'], section.tls);
    yaml.onlyKeys(['cluster', 'tls'], tls, ['ca', 'cert', 'key']);
    const read = (key: 'ca' | 'cert' | 'key'): Buffer | undefined => {
      const value = tls[key];
      if (value === undefined) return undefined;
      if (typeof value !== 'string' || value === '') throw yaml.error(['cluster', 'tls', key], 'expected a file path');
      try {
        return readFileSync(resolve(dirname(yaml.file), value));
      } catch (error) {
        throw yaml.error(['cluster', 'tls', key], `cannot read ${value}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
    };
    const [ca, cert, key] = [read('ca'), read('cert'), read('key')];
    if ((cert === undefined) !== (key === undefined)) throw yaml.error(['cluster', 'tls', cert ? 'key' : 'cert'], 'cert and key go together');
    config.tls = { ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) };
  }
  if ((section.user === undefined) !== (section.password === undefined)) throw yaml.error(['cluster', section.user === undefined ? 'user' : 'password'], 'user and password go together');
  if (section.user !== undefined) {
    if (typeof section.user !== 'string' || section.user === '') throw yaml.error(['cluster', 'user'], 'expected an etcd user name');
    config.auth = { user: section.user, password: new Secret(expandPassword(yaml, section.password, env)) };
  }
  return Object.freeze(config);
}

/** The etcd password, a literal or `${VAR}`; etcd sets its own rules for it, so no length rule here. */
function expandPassword(yaml: YamlFile, raw: unknown, env: NodeJS.ProcessEnv): string {
  if (typeof raw !== 'string' || raw === '') throw yaml.error(['cluster', 'password'], 'expected a password (a literal, or ${VAR} to read it from the environment)');
  return raw.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, variable: string) => {
    const found = env[variable];
    if (found === undefined || found === '') throw yaml.error(['cluster', 'password'], `environment variable ${variable} is not set`);
    return found;
  });
}
