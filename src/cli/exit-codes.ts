import { constants } from 'node:os';

/**
 * Every status the two binaries exit with. Commands return these, never a bare number:
 * docs/troubleshooting.md has a row for each value of each table, which a test checks.
 */

/** Running (commonserver, groupclient) and the one-shot commands (init, hostfile, cluster import, install-units, --help). */
export const EXIT = Object.freeze({
  ok: 0,
  /** A bad command line, a config error, or a failure at start: the last line printed says which. */
  failed: 2,
  /** groupclient: refused for good (certificate, secret, unknown group, taken over); a retry cannot help. */
  refused: 3,
} as const);

/** `commonserver verify` and `groupclient verify`. */
export const VERIFY_EXIT = Object.freeze({ ok: 0, warnings: 1, invalid: 2 } as const);

/** `groupclient status` and `groupclient reload`. */
export const CONTROL_EXIT = Object.freeze({ ok: 0, reloadFailed: 1, usage: 2, notRunning: 3 } as const);

/** The signals that stop either binary; a second one exits at once with the shell's 128 + its number. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

export function stoppedAgainExit(signal: StopSignal): number {
  return 128 + constants.signals[signal];
}
