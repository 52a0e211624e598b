import { map, startWith, switchMap, take, timer, type Observable, type OperatorFunction } from 'rxjs';

/**
 * Emits once, with the silence in ms, when `timeoutMs` passes without a value from the
 * source (counting from subscription). Each beat restarts the clock.
 */
export function heartbeatWatchdog<T>(timeoutMs: number): OperatorFunction<T, number> {
  return (beats$: Observable<T>) =>
    beats$.pipe(
      startWith(undefined),
      switchMap(() => timer(timeoutMs)),
      take(1),
      map(() => timeoutMs),
    );
}
