import createDebug from 'debug';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { groupNameProblem, isGroupName, loadGroupDirectory, sameGroupSpec, schemaComment, type GroupSpec, type YamlFile } from '../../config/index.js';
import type { CommonServer } from '../common-server.js';
import { removeFileDurably, writeFileAtomic, type AtomicWriteHooks } from './atomic-write.js';
import { RegistryError, validateGroupText, type GroupRegistry } from './registry.js';

const debug = createDebug('ntp:server:registry:directory');

export interface DirectoryRegistryOptions {
  server: CommonServer;
  groupsDir: string;
  env?: NodeJS.ProcessEnv;
  hooks?: AtomicWriteHooks;
}

/**
 * The groups directory as the source of truth for the server's readyGroup (a single server's
 * registry). `sync()` makes the server match the directory (used by hot reload, SIGHUP and
 * after every API write); the API writes go through the same validation as the YAML files
 * and land atomically.
 */
export class DirectoryRegistry implements GroupRegistry {
  private readonly dir: string;
  private readonly env: NodeJS.ProcessEnv;
  private queue: Promise<unknown> = Promise.resolve();
  /** Last reported problem per file, so that an unchanged bad file is not reported on every sync. */
  private readonly reported = new Map<string, string>();

  constructor(private readonly options: DirectoryRegistryOptions) {
    this.dir = resolve(options.groupsDir);
    this.env = options.env ?? process.env;
  }

  get source(): string {
    return this.dir;
  }

  /** Runs one registry operation at a time: the watcher and the API never interleave. */
  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  sync(): Promise<void> {
    return this.serial(() => this.syncNow());
  }

  private async syncNow(): Promise<void> {
    const { server } = this.options;
    const { groups, errors } = loadGroupDirectory(this.dir, this.env, server.readyGroup, { vhost: server.vhost?.config, pools: server.poolsConfig });
    const stems = new Set(
      readdirSync(this.dir)
        .filter((entry) => /\.ya?ml$/.test(entry))
        .map((entry) => entry.replace(/\.ya?ml$/, '')),
    );
    const failed = new Set<string>();
    for (const error of errors) {
      failed.add(error.file);
      if (this.reported.get(error.file) === error.message) continue;
      this.reported.set(error.file, error.message);
      server.reportRegistrationFailure(error.file, error.message);
    }
    for (const file of this.reported.keys()) if (!failed.has(file)) this.reported.delete(file);

    for (const [name, spec] of [...server.readyGroup]) {
      // Only groups that came from this directory; a file that is now invalid keeps its last good version.
      // Removals first: a port they free may be what an edited group now claims.
      if (dirname(resolve(spec.file)) === this.dir && !stems.has(name)) server.deregisterGroup(name);
    }
    for (const spec of groups) {
      const current = server.readyGroup.get(spec.name);
      if (current === undefined) server.registerGroup(spec);
      else if (!sameGroupSpec(current, spec)) await server.updateGroup(spec);
    }
    debug('synced %d group(s), %d bad file(s)', groups.length, errors.length);
  }

  /** Validates a group given as YAML or JSON text (JSON is YAML), exactly like a group file. */
  validate(text: string, { expectName }: { expectName?: string } = {}): { spec: GroupSpec; yaml: YamlFile } {
    // A relative secretFile is read where the file will be written.
    return validateGroupText(text, { server: this.options.server, env: this.env, baseDir: this.dir, ...(expectName === undefined ? {} : { expectName }) });
  }

  /** The file of a group; a name outside the loader's rule never becomes a path (it could hold "../"). */
  fileOf(name: string): string {
    if (!isGroupName(name)) throw new RegistryError('INVALID_GROUP_NAME', groupNameProblem(name), 'name');
    return join(this.dir, `${name}.yaml`);
  }

  /** Registers a new group: refused if the name is taken. */
  create(text: string): Promise<GroupSpec> {
    return this.serial(async () => {
      const { spec, yaml } = this.validate(text);
      if (this.options.server.readyGroup.has(spec.name) || existsSync(this.fileOf(spec.name))) {
        throw new RegistryError('GROUP_EXISTS', `name: group "${spec.name}" is already registered`, 'name');
      }
      return this.write(spec, yaml);
    });
  }

  /** Replaces an existing group's file. */
  replace(name: string, text: string): Promise<GroupSpec> {
    return this.serial(async () => {
      if (!existsSync(this.fileOf(name))) throw new RegistryError('GROUP_NOT_FOUND', `group "${name}" has no file in the registry`);
      const { spec, yaml } = this.validate(text, { expectName: name });
      return this.write(spec, yaml);
    });
  }

  /** Deletes a group's file; its live client is disconnected. */
  remove(name: string): Promise<void> {
    return this.serial(async () => {
      const file = this.fileOf(name);
      if (!existsSync(file)) throw new RegistryError('GROUP_NOT_FOUND', `group "${name}" has no file in the registry`);
      await removeFileDurably(file);
      await this.syncNow();
    });
  }

  /** Nothing to release: the directory watch is the hot reload's. */
  async close(): Promise<void> {}

  private async write(spec: GroupSpec, yaml: YamlFile): Promise<GroupSpec> {
    // The document as given, so that a `${VAR}` secret stays a reference and is never expanded to disk.
    const file = this.fileOf(spec.name);
    await writeFileAtomic(file, `${schemaComment('group', file)}\n${stringify(yaml.root())}`, this.options.hooks);
    await this.syncNow();
    return this.options.server.readyGroup.get(spec.name) ?? spec;
  }
}
