import { formatPath, parseGroupFile, publicClaims, vhostProblem, YamlFile, type GroupSpec } from '../../config/index.js';
import type { CommonServer } from '../common-server.js';
import { portRefusal } from '../policy.js';

export type RegistryErrorCode =
  | 'GROUP_EXISTS'
  | 'GROUP_NOT_FOUND'
  | 'PORT_CLAIMED'
  | 'DOMAIN_CLAIMED'
  | 'NAME_MISMATCH'
  | 'POLICY'
  | 'INVALID_GROUP_NAME'
  | 'REGISTRY_UNAVAILABLE'
  | 'REGISTRY_BUSY';

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
  const spec = parseGroupFile(yaml, env, { baseDir });
  if (expectName !== undefined && spec.name !== expectName) {
    throw new RegistryError('NAME_MISMATCH', `${source}: name: "${spec.name}" does not match the group in the URL ("${expectName}")`, 'name');
  }
  const { policy } = server;
  if (policy.maxAppsPerGroup !== undefined && spec.apps.length > policy.maxAppsPerGroup) {
    throw new RegistryError('POLICY', `apps: ${spec.apps.length} apps; this server allows at most ${policy.maxAppsPerGroup} per group`, 'apps');
  }
  spec.apps.forEach((app, index) => {
    const refusal = portRefusal(policy, spec.name, app);
    if (refusal !== undefined) throw new RegistryError('POLICY', `apps[${index}].remotePort: ${refusal}`, `apps[${index}].remotePort`);
  });
  const vhost = server.vhost?.config;
  const problem = vhostProblem(spec, vhost);
  if (problem !== undefined) throw new RegistryError('POLICY', `${formatPath(problem.path)}: ${problem.problem}`, formatPath(problem.path));
  // A port (per protocol) or host name another group holds (several groups on one name come with pools).
  const mine = publicClaims(spec, vhost);
  for (const [other, otherSpec] of server.readyGroup) {
    if (other === spec.name) continue;
    for (const claim of publicClaims(otherSpec, vhost)) {
      const clash = mine.find((candidate) => candidate.key === claim.key);
      if (clash === undefined) continue;
      const field = clash.key.startsWith('port') ? `apps.${clash.app}.remotePort` : formatPath(clash.path);
      throw new RegistryError(
        clash.key.startsWith('port') ? 'PORT_CLAIMED' : 'DOMAIN_CLAIMED',
        `${field}: ${clash.key} is already claimed by ${other}/${claim.app}`,
        field,
      );
    }
  }
  return { spec, yaml };
}
