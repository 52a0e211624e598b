import type { ObserverFailure } from '../net/index.js';
import type { Logger } from './logger.js';

/**
 * The line for the first failure of an observer of events (lines, trace, metrics...): at
 * `error`, with its stack, since it is a bug to report. Later failures of the same observer
 * are only counted (in `counter` when the process has one), so a bug hit by every event
 * cannot flood the log.
 */
export function logInternalError(logger: Logger, counter?: string): ObserverFailure {
  return (where, error) => {
    const counted = counter === undefined ? 'later ones are not logged' : `later ones are counted in ${counter}{where="${where}"}`;
    logger.error('internal-error', `internal error in the ${where} observer; still serving (${counted}): ${error.stack ?? error.message}`, { where });
  };
}
