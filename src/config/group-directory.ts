import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from './errors.js';
import { parseGroupFile, type GroupSpec } from './group-file.js';
import type { PoolsConfig } from './pool-config.js';
import { joinPoolsOf } from './pool-membership.js';
import { fileFieldPath } from './port-range.js';
import { publicClaims, vhostProblem, type PublicClaim } from './domain-claims.js';
import type { VhostConfig } from './vhost-config.js';
import { YamlFile } from './yaml-file.js';

/** What of the server config decides which public ports and names a group may have. */
export interface PublicSide {
  /** The vhost ports and their policy: without them, no vhost app is accepted. */
  readonly vhost?: VhostConfig | undefined;
  /** Pools the server config fixes (port, balance, who may join). */
  readonly pools?: PoolsConfig | undefined;
}

export interface GroupDirectory {
  groups: GroupSpec[];
  /** Files that could not be registered; each is reported and skipped, the rest still load. */
  errors: ConfigError[];
}

interface Loaded {
  spec: GroupSpec;
  yaml: YamlFile;
}

/**
 * Loads every `*.yaml` / `*.yml` in the registry directory. One bad file never stops the
 * others: it is reported with its reason and skipped.
 *
 * A public port or vhost name claimed by two files goes to the group that holds it in `registered` (the
 * server's readyGroup) when that group still claims it, else to the first file in name order;
 * the other file is refused. Without the first rule, a newcomer whose name sorts first would
 * take the port in the registry (its app then failing to bind) and the holder's every later
 * edit would be refused as a conflict: the holder's file would be frozen.
 */
export function loadGroupDirectory(
  dir: string,
  env: NodeJS.ProcessEnv = process.env,
  registered: ReadonlyMap<string, GroupSpec> = new Map(),
  { vhost, pools = {} }: PublicSide = {},
): GroupDirectory {
  let entries: string[];
  try {
    entries = readdirSync(dir)
      .filter((entry) => /\.ya?ml$/.test(entry))
      .sort();
  } catch (error) {
    throw new ConfigError('CONFIG_READ', `${dir}: cannot read the groups directory: ${(error as Error).message}`, dir);
  }
  const loaded: Loaded[] = [];
  const errors: ConfigError[] = [];
  for (const entry of entries) {
    const file = join(dir, entry);
    try {
      const yaml = YamlFile.read(file);
      const spec = parseGroupFile(yaml, env);
      if (loaded.some((other) => other.spec.name === spec.name)) throw yaml.error(['name'], `group "${spec.name}" is already registered`);
      loaded.push({ spec, yaml });
    } catch (error) {
      // Whatever one file does, the others still load.
      errors.push(error instanceof ConfigError ? error : new ConfigError('CONFIG_INVALID', `${file}: ${(error as Error).message}`, file));
    }
  }
  const pooled = joinPools(loaded, registered, entries, pools);
  errors.push(...pooled.errors);
  const refused = refuseClaims(pooled.loaded, registered, entries, vhost);
  errors.push(...refused.errors);
  errors.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return { groups: pooled.loaded.filter((entry) => !refused.names.has(entry.spec.name)).map((entry) => entry.spec), errors };
}

/**
 * Checks each file's pools against the server's policy and the port the pool already has, and
 * fills in the pool's port where a member left it out. A pool's port is fixed by the server
 * config, else by its registered members (the holders), else by the first file in name order.
 */
function joinPools(
  loaded: readonly Loaded[],
  registered: ReadonlyMap<string, GroupSpec>,
  entries: readonly string[],
  pools: PoolsConfig,
): { loaded: Loaded[]; errors: ConfigError[] } {
  const stems = new Set(entries.map((entry) => entry.replace(/\.ya?ml$/, '')));
  const holders = [...registered.values()].filter((spec) => stems.has(spec.name));
  const accepted: Loaded[] = [];
  const errors: ConfigError[] = [];
  for (const entry of loaded) {
    const joined = joinPoolsOf(entry.spec, pools, [...holders, ...accepted.map((other) => other.spec)]);
    if (joined.problem !== undefined) errors.push(entry.yaml.error(fileFieldPath(entry.spec, joined.problem.path), joined.problem.message));
    else accepted.push({ spec: joined.spec, yaml: entry.yaml });
  }
  return { loaded: accepted, errors };
}

/**
 * Which loaded files lose a public port or a host name to another group, or break the
 * server's vhost policy. A refused file keeps its group's last good version registered, so
 * that version's claims stay reserved too: refusing one file can make another lose, hence the
 * loop until nothing changes. The members of one pool share its port or names (they claim
 * as the pool); no other two groups share one.
 */
function refuseClaims(
  loaded: readonly Loaded[],
  registered: ReadonlyMap<string, GroupSpec>,
  entries: readonly string[],
  vhost: VhostConfig | undefined,
): { names: Set<string>; errors: ConfigError[] } {
  const names = new Set<string>();
  const errors: ConfigError[] = [];
  for (const { spec, yaml } of loaded) {
    const problem = vhostProblem(spec, vhost);
    if (problem === undefined) continue;
    names.add(spec.name);
    errors.push(yaml.error(fileFieldPath(spec, problem.path), problem.problem));
  }
  const stems = new Set(entries.map((entry) => entry.replace(/\.ya?ml$/, '')));
  for (;;) {
    // What each group will claim after this sync: its new file, or its last good version
    // when its file was refused or is invalid (a deleted file frees its claims).
    const claims = new Map<string, GroupSpec>();
    for (const [name, spec] of registered) if (stems.has(name)) claims.set(name, spec);
    for (const { spec } of loaded) if (!names.has(spec.name)) claims.set(spec.name, spec);
    const owners = new Map<string, string>();
    // Holders first: a claim stays with the group that has it, as long as that group still makes it.
    for (const [name, spec] of registered) {
      const now = claims.get(name);
      if (now === undefined) continue;
      const nowClaims = publicClaims(now, vhost);
      for (const claim of publicClaims(spec, vhost)) {
        const still = nowClaims.find((mine) => mine.key === claim.key);
        if (still !== undefined) owners.set(claim.key, still.claimant);
      }
    }
    let lost: { entry: Loaded; claim: PublicClaim } | undefined;
    for (const entry of loaded) {
      if (names.has(entry.spec.name)) continue;
      const claim = publicClaims(entry.spec, vhost).find((candidate) => {
        const owner = owners.get(candidate.key);
        if (owner === undefined || owner === candidate.claimant || owner.startsWith(`${entry.spec.name}/`)) {
          owners.set(candidate.key, candidate.claimant);
          return false;
        }
        return true;
      });
      if (claim !== undefined) {
        lost = { entry, claim };
        break;
      }
    }
    if (lost === undefined) return { names, errors };
    names.add(lost.entry.spec.name);
    errors.push(
      lost.entry.yaml.error(fileFieldPath(lost.entry.spec, lost.claim.path), `${lost.claim.key} is already claimed by ${owners.get(lost.claim.key)}`),
    );
  }
}
