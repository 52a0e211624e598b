import { Observable, timer, type OperatorFunction } from 'rxjs';

/**
 * Emits once, with the silence in ms, when `timeoutMs` passes without a value from the
 * source (counting from subscription). Each beat restarts the clock.
 *
 * A beat only notes the time: the timer runs once per timeout period and, when it finds a
 * beat since it was set, waits out the rest. Every control message counts as a beat, and a
 * timer per message (cancel, set) was a visible share of a pooled user's cost.
 */
export function heartbeatWatchdog<T>(timeoutMs: number): OperatorFunction<T, number> {
  return (beats$) =>
    new Observable<number>((subscriber) => {
      let lastBeat = Date.now();
      const subscription = beats$.subscribe({
        next: () => void (lastBeat = Date.now()),
        error: (error: unknown) => subscriber.error(error),
      });
      const waitFor = (ms: number): void => {
        subscription.add(
          timer(ms).subscribe(() => {
            const silentMs = Date.now() - lastBeat;
            if (silentMs < timeoutMs) return waitFor(timeoutMs - silentMs);
            subscriber.next(silentMs);
            subscriber.complete();
          }),
        );
      };
      waitFor(timeoutMs);
      return subscription;
    });
}
