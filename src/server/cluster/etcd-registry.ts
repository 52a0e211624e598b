import createDebug from 'debug';
import type { Etcd3 } from 'etcd3';
import { stringify } from 'yaml';
import {
  ConfigError,
  fileFieldPath,
  groupNameProblem,
  isGroupName,
  joinPoolsOf,
  parseGroupFile,
  sameGroupSpec,
  YamlFile,
  type GroupSpec,
} from '../../config/index.js';
import type { CommonServer } from '../common-server.js';
import { RegistryError, validateGroupText, type GroupRegistry } from '../registry/index.js';
import { ETCD_CALL_DEADLINE_MS } from './etcd-client.js';
import { putGroupIfUnchangedSince } from './guarded-put.js';
import type { ClusterKeys } from './keys.js';
import { PrefixMirror, type MirrorChange } from './prefix-mirror.js';

const debug = createDebug('ntp:server:cluster:registry');

/**
 * Validations a write may redo when other writes keep landing between its validation and its
 * transaction; past them the registry is busy, and the caller may try again.
 */
const MAX_WRITE_ATTEMPTS = 5;

export interface EtcdRegistryOptions {
  etcd: Etcd3;
  keys: ClusterKeys;
  server: CommonServer;
  env?: NodeJS.ProcessEnv;
  /** Where a relative `secretFile:` is read on this node (its config directory). */
  baseDir: string;
  /** The watch of the registry broke and etcd was read again (a line for the operator). */
  onResync?: (why: string, groups: number) => void;
}

/**
 * readyGroup in etcd: each group's file text under `PREFIX/groups/NAME`. Every node mirrors
 * the prefix and applies each change the way the directory's hot reload applies a file;
 * admin API writes on any node are validated here, then land in etcd in a transaction.
 */
