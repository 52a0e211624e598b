import createDebug from 'debug';
import { defer, retry, switchMap, timer, type Subscription } from 'rxjs';

const debug = createDebug('ntp:server:public:bind-retry');

/** How often a busy public port is tried again: `firstMs`, doubling, at most `maxMs` apart. */
export interface BindRetryPolicy {
  readonly firstMs: number;
  readonly maxMs: number;
}

export const BIND_RETRY_DEFAULTS: BindRetryPolicy = { firstMs: 1000, maxMs: 30_000 };

/**
 * The apps of one AppGroup whose public port was busy (EADDRINUSE) at activation or reload:
 * each is tried again with backoff until it binds, until the attempt says it is no longer
 * wanted (it resolves), or until `cancel` (the app removed, its port changed, the group
 * deactivated). `attempt` rejects while the port is still busy.
 */
export class BindRetries {
  private readonly pending = new Map<string, Subscription>();

  constructor(
    private readonly group: string,
    private readonly attempt: (app: string) => Promise<void>,
    private readonly policy: BindRetryPolicy = BIND_RETRY_DEFAULTS,
  ) {}

  has(app: string): boolean {
    return this.pending.has(app);
  }

  /** Starts retrying `app` unless it already is. */
  schedule(app: string): void {
    if (this.pending.has(app)) return;
    const { firstMs, maxMs } = this.policy;
    // The first try waits too: the caller has just failed to bind.
    const subscription = timer(firstMs)
      .pipe(
        switchMap(() =>
          defer(() => this.attempt(app)).pipe(
            retry({
              delay: (error: Error, count) => {
                const waitMs = Math.min(maxMs, firstMs * 2 ** count);
                debug('%s/%s: %s; next try in %dms', this.group, app, error.message, waitMs);
                return timer(waitMs);
              },
            }),
          ),
        ),
      )
      .subscribe({ complete: () => this.pending.delete(app) });
    // A synchronous completion has already run its delete: do not re-add a finished retry.
    if (!subscription.closed) this.pending.set(app, subscription);
  }

  cancel(app: string): void {
    this.pending.get(app)?.unsubscribe();
    this.pending.delete(app);
  }

  cancelAll(): void {
    for (const subscription of this.pending.values()) subscription.unsubscribe();
    this.pending.clear();
  }
}
