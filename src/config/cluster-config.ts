import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { GROUP_NAME_RULE, isGroupName } from './group-name.js';
import { Secret } from './secret.js';
import { section } from './sections.js';
import { duration, problem } from './values.js';

export const CLUSTER_DEFAULTS = { prefix: '/ntp', leaseTtlMs: 10_000 } as const;
/** Below this the renewals (six per TTL) would crowd etcd and the event loop for no gain. */
const MIN_LEASE_TTL_MS = 2_000;
const ENDPOINT_EXPECTED = 'expected a list of etcd client URLs such as ["http://10.0.0.5:2379"]';
const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

const endpoint = z
  .string(problem(ENDPOINT_EXPECTED))
  .regex(/^https?:\/\/[^/\s]+\/?$/, problem(ENDPOINT_EXPECTED))
  .transform((url) => url.replace(/\/$/, ''));

/** A file named relative to commonserver.yaml, read now (a missing file names its field). */
function fileContent(base: string) {
  return z
    .string(problem('expected a file path'))
    .min(1, problem('expected a file path'))
    .transform((path, ctx) => {
      try {
        return readFileSync(resolve(base, path));
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` });
        return z.NEVER;
      }
    });
}

/** The etcd password, a literal or `${VAR}`; etcd sets its own rules for it, so no length rule here. */
function etcdPassword(env: NodeJS.ProcessEnv) {
  const expected = 'expected a password (a literal, or ${VAR} to read it from the environment)';
  return z
    .string(problem(expected))
    .min(1, problem(expected))
    .transform((raw, ctx) => {
      let unset: string | undefined;
      const value = raw.replace(VARIABLE, (_, variable: string) => {
        const found = env[variable];
        if (found === undefined || found === '') unset ??= variable;
        return found ?? '';
      });
      if (unset !== undefined) {
        ctx.addIssue({ code: 'custom', message: `environment variable ${unset} is not set` });
        return z.NEVER;
      }
      return new Secret(value);
    });
}

/**
 * The `cluster:` section of commonserver.yaml: this server is one node of a cluster whose
 * registry (readyGroup) and activations (inUseGroup) live in etcd. Absent: a single server
 * whose groups directory is the registry, and nothing of etcd is loaded.
 */
export function clusterSectionSchema(base: string, env: NodeJS.ProcessEnv) {
  return section({
    etcd: z
      .array(endpoint, problem(ENDPOINT_EXPECTED))
      .min(1, ENDPOINT_EXPECTED)
      .meta({ description: 'etcd client URLs (http:// or https://)', examples: [['http://10.0.0.5:2379']] }),
    node: z
      .string(problem(`expected this node's name: ${GROUP_NAME_RULE}`))
      .refine(isGroupName, problem(`expected this node's name: ${GROUP_NAME_RULE}`))
      .meta({ description: "This node's name, unique in the cluster", examples: ['node-a'] }),
    advertise: z
      .string(problem('expected the host name or address clients and users reach this node at'))
      .regex(/^[A-Za-z0-9.:\-[\]]+$/, problem('expected the host name or address clients and users reach this node at'))
      .meta({ description: 'The host clients and users reach this node at (every node shows it)', examples: ['203.0.113.7'] }),
    prefix: z
      .string(problem('expected a key prefix such as /ntp (starts with "/", no trailing "/")'))
      .regex(/^\/[A-Za-z0-9_.\-/]*[^/]$/, problem('expected a key prefix such as /ntp (starts with "/", no trailing "/")'))
      .default(CLUSTER_DEFAULTS.prefix)
      .meta({ description: 'Every key of the cluster lives under it' }),
    leaseTtl: duration
      .refine((ms) => ms >= MIN_LEASE_TTL_MS && ms % 1000 === 0, `expected whole seconds, at least ${MIN_LEASE_TTL_MS / 1000}s (etcd counts leases in seconds)`)
      .default(CLUSTER_DEFAULTS.leaseTtlMs)
      .meta({ description: "The etcd lease that holds this node's groups; a node that cannot renew it for 2/3 of it drops them" }),
    tls: section({
      ca: fileContent(base).optional().meta({ description: "A CA file that signs etcd's certificate" }),
      cert: fileContent(base).optional().meta({ description: 'Client certificate, if etcd checks clients' }),
      key: fileContent(base).optional(),
    })
      .optional()
      .meta({ description: 'TLS to etcd (paths relative to this file)' }),
    user: z.string(problem('expected an etcd user name')).min(1).optional().meta({ description: 'etcd authentication: user' }),
    password: etcdPassword(env).optional().meta({ description: 'etcd authentication: password, a literal or ${VAR}' }),
  })
    .meta({ description: 'One node of a cluster sharing its registry through etcd; off unless this section exists' })
    .transform(({ etcd, node, advertise, prefix, leaseTtl, tls, user, password }, ctx) => {
      if (tls !== undefined && (tls.cert === undefined) !== (tls.key === undefined))
        ctx.addIssue({ code: 'custom', path: ['tls', tls.cert ? 'key' : 'cert'], message: 'cert and key go together' });
      if ((user === undefined) !== (password === undefined))
        ctx.addIssue({ code: 'custom', path: [user === undefined ? 'user' : 'password'], message: 'user and password go together' });
      return Object.freeze({
        etcd: Object.freeze(etcd) as readonly string[],
        node,
        advertise,
        prefix,
        leaseTtlMs: leaseTtl,
        ...(tls ? { tls: { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}) } } : {}),
        ...(user !== undefined && password !== undefined ? { auth: { user, password } } : {}),
      });
    });
}

export type ClusterConfig = z.output<ReturnType<typeof clusterSectionSchema>>;