export class EtcdRegistry implements GroupRegistry {
  private readonly mirror: PrefixMirror;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly options: EtcdRegistryOptions) {
    this.env = options.env ?? process.env;
    this.mirror = new PrefixMirror(options.etcd, options.keys.groups, (change) => this.apply(change), options.onResync);
  }

  get source(): string {
    return `etcd ${this.options.keys.groups}`;
  }

  /** Reads every group and starts the watch. */
  start(): Promise<void> {
    return this.mirror.start();
  }

  /** The watch keeps the server in step; a sync re-applies what the mirror holds (SIGHUP). */
  async sync(): Promise<void> {
    for (const [name, value] of this.mirror.entries) await this.apply({ kind: 'put', name, value, revision: '0', lease: '0' });
  }

  private async apply(change: MirrorChange): Promise<void> {
    const { server } = this.options;
    if (change.kind === 'delete') return server.deregisterGroup(change.name);
    let spec: GroupSpec;
    try {
      spec = this.parse(change.name, change.value);
    } catch (error) {
      // As with a bad file: reported, and the last good version stays.
      server.reportRegistrationFailure(this.where(change.name), error instanceof Error ? error.message : String(error));
      return;
    }
    const current = server.readyGroup.get(spec.name);
    if (current === undefined) server.registerGroup(spec);
    else if (!sameGroupSpec(current, spec)) await server.updateGroup(spec);
    debug('applied %s', change.name);
  }

  private where(name: string): string {
    return `etcd:${this.options.keys.group(name)}`;
  }

  private parse(name: string, text: string): GroupSpec {
    const yaml = YamlFile.parse(this.where(name), text);
    const spec = parseGroupFile(yaml, this.env, { baseDir: this.options.baseDir });
    if (spec.name !== name) throw yaml.error(['name'], `group "${spec.name}" is stored under the key of "${name}"`);
    // Its pools, as the directory loader checks them: this node's pools config, the ports members fixed.
    const joined = joinPoolsOf(spec, this.options.server.poolsConfig, this.options.server.readyGroup.values());
    if (joined.problem !== undefined) throw yaml.error(fileFieldPath(spec, joined.problem.path), joined.problem.message);
    return joined.spec;
  }

  create(text: string): Promise<GroupSpec> {
    return this.write(text, undefined);
  }

  replace(name: string, text: string): Promise<GroupSpec> {
    return this.write(text, name);
  }

  /**
   * Validation sees this node's copy of the registry, as of the revision the copy has reached;
   * the transaction then commits only if no group changed in etcd after that revision. Two
   * nodes writing groups that claim one port (or host name) at once both validate, but only
   * the first transaction commits; the other validates again once its copy holds the winner,
   * and is refused naming it (409 PORT_CLAIMED / DOMAIN_CLAIMED).
   */
  private async write(text: string, expectName: string | undefined): Promise<GroupSpec> {
    const exists = expectName !== undefined;
    for (let attempt = 1; ; attempt++) {
      const validatedAt = this.mirror.revision;
      const { spec, yaml } = validateGroupText(text, {
        server: this.options.server,
        env: this.env,
        baseDir: this.options.baseDir,
        ...(expectName === undefined ? {} : { expectName }),
      });
      // The document as given, so that a `${VAR}` secret stays a reference in etcd too.
      const stored = stringify(yaml.root());
      const committed = await this.etcdCall(() =>
        putGroupIfUnchangedSince(this.options.etcd, this.options.keys, { name: spec.name, text: stored, exists, checkedAt: validatedAt }),
      );
      if (committed.succeeded) {
        // Applied here at once, so that the answer shows it; the watch's echo finds nothing to change.
        await this.apply({ kind: 'put', name: spec.name, value: stored, revision: committed.header.revision, lease: '0' });
        this.mirror.noteOwnWrite(validatedAt, BigInt(committed.header.revision));
        return this.options.server.readyGroup.get(spec.name) ?? spec;
      }
      const [own, changed] = committed.responses.map((response) => response.response_range.kvs);
      if ((own?.length ?? 0) > 0 !== exists) {
        throw exists
          ? new RegistryError('GROUP_NOT_FOUND', `group "${spec.name}" is not registered`)
          : new RegistryError('GROUP_EXISTS', `name: group "${spec.name}" is already registered`, 'name');
      }
      const changedAt = (changed ?? []).reduce((latest, kv) => (BigInt(kv.mod_revision) > latest ? BigInt(kv.mod_revision) : latest), validatedAt);
      debug('write of %s: the registry changed after revision %s (up to %s); validating again', spec.name, validatedAt, changedAt);
      if (attempt >= MAX_WRITE_ATTEMPTS) {
        throw new RegistryError(
          'REGISTRY_BUSY',
          `other writes kept changing the registry while group "${spec.name}" was validated; nothing was changed, try again`,
        );
      }
      if (!(await this.mirror.whenApplied(changedAt, ETCD_CALL_DEADLINE_MS))) {
        throw new RegistryError('REGISTRY_UNAVAILABLE', `this node's copy of the registry lags behind etcd; group "${spec.name}" was not changed`);
      }
    }
  }

  async remove(name: string): Promise<void> {
    if (!isGroupName(name)) throw new RegistryError('INVALID_GROUP_NAME', groupNameProblem(name), 'name');
    const { etcd, keys } = this.options;
    const key = keys.group(name);
    const committed = await this.etcdCall(() => etcd.if(key, 'Create', '>', 0).then(etcd.delete().key(key)).commit());
    if (!committed.succeeded) throw new RegistryError('GROUP_NOT_FOUND', `group "${name}" is not registered`);
    this.options.server.deregisterGroup(name);
  }

  private async etcdCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof ConfigError || error instanceof RegistryError) throw error;
      throw new RegistryError('REGISTRY_UNAVAILABLE', `etcd did not answer; the registry was not changed (${(error as Error).message})`);
    }
  }

  close(): Promise<void> {
    return this.mirror.close();
  }
}
