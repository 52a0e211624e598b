import createDebug from 'debug';
import { concatMap, EMPTY, filter, merge, Subject, type Subscription } from 'rxjs';
import { watchDirectory } from '../../config/index.js';
import type { GroupRegistry } from './registry.js';

const debug = createDebug('ntp:server:registry:hot-reload');

/**
 * Keeps the server's registry in step with its groups directory: every burst of file changes
 * (debounced) and every `reload()` (SIGHUP) runs one `registry.sync()`, one at a time.
 */
export class GroupsHotReload {
  private readonly requests = new Subject<string>();
  private readonly subscription: Subscription;

  constructor(
    registry: GroupRegistry,
    groupsDir: string,
    { debounceMs = 150, watch = true, onError }: { debounceMs?: number; watch?: boolean; onError?: (error: Error) => void } = {},
  ) {
    const changes$ = (watch ? watchDirectory(groupsDir, debounceMs) : EMPTY).pipe(
      // Temp files of atomic writes (and editor swap files) are not group files.
      filter((names) => [...names].some((name) => name === '' || /\.ya?ml$/.test(name))),
    );
    this.subscription = merge(changes$, this.requests)
      .pipe(
        concatMap(async (why) => {
          debug('reloading the groups directory (%s)', typeof why === 'string' ? why : 'files changed');
          try {
            await registry.sync();
          } catch (error) {
            onError?.(error as Error);
          }
        }),
      )
      .subscribe({ error: (error: Error) => onError?.(error) });
  }

  /** Reloads now (SIGHUP). */
  reload(why = 'reload requested'): void {
    this.requests.next(why);
  }

  close(): void {
    this.subscription.unsubscribe();
    this.requests.complete();
  }
}
