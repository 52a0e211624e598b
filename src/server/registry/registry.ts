import {
  appPublicRefusal,
  DEFAULT_MAX_PORT_RANGE,
  fileFieldPath,
  claimClash,
  formatPath,
  joinPoolsOf,
  parseGroupFile,
  portRangeRefusal,
  publicClaims,
  vhostProblem,
  YamlFile,
  type GroupSpec,
} from '../../config/index.js';
import type { CommonServer } from '../common-server.js';
import { groupRefusal } from '../public/policy.js';

export const REGISTRY_ERROR_CODES = [
  'GROUP_EXISTS',
  'GROUP_NOT_FOUND',
  'PORT_CLAIMED',
  'DOMAIN_CLAIMED',
  'POOL_CONFLICT',
  'NAME_MISMATCH',
  'POLICY',
  'INVALID_GROUP_NAME',
  'REGISTRY_UNAVAILABLE',
  'REGISTRY_BUSY',
] as const;
export type RegistryErrorCode = (typeof REGISTRY_ERROR_CODES)[number];

/** A registry change refused for a reason other than the group's own validity. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/**
 * Where the readyGroup lives: the groups directory of a single server, or etcd for a cluster.
 * Each implementation keeps the server's readyGroup in step with its store (a directory
 * watch, an etcd watch) and takes the admin API's changes through the same validation and
 * policy. The admin API only calls this.
 */
export interface GroupRegistry {
  /** The store, for messages: a directory, or the etcd prefix. */
  readonly source: string;
  /** Brings the server's readyGroup in step with the store now (start, SIGHUP). */
  sync(): Promise<void>;
  /** Registers a new group given as its group file's text (YAML or JSON); refused if the name is taken. */
  create(text: string): Promise<GroupSpec>;
  /** Replaces a registered group. */
  replace(name: string, text: string): Promise<GroupSpec>;
  /** Removes a group; its live client is disconnected. */
  remove(name: string): Promise<void>;
  close(): Promise<void>;
}

export interface ValidateOptions {
  server: CommonServer;
  env: NodeJS.ProcessEnv;
  /** Where a relative `secretFile:` is read. */
  baseDir: string;
  /** The group named in the URL: the body must name the same. */
  expectName?: string;
  /** What the text is called in error messages (default "request body"). */
  source?: string;
}

/**
 * Validates a group given as text exactly like a group file, then against the server's
 * policy (vhost's too) and the ports and host names other groups claim: nothing is stored that
 * activation would refuse.
 */
export function validateGroupText(
  text: string,
  { server, env, baseDir, expectName, source = 'request body' }: ValidateOptions,
): { spec: GroupSpec; yaml: YamlFile } {
  const yaml = YamlFile.parse(source, text);
  const parsed = parseGroupFile(yaml, env, { baseDir });
  if (expectName !== undefined && parsed.name !== expectName) {
    throw new RegistryError('NAME_MISMATCH', `${source}: name: "${parsed.name}" does not match the group in the URL ("${expectName}")`, 'name');
  }
  // Its pools: who may join them (the server's policy) and the port their members agreed on.
  const { policy, poolsConfig, readyGroup } = server;
  const joined = joinPoolsOf(parsed, poolsConfig, readyGroup.values());
  if (joined.problem !== undefined) {
    const field = formatPath(fileFieldPath(parsed, joined.problem.path));
    throw new RegistryError(joined.problem.code, `${source}: ${field}: ${joined.problem.message}`, field);
  }
  const { spec } = joined;
  // A range past limits.maxPortRange is named by its field (groupRefusal, at login, says it in words).
  const range = portRangeRefusal(spec, policy.maxPortRange ?? DEFAULT_MAX_PORT_RANGE);
  if (range !== undefined) throw new RegistryError('POLICY', `${formatPath(range.path)}: ${range.problem}`, formatPath(range.path));
  // How many groups are active is a matter of logins, not of the registry.
  const tooMany = groupRefusal({ ...policy, maxGroups: undefined }, spec, 0, false);
  if (tooMany !== undefined) throw new RegistryError('POLICY', `apps: ${tooMany}`, 'apps');
  spec.apps.forEach((app, index) => {
    const refusal = appPublicRefusal(server.publicPolicy, spec.name, app, index);
    if (refusal === undefined) return;
    const field = formatPath(fileFieldPath(spec, refusal.path));
    throw new RegistryError('POLICY', `${field}: ${refusal.problem}`, field);
  });
  const vhost = server.vhost?.config;
  const problem = vhostProblem(spec, vhost);
  if (problem !== undefined) {
    const field = formatPath(fileFieldPath(spec, problem.path));
    throw new RegistryError('POLICY', `${field}: ${problem.problem}`, field);
  }
  // A port (per protocol) or host name another group holds (several groups on one name come with pools).
  const mine = publicClaims(spec, vhost);
  for (const [other, otherSpec] of server.readyGroup) {
    if (other === spec.name) continue;
    // Members of one pool share its port or names: that is what a pool is.
    const clash = claimClash(mine, publicClaims(otherSpec, vhost));
    if (clash !== undefined) {
      const { claim } = clash;
      const field = claim.key.startsWith('port') ? `apps.${claim.app}.remotePort` : formatPath(fileFieldPath(spec, claim.path));
      throw new RegistryError(
        claim.key.startsWith('port') ? 'PORT_CLAIMED' : 'DOMAIN_CLAIMED',
        `${field}: ${claim.key} is already claimed by ${clash.owner}`,
        field,
      );
    }
  }
  return { spec, yaml };
}
