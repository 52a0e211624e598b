import { setTimeout as sleep } from 'node:timers/promises';

/** `promise`, or a rejection naming `what` once `ms` have passed: every step of a run is bounded. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      promise,
      sleep(ms, undefined, { signal: timer.signal }).then(() => {
        throw new Error(`${what}: not done within ${(ms / 1000).toFixed(1)} s`);
      }),
    ]);
  } finally {
    timer.abort();
  }
}

/** Polls `done` every `everyMs` until it holds or `ms` have passed; says whether it held. */
export async function waitUntil(done: () => boolean | Promise<boolean>, ms: number, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await done()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}
