import { watch } from 'node:fs';
import { buffer, debounceTime, map, Observable, share } from 'rxjs';

/**
 * Emits the names of files that changed in `dir`, each burst (an editor's write, truncate,
 * rename) collapsed into one emission of every name it touched after `debounceMs` of quiet.
 * Watching the directory rather than the file survives editors that replace the file.
 */
export function watchDirectory(dir: string, debounceMs = 150): Observable<Set<string>> {
  const changes$ = new Observable<string>((subscriber) => {
    const watcher = watch(dir, { persistent: false }, (_event, filename) => {
      // Linux always names the file; elsewhere a null name means "something changed".
      subscriber.next(filename?.toString() ?? '');
    });
    watcher.on('error', (error) => subscriber.error(error));
    return () => watcher.close();
  }).pipe(share());
  return changes$.pipe(
    buffer(changes$.pipe(debounceTime(debounceMs))),
    map((names) => new Set(names)),
  );
}
