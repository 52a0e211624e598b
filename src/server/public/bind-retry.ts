import createDebug from 'debug';
import { BACKOFF, retryWithBackoff, type BackoffPolicy } from '../../net/index.js';

const debug = createDebug('ntp:server:public:bind-retry');

/** How often a busy public port is tried again: the one backoff policy, its figures overridable (tests). */
export type BindRetryPolicy = Pick<BackoffPolicy, 'firstMs' | 'maxMs'>;

/**
 * The apps of one AppGroup whose public port was busy (EADDRINUSE) at activation or reload:
 * each is tried again with backoff until it binds, until the attempt says it is no longer
 * wanted (it resolves), or until `cancel` (the app removed, its port changed, the group
 * deactivated), which ends a wait at once. `attempt` rejects while the port is still busy.
 */
export class BindRetries {
  private readonly pending = new Map<string, AbortController>();
  private readonly policy: BackoffPolicy;

  constructor(
    private readonly group: string,
    private readonly attempt: (app: string) => Promise<void>,
    policy?: BindRetryPolicy,
  ) {
    this.policy = { ...BACKOFF, ...policy };
  }

  has(app: string): boolean {
    return this.pending.has(app);
  }

  /** Starts retrying `app`, whose bind just failed with `busy`, unless it already is. */
  schedule(app: string, busy: Error): void {
    if (this.pending.has(app)) return;
    const stop = new AbortController();
    this.pending.set(app, stop);
    const done = (): void => {
      if (this.pending.get(app) === stop) this.pending.delete(app);
    };
    retryWithBackoff(() => this.attempt(app), {
      signal: stop.signal,
      policy: this.policy,
      // The caller has just failed to bind: the first try waits too.
      firstFailed: busy,
      onFailedAttempt: ({ error, delayMs }) => debug('%s/%s: %s; next try in %dms', this.group, app, error.message, delayMs),
    }).then(done, done);
  }

  cancel(app: string): void {
    this.pending.get(app)?.abort(new Error(`the retry of ${this.group}/${app} was cancelled`));
    this.pending.delete(app);
  }

  cancelAll(): void {
    for (const app of [...this.pending.keys()]) this.cancel(app);
  }
}
