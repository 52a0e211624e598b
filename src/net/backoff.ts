import pRetry, { AbortError } from 'p-retry';

/**
 * The one backoff policy of every retry loop (client reconnect rounds, a busy public port,
 * the mux re-ask, etcd lease regrant and registry resync): the delay starts at `firstMs`,
 * is multiplied by `factor` for each failure that counts, never exceeds `maxMs`, and jitter
 * takes up to a fifth off it. The loop itself is p-retry's (the user named it), with the
 * owner's AbortSignal: stopping the owner ends a wait at once, never after it.
 */
export interface BackoffPolicy {
  readonly firstMs: number;
  readonly maxMs: number;
  readonly factor: number;
}

/** 0.5 s doubling to 20 s: what a loop that reaches over the network to a peer waits. */
export const BACKOFF: BackoffPolicy = { firstMs: 500, maxMs: 20_000, factor: 2 };

/**
 * The same policy capped at 5 s for the etcd loops: while they wait the node holds no lease
 * (it refuses logins) or serves a registry that may be stale, and etcd is the cluster's own
 * store, asked by a few nodes, not by every client of a server.
 */
export const ETCD_BACKOFF: BackoffPolicy = { ...BACKOFF, maxMs: 5_000 };

/**
 * Jitter takes off up to this share, never adds: clients dropped together (a server restart)
 * spread out, while the delay printed stays within the cap and is the one waited.
 */
const JITTER = 0.2;

/** The delay after `failures` counted failures in a row (1: the first delay). */
export function backoffDelayMs(policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.firstMs * policy.factor ** Math.max(0, failures - 1));
  return Math.round(base * (1 - JITTER * random()));
}

/** One failed attempt, told to the owner before the wait (its line names the delay). */
export interface FailedAttempt {
  error: Error;
  /** The wait before the next attempt: 0 for a failure that does not count. */
  delayMs: number;
  /** Failures counted so far in this run, this one included. */
  failures: number;
}

export interface RetryOptions {
  /** The owner's stop: aborting it ends the wait (and the run) at once; the run rejects. */
  signal: AbortSignal;
  /** Default BACKOFF. */
  policy?: BackoffPolicy;
  /**
   * False for a failure that neither waits nor grows the delay (one server of a cluster's
   * round: the next is tried at once, and the round as a whole counts once).
   */
  counts?: (error: Error) => boolean;
  onFailedAttempt?: (failed: FailedAttempt) => void;
  /** The owner's own first try already failed with this: the run starts with the first wait. */
  firstFailed?: Error;
}

/**
 * Runs `attempt` until it resolves, waiting between failures as the policy says, forever
 * (each owner's loop runs as long as the owner lives). It rejects when `signal` is aborted
 * (with an abort error; the owner knows it stopped) or with the error an attempt gave up with
 * (`giveUp`). A run resolving is what resets the backoff: the next run starts afresh.
 */
export function retryWithBackoff<T>(attempt: (attemptNumber: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { signal, firstFailed } = options;
  const policy = options.policy ?? BACKOFF;
  const counts = options.counts ?? (() => true);
  return pRetry(
    async (attemptNumber) => {
      if (attemptNumber === 1 && firstFailed !== undefined) throw firstFailed;
      try {
        return await attempt(attemptNumber);
      } catch (error) {
        // p-retry gives up on a TypeError at once (a browser's fetch bug): here it is one more
        // failure like any other, as a loop that ends silently would stop serving for good.
        if (error instanceof TypeError) throw new Error(error.message, { cause: error });
        throw error;
      }
    },
    {
      retries: Number.POSITIVE_INFINITY,
      // p-retry's own wait is not used: its jitter is not known to the caller, and a line must
      // name the delay it waits. The wait is ours, in onFailedAttempt, under the same signal.
      minTimeout: 0,
      signal,
      shouldConsumeRetry: ({ error }) => counts(error),
      onFailedAttempt: async ({ error, retriesConsumed }) => {
        const counted = counts(error);
        const failures = retriesConsumed + (counted ? 1 : 0);
        const delayMs = counted ? backoffDelayMs(policy, failures) : 0;
        options.onFailedAttempt?.({ error, delayMs, failures });
        await pause(delayMs, signal);
      },
    },
  );
}

/** Ends a run with `error` (a failure no retry can fix): the run rejects with it, no wait. */
export function giveUp(error: Error): Error {
  return new AbortError(error);
}

/** Waits `ms`, or rejects with the signal's reason as soon as it is aborted. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal.throwIfAborted();
    if (ms <= 0) return resolve();
    const onAbort = (): void => {
      clearTimeout(wait);
      reject(signal.reason as Error);
    };
    const wait = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
