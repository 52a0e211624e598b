import createDebug from 'debug';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';

const debug = createDebug('ntp:server:cluster:mirror');

/** A change of one key; `revision` is etcd's revision of the change (0 for the first read's puts). */
export type MirrorChange = { kind: 'put'; name: string; value: string; revision: string } | { kind: 'delete'; name: string; revision: string };

/**
 * A local copy of every key under one etcd prefix: read once, then kept in step by a watch
 * that starts right after the revision read, so that no change falls between the two.
 * `onChange` sees every change, the first read included.
 */
export class PrefixMirror {
  readonly entries = new Map<string, string>();
  private watcher: Watcher | undefined;

  constructor(
    private readonly etcd: Etcd3,
    private readonly prefix: string,
    private readonly onChange: (change: MirrorChange) => void | Promise<void> = () => undefined,
  ) {}

  /** Reads the prefix and starts the watch; returns once both are in place. */
  async start(): Promise<void> {
    const answer = await this.etcd.getAll().prefix(this.prefix).exec();
    const seen = new Set<string>();
    for (const kv of answer.kvs) {
      const name = this.nameOf(kv);
      seen.add(name);
      await this.apply({ kind: 'put', name, value: kv.value.toString('utf8'), revision: kv.mod_revision });
    }
    for (const name of [...this.entries.keys()]) if (!seen.has(name)) await this.apply({ kind: 'delete', name, revision: answer.header.revision });
    const next = (BigInt(answer.header.revision) + 1n).toString();
    this.watcher = await this.etcd.watch().prefix(this.prefix).startRevision(next).create();
    // Changes are applied one at a time, in etcd's order.
    let queue: Promise<unknown> = Promise.resolve();
    const enqueue = (change: MirrorChange): void => {
      queue = queue.then(() => this.apply(change)).catch((error: Error) => debug('applying %s failed: %s', change.name, error.message));
    };
    this.watcher.on('put', (kv) => enqueue({ kind: 'put', name: this.nameOf(kv), value: kv.value.toString('utf8'), revision: kv.mod_revision }));
    this.watcher.on('delete', (kv) => enqueue({ kind: 'delete', name: this.nameOf(kv), revision: kv.mod_revision }));
    this.watcher.on('disconnected', () => debug('watch of %s disconnected; etcd3 resumes it from the last revision seen', this.prefix));
    this.watcher.on('error', (error) => debug('watch of %s: %s', this.prefix, error.message));
  }

  private nameOf(kv: IKeyValue): string {
    return kv.key.toString('utf8').slice(this.prefix.length);
  }

  private async apply(change: MirrorChange): Promise<void> {
    if (change.kind === 'put') this.entries.set(change.name, change.value);
    else if (!this.entries.delete(change.name)) return;
    await this.onChange(change);
  }

  async close(): Promise<void> {
    await this.watcher?.cancel().catch(() => undefined);
  }
}
