import type { Etcd3 } from 'etcd3';
import { readFileSync } from 'node:fs';
import {
  appPublicRefusal,
  fileFieldPath,
  claimClash,
  formatPath,
  loadGroupDirectory,
  parseGroupFile,
  publicClaims,
  YamlFile,
  type ClusterConfig,
  type PublicClaim,
  type PublicPolicy,
  type PublicSide,
  type VhostConfig,
} from '../../config/index.js';
import { connectEtcd } from './etcd-client.js';
import { putGroupIfUnchangedSince } from './guarded-put.js';
import { ClusterKeys } from './keys.js';

export interface ImportResult {
  imported: string[];
  /** Already in etcd: kept as they are (etcd is the registry now). */
  kept: string[];
  /** Files the loader refused, and groups that claim what a group in etcd claims, with their reason. */
  refused: string[];
  /** Groups in etcd whose claims could not be read here (a `secretFile:` this machine lacks...). */
  unchecked: string[];
}

/** Times the import reads etcd's groups again when a node wrote one meanwhile. */
const MAX_ROUNDS = 5;

/**
 * Variables stand in for themselves when reading a stored group for its claims only: a
 * `${VAR}` secret of the nodes' environment must not hide the group's ports.
 */
const ANY_VARIABLE: NodeJS.ProcessEnv = new Proxy({}, { get: (_, name) => (typeof name === 'string' ? `placeholder-of-${name}-for-claims` : undefined) });

/**
 * `commonserver cluster import DIR`: every valid group file of a groups directory becomes a
 * key under `PREFIX/groups/`, its text as written (a `${VAR}` secret stays a reference),
 * unless that group is in etcd already, or claims a public port (or host name) a group in
 * etcd claims. Each put commits only if no group was written in etcd after the read it was
 * checked against (a node's admin API may write meanwhile); if one was, etcd is read again.
 */
export async function importGroupDirectory(
  config: ClusterConfig,
  dir: string,
  side: PublicSide = {},
  policy: PublicPolicy = { ownPorts: new Map() },
): Promise<ImportResult> {
  const { vhost } = side;
  const { groups, errors } = loadGroupDirectory(dir, process.env, new Map(), side);
  const etcd = connectEtcd(config);
  const keys = new ClusterKeys(config.prefix);
  const result: ImportResult = { imported: [], kept: [], refused: errors.map((error) => error.message), unchecked: [] };
  // What the admin API would refuse is not imported either: the nodes would fail those apps.
  let pending = groups.filter((spec) => {
    const refusal = spec.apps.map((app, index) => appPublicRefusal(policy, spec.name, app, index)).find((found) => found !== undefined);
    if (refusal !== undefined) result.refused.push(`${spec.file}: ${formatPath(fileFieldPath(spec, refusal.path))}: ${refusal.problem}`);
    return refusal === undefined;
  });
  try {
    for (let round = 1; pending.length > 0; round++) {
      if (round > MAX_ROUNDS) throw new Error(`etcd's groups kept changing while importing; not imported: ${pending.map((spec) => spec.name).join(', ')}`);
      const stored = await readClaims(etcd, keys, vhost);
      result.unchecked = stored.unchecked;
      let checkedAt = stored.revision;
      const left: typeof pending = [];
      for (const spec of pending) {
        if (stored.names.has(spec.name)) {
          result.kept.push(spec.name);
          continue;
        }
        const mine = publicClaims(spec, vhost);
        // Members of one pool share its port or names: claimClash lets them.
        const clash = stored.claims.map((theirs) => claimClash(mine, theirs)).find((found) => found !== undefined);
        if (clash !== undefined) {
          result.refused.push(
            `${spec.file}: ${formatPath(fileFieldPath(spec, clash.claim.path))}: ${clash.claim.key} is already claimed by ${clash.owner} (in etcd)`,
          );
          continue;
        }
        // The file as written, read where the loader read it.
        const answer = await putGroupIfUnchangedSince(etcd, keys, { name: spec.name, text: readFileSync(spec.file, 'utf8'), exists: false, checkedAt });
        if (!answer.succeeded) {
          left.push(spec);
          continue;
        }
        // Our own put is the only write since `checkedAt`: the next one is checked against it too.
        checkedAt = BigInt(answer.header.revision);
        result.imported.push(spec.name);
        stored.claims.push(mine);
        stored.names.add(spec.name);
      }
      pending = left;
    }
  } finally {
    etcd.close();
  }
  return result;
}

interface StoredClaims {
  revision: bigint;
  names: Set<string>;
  /** The public claims of each group in etcd. */
  claims: PublicClaim[][];
  unchecked: string[];
}

async function readClaims(etcd: Etcd3, keys: ClusterKeys, vhost: VhostConfig | undefined): Promise<StoredClaims> {
  const answer = await etcd.getAll().prefix(keys.groups).exec();
  const stored: StoredClaims = { revision: BigInt(answer.header.revision), names: new Set(), claims: [], unchecked: [] };
  for (const kv of answer.kvs) {
    const name = kv.key.toString('utf8').slice(keys.groups.length);
    stored.names.add(name);
    try {
      const spec = parseGroupFile(YamlFile.parse(`etcd:${keys.group(name)}`, kv.value.toString('utf8')), ANY_VARIABLE);
      stored.claims.push(publicClaims(spec, vhost));
    } catch (error) {
      stored.unchecked.push(`${name} (${(error as Error).message})`);
    }
  }
  return stored;
}
