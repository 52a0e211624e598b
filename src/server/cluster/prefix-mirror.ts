import createDebug from 'debug';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { BehaviorSubject, filter, firstValueFrom, map, race, timer } from 'rxjs';
import { ETCD_BACKOFF, retryWithBackoff } from '../../net/index.js';

const debug = createDebug('ntp:server:cluster:mirror');

/**
 * A change of one key; `revision` is etcd's revision of the change (for a re-read, of the key's
 * last write or of the read); `lease` the lease a put attached the key to ('0': none).
 */
export type MirrorChange = { kind: 'put'; name: string; value: string; revision: string; lease: string } | { kind: 'delete'; name: string; revision: string };

/**
 * A local copy of every key under one etcd prefix: read once, then kept in step by a watch
 * that starts right after the revision read, so that no change falls between the two.
 * `onChange` sees every change, the first read included, one at a time in etcd's order.
 *
 * A watch that breaks is not resumed: the prefix is read again and compared with the copy
 * (adds, changes and removals applied), and a new watch starts after that read. etcd
 * cancels a watch whose revision it has compacted away, and etcd3 would resume a broken
 * one from the revision of its reconnection rather than of the last change delivered: a
 * re-read is right in every case, and costs one range read per break.
 */
export class PrefixMirror {
  readonly entries = new Map<string, string>();
  private watcher: Watcher | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The revision up to which every change of the prefix is applied. */
  private readonly applied = new BehaviorSubject<bigint>(0n);
  private closed = false;
  /** Aborted by close: a re-read waiting for etcd stops waiting. */
  private readonly closing = new AbortController();

  constructor(
    private readonly etcd: Etcd3,
    private readonly prefix: string,
    private readonly onChange: (change: MirrorChange) => void | Promise<void> = () => undefined,
    /** Told once a broken watch was replaced by a re-read (why it broke, keys read). */
    private readonly onResync: (why: string, keys: number) => void = () => undefined,
  ) {}

  /** Reads the prefix and starts the watch; returns once both are in place. */
  async start(): Promise<void> {
    await this.load();
  }

  /** Every change of the prefix up to this revision is applied (and was validated against, for a write). */
  get revision(): bigint {
    return this.applied.value;
  }

  /** Resolves true once every change up to `revision` is applied, false after `timeoutMs`. */
  whenApplied(revision: bigint, timeoutMs: number): Promise<boolean> {
    return firstValueFrom(
      race(
        this.applied.pipe(
          filter((applied) => applied >= revision),
          map(() => true),
        ),
        timer(timeoutMs).pipe(map(() => false)),
      ),
      { defaultValue: false },
    );
  }

  /**
   * This node's own write committed at `revision`, in a transaction that checked no key of the
   * prefix was written after `validatedAt` (so that write is the only one in between), and was
   * applied by the caller: the copy counts as up to date at `revision`, and the next write
   * through this node need not wait for the watch's echo. (A key deleted in between does not
   * fail that check; until its event comes, validation sees it still: a refusal, never a clash.)
   */
  noteOwnWrite(validatedAt: bigint, revision: bigint): void {
    if (this.applied.value >= validatedAt) this.advance(revision);
  }

  /** Reads the whole prefix, brings the copy in step with it, and watches from the revision after. */
  private async load(): Promise<number> {
    const answer = await this.etcd.getAll().prefix(this.prefix).exec();
    const readAt = BigInt(answer.header.revision);
    await this.enqueue(() => this.reconcile(answer.kvs, readAt));
    const watcher = await this.etcd
      .watch()
      .prefix(this.prefix)
      .startRevision((readAt + 1n).toString())
      .create();
    if (this.closed) {
      await watcher.cancel().catch(() => undefined);
      return answer.kvs.length;
    }
    this.watcher = watcher;
    // Events a replaced watch still delivers are dropped: the re-read covers them.
    watcher.on('put', (kv) => {
      if (this.watcher === watcher) void this.enqueue(() => this.apply(putOf(this.nameOf(kv), kv)));
    });
    watcher.on('delete', (kv) => {
      if (this.watcher === watcher) void this.enqueue(() => this.apply({ kind: 'delete', name: this.nameOf(kv), revision: kv.mod_revision }));
    });
    watcher.on('disconnected', (error) => this.watchBroke(watcher, `the watch lost its etcd connection (${error.message})`));
    // etcd cancels a watch whose start revision it compacted (compact_revision set), or one it refuses.
    watcher.on('error', (error) => this.watchBroke(watcher, `etcd cancelled the watch, its revision compacted or refused (${error.message})`));
    return answer.kvs.length;
  }

  /** Changes are applied one at a time, in etcd's order; a failure is logged and the next goes on. */
  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(task).catch((error: Error) => debug('applying a change of %s failed: %s', this.prefix, error.message));
    this.queue = run;
    return run;
  }

  /** Applies what differs between the copy and a full read at `readAt`. */
  private async reconcile(kvs: IKeyValue[], readAt: bigint): Promise<void> {
    const seen = new Set<string>();
    for (const kv of kvs) {
      const name = this.nameOf(kv);
      const value = kv.value.toString('utf8');
      seen.add(name);
      if (this.entries.get(name) !== value) await this.apply(putOf(name, kv));
    }
    for (const name of [...this.entries.keys()]) if (!seen.has(name)) await this.apply({ kind: 'delete', name, revision: readAt.toString() });
    if (readAt > this.applied.value) this.applied.next(readAt);
  }

  private watchBroke(watcher: Watcher, why: string): void {
    if (this.watcher !== watcher || this.closed) return;
    this.watcher = undefined;
    debug('watch of %s broke: %s; reading the prefix again', this.prefix, why);
    void watcher.cancel().catch(() => undefined);
    void this.resync(why);
  }

  /** Re-reads until etcd answers (or the mirror is closed). */
  private async resync(why: string): Promise<void> {
    try {
      const keys = await retryWithBackoff(() => this.load(), {
        signal: this.closing.signal,
        policy: ETCD_BACKOFF,
        onFailedAttempt: ({ error, delayMs }) => debug('re-reading %s failed: %s; again in %dms', this.prefix, error.message, delayMs),
      });
      if (!this.closed) this.onResync(why, keys);
    } catch {
      // Closed while etcd did not answer: nothing more to read.
    }
  }

  private nameOf(kv: IKeyValue): string {
    return kv.key.toString('utf8').slice(this.prefix.length);
  }

  private async apply(change: MirrorChange): Promise<void> {
    try {
      if (change.kind === 'put') this.entries.set(change.name, change.value);
      else if (!this.entries.delete(change.name)) return;
      await this.onChange(change);
    } finally {
      this.advance(BigInt(change.revision));
    }
  }

  private advance(revision: bigint): void {
    if (revision > this.applied.value) this.applied.next(revision);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort(new Error(`the mirror of ${this.prefix} is closed`));
    const watcher = this.watcher;
    this.watcher = undefined;
    await watcher?.cancel().catch(() => undefined);
    this.applied.complete();
  }
}

function putOf(name: string, kv: IKeyValue): MirrorChange {
  return { kind: 'put', name, value: kv.value.toString('utf8'), revision: kv.mod_revision, lease: kv.lease };
}
