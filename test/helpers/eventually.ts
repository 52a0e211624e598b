/** How long `eventually` tries, how often, and what it waits for. */
export interface EventuallyOptions {
  /** What is awaited, as the failure says it ("waiting for <message>"); a function is read at the timeout, for the state then. */
  message: string | (() => string);
  /** Milliseconds before giving up (default 5000): a guard against a hang, never a timing assert. */
  timeout?: number;
  /** Milliseconds between tries (default 20). */
  interval?: number;
}

/**
 * Polls `check` until it passes, for state that no event announces (a counter settling after
 * sockets close, a node converging, a port starting to accept). A try passes when `check`
 * neither throws nor returns `false`; `eventually` resolves with what that try returned, so a
 * check that returns `false` until it has something can hand it over. A check that throws (an
 * assertion) is tried again; its last error is named in the failure. A try still running at the
 * deadline fails too: a check that hangs cannot outlive `timeout`.
 */
export async function eventually<T>(check: () => T | false | Promise<T | false>, options: EventuallyOptions): Promise<T> {
  const { timeout = 5000, interval = 20 } = options;
  const deadline = Date.now() + timeout;
  let lastError: unknown;
  const failure = (): Error => {
    const what = typeof options.message === 'function' ? options.message() : options.message;
    const last = lastError === undefined ? '' : ` (last try: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
    return new Error(`timed out after ${timeout}ms waiting for ${what}${last}`, lastError === undefined ? undefined : { cause: lastError });
  };
  for (;;) {
    const outcome = await tryBefore(check, deadline);
    if (outcome === EXPIRED) throw failure();
    if ('error' in outcome) lastError = outcome.error;
    else if (outcome.value !== false) return outcome.value;
    else lastError = undefined;
    const left = deadline - Date.now();
    if (left <= 0) throw failure();
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, left)));
  }
}

const EXPIRED = Symbol('expired');

/** One try; an asynchronous one that has not settled by `deadline` is EXPIRED (a synchronous one always counts). */
async function tryBefore<T>(
  check: () => T | false | Promise<T | false>,
  deadline: number,
): Promise<{ value: T | false } | { error: unknown } | typeof EXPIRED> {
  let result: T | false | Promise<T | false>;
  try {
    result = check();
  } catch (error) {
    return { error };
  }
  if (!(result instanceof Promise)) return { value: result };
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<typeof EXPIRED>((resolve) => (timer = setTimeout(() => resolve(EXPIRED), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([
      result.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      expired,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
