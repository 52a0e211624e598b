import createDebug from 'debug';
import { basename, dirname } from 'node:path';
import { EMPTY, filter, map, merge, Subject, type Subscription } from 'rxjs';
import { loadGroupFile, watchDirectory, type GroupSpec } from '../config/index.js';
import type { GroupClient } from './group-client.js';

const debug = createDebug('ntp:client:group-file-reload');

export interface GroupFileReloadOptions {
  /** Watch the file's directory; without it only `reload()` (SIGHUP) re-reads the file. */
  watch?: boolean;
  debounceMs?: number;
  /** A file that no longer loads: the client keeps the version it has. */
  onError?: (error: Error) => void;
  /** Each version that loads, just before the client takes it (for what the caller applies itself, such as `logLevel:`). */
  onLoaded?: (spec: GroupSpec) => void;
  /** How the file is read (default: as a host's group file); a host with no file re-reads its command line. */
  load?: () => GroupSpec;
}

/** A reload's outcome: the apps now served and each change, or why the previous version stays. */
export type ReloadOutcome = { ok: true; apps: string[]; changes: string[] } | { ok: false; error: string };

/**
 * Keeps a running client in step with its own group file: every burst of edits (debounced)
 * and every `reload()` re-reads it and hands it to `client.updateSpec`, which applies new
 * local targets to new connections while running ones keep flowing.
 */
export class GroupFileReload {
  private readonly requests = new Subject<string>();
  private readonly subscription: Subscription;

  constructor(
    client: GroupClient,
    file: string,
    // A host's file may have any name: the name inside is the group's.
    { watch = true, debounceMs, onError, onLoaded, load = () => loadGroupFile(file, process.env, { anyFileName: true }) }: GroupFileReloadOptions = {},
  ) {
    // The directory, not the file: editors that write a new file and rename it over the old
    // one would otherwise leave a watch on a file that no longer exists.
    const edits$ = (watch ? watchDirectory(dirname(file), debounceMs) : EMPTY).pipe(
      filter((names) => names.has(basename(file)) || names.has('')),
      map(() => 'file changed'),
    );
    this.apply = (why) => {
      debug('re-reading %s (%s)', file, why);
      try {
        const spec = load();
        onLoaded?.(spec);
        return { ok: true, apps: spec.apps.map((app) => app.name), changes: client.updateSpec(spec) };
      } catch (error) {
        onError?.(error as Error);
        return { ok: false, error: (error as Error).message };
      }
    };
    this.subscription = merge(edits$, this.requests).subscribe((why) => void this.apply(why));
  }

  private readonly apply: (why: string) => ReloadOutcome;

  /** Re-reads the file now (SIGHUP). */
  reload(why = 'reload requested'): void {
    this.requests.next(why);
  }

  /** Re-reads the file now and says what changed or why the file was not taken (`groupclient reload`). */
  reloadNow(why: string): ReloadOutcome {
    return this.apply(why);
  }

  close(): void {
    this.subscription.unsubscribe();
    this.requests.complete();
  }
}
