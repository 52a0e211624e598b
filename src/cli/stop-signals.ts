import { fromEvent, map, merge, timer } from 'rxjs';
import type { Logger } from './logger.js';
import { seconds } from './output.js';
import { EXIT, STOP_SIGNALS, stoppedAgainExit, type StopSignal } from './exit-codes.js';

/**
 * How long a stop may take before the process exits anyway. Under the 5 s a service manager
 * (or an operator) is promised, with room for the process to start and end around it.
 */
export const STOP_BOUND_MS = 4000;

/**
 * SIGINT / SIGTERM end the process, whatever is still open: the first calls `stop` (which
 * resets live conns and lets the caller exit 0 once done) and arms a bound after which the
 * process exits 0 anyway; a second signal exits at once with the shell's 128 + its number.
 */
export function onStopSignals(logger: Logger, stop: (signal: StopSignal) => void, boundMs = STOP_BOUND_MS): void {
  let first: StopSignal | undefined;
  merge(...STOP_SIGNALS.map((name) => fromEvent(process, name).pipe(map(() => name)))).subscribe((signal) => {
    if (first !== undefined) {
      logger.warn('stop-forced', `${signal} again: exiting at once`, { signal });
      process.exit(stoppedAgainExit(signal));
    }
    first = signal;
    timer(boundMs).subscribe(() => {
      logger.warn('stop-overdue', `${signal}: not stopped within ${seconds(boundMs)}; exiting anyway`, { signal, boundMs });
      process.exit(EXIT.ok);
    });
    stop(signal);
  });
}
