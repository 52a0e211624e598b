import {
  asyncScheduler,
  defer,
  EMPTY,
  expand,
  filter,
  ignoreElements,
  interval,
  map,
  merge,
  take,
  takeWhile,
  tap,
  timer,
  type Observable,
  type OperatorFunction,
  type SchedulerLike,
} from 'rxjs';

/**
 * Emits once, with the silence in ms, when `timeoutMs` passes without a value from the
 * source (counting from subscription), then completes. Each beat restarts the clock; the
 * source's error passes through, its completion does not stop the watch.
 *
 * A beat only notes the time: the timer runs once per timeout period and, when it finds a
 * beat since it was set, waits out the rest. Every control message counts as a beat, and a
 * timer per message (cancel, set) was a visible share of a pooled user's cost.
 */
export function heartbeatWatchdog<T>(timeoutMs: number, scheduler: SchedulerLike = asyncScheduler): OperatorFunction<T, number> {
  return (beats$) =>
    defer(() => {
      let lastBeat = scheduler.now();
      const silenceAfter = (ms: number): Observable<number> => timer(ms, scheduler).pipe(map(() => scheduler.now() - lastBeat));
      const silence$ = silenceAfter(timeoutMs).pipe(
        expand((silentMs) => (silentMs < timeoutMs ? silenceAfter(timeoutMs - silentMs) : EMPTY)),
        filter((silentMs) => silentMs >= timeoutMs),
      );
      const noted$ = beats$.pipe(
        tap(() => void (lastBeat = scheduler.now())),
        ignoreElements(),
      );
      return merge(noted$, silence$).pipe(take(1));
    });
}

/** What a session's heartbeat asks of it: send a Ping now, or give the peer up (silent that long). */
export type HeartbeatTick = { type: 'ping' } | { type: 'silent'; silentMs: number };

export interface HeartbeatOptions {
  /** How often this end pings; undefined on the end that only answers (the server). */
  intervalMs?: number;
  /** The silence (no frame at all from the peer) after which the session is lost. */
  timeoutMs: number;
  /** Real time by default; a `TestScheduler` in a test. */
  scheduler?: SchedulerLike;
}

const PING: HeartbeatTick = { type: 'ping' };

/**
 * A session's heartbeat over its control messages: a `ping` every `intervalMs` from
 * subscription, and once `silent` when the peer sent nothing for `timeoutMs`, which ends it
 * (no ping after). The session subscribes once it is active and ends it with
 * `takeUntil(lost$)`, which stops both timers whatever ended the session.
 */
export function heartbeat(messages$: Observable<unknown>, options: HeartbeatOptions): Observable<HeartbeatTick> {
  const { intervalMs, timeoutMs, scheduler = asyncScheduler } = options;
  const pings$ = intervalMs === undefined ? EMPTY : interval(intervalMs, scheduler).pipe(map(() => PING));
  const silence$ = messages$.pipe(
    heartbeatWatchdog(timeoutMs, scheduler),
    map((silentMs): HeartbeatTick => ({ type: 'silent', silentMs })),
  );
  return merge(pings$, silence$).pipe(takeWhile((tick) => tick.type === 'ping', true));
}
