import type { Observable, Subscription } from 'rxjs';

/** Told of each failure of an observer: which one (`where`) and what it threw. */
export type ObserverFailure = (where: string, error: Error) => void;

/**
 * Subscribes `handler` to `events$` so that nothing it throws leaves it: RxJS rethrows an
 * observer's exception on a timer, where it ends the process, so one bug in a metric, a
 * dashboard total or a log line would take every group down with it. A failure goes to
 * `onFailure` instead, and the observer stays subscribed for the next event. Every observer of
 * a server's or client's `events$` is subscribed through here.
 */
export function observe<T>(
  events$: Observable<T>,
  where: string,
  handler: (event: T) => void,
  onFailure: ObserverFailure,
  onComplete?: () => void,
): Subscription {
  return events$.subscribe({
    next: (event) => {
      try {
        handler(event);
      } catch (error) {
        reportSafely(onFailure, where, error);
      }
    },
    ...(onComplete === undefined ? {} : { complete: onComplete }),
  });
}

/** Something whose events can be observed in isolation (a CommonServer, a GroupClient). */
export interface Observed<T> {
  /** Runs `handler` for each event; what it throws is counted and logged, never raised. */
  observe(where: string, handler: (event: T) => void, onComplete?: () => void): Subscription;
}

/**
 * The failures of one process's observers, counted by `where`. The first of each is logged
 * with its stack (later ones would repeat it at the rate of events: they are only counted).
 * Nothing here goes through `events$`, so a broken observer (the metrics' own included) is
 * never re-entered to report its own failure.
 */
export class InternalErrors {
  private readonly counts = new Map<string, number>();
  private log: ObserverFailure = logToStderr;

  /** Where the first failure of each observer is logged (the CLIs: their logger, at `error`). */
  logTo(log: ObserverFailure): void {
    this.log = log;
  }

  readonly report: ObserverFailure = (where, error) => {
    const count = (this.counts.get(where) ?? 0) + 1;
    this.counts.set(where, count);
    if (count === 1) this.log(where, error);
  };

  /** Failures so far, by observer. */
  byWhere(): ReadonlyMap<string, number> {
    return this.counts;
  }
}

function reportSafely(onFailure: ObserverFailure, where: string, thrown: unknown): void {
  try {
    onFailure(where, thrown instanceof Error ? thrown : new Error(String(thrown)));
  } catch {
    // The report itself failed (a broken log sink): nothing is left to tell, and the event
    // source must not be the one to pay for it.
  }
}

function logToStderr(where: string, error: Error): void {
  process.stderr.write(`internal error in ${where} (later ones are only counted): ${error.stack ?? error.message}\n`);
}
