import type { VirtualTimeScheduler } from 'rxjs';

/** Runs every timer of `clock` due within `ms` from now, then stands at now + `ms`. */
export function advance(clock: VirtualTimeScheduler, ms: number): void {
  const to = clock.frame + ms;
  clock.maxFrames = to;
  clock.flush();
  clock.frame = to;
}

/** Lets the promise callbacks and I/O callbacks queued so far run (a settled wait reports itself). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
