import { asyncScheduler, map, takeUntil, timer, type Observable, type SchedulerLike } from 'rxjs';

/**
 * A wait's deadline: emits `ms` once, `ms` after subscription, unless `settled$` emitted
 * first; either way it then completes, so a subscriber never clears a timer by hand. The
 * login deadline (until a connection logged in or joined), the common port's wait for a conn's
 * first bytes (until TLS or the WebSocket upgrade took it) and the Goodbye's grace (until the
 * peer closed) are deadlines; the pairing deadline is kept per id in `Pairings`.
 */
export function deadline(ms: number, settled$: Observable<unknown>, scheduler: SchedulerLike = asyncScheduler): Observable<number> {
  return timer(ms, scheduler).pipe(
    map(() => ms),
    takeUntil(settled$),
  );
}
