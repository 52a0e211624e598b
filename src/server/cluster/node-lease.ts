import createDebug from 'debug';
import type { Etcd3, Lease } from 'etcd3';
import { performance } from 'node:perf_hooks';
import { BehaviorSubject, filter, mergeMap, Subscription, timer, type Observable } from 'rxjs';
import { ETCD_BACKOFF, retryWithBackoff, type BackoffPolicy } from '../../net/index.js';
import { formatDuration } from '../../config/index.js';

const debug = createDebug('ntp:server:cluster:lease');

export type LeaseState = { held: true; leaseId: string; generation: number } | { held: false; reason: string };

export interface NodeLeaseOptions {
  ttlMs: number;
  /** Written under the lease at each grant: this node's record. */
  nodeKey: string;
  nodeValue: () => string;
  /** Waits between grants while etcd does not answer (default ETCD_BACKOFF). */
  backoff?: BackoffPolicy;
}

/**
 * This node's etcd lease: every group it serves is held by a key attached to it. etcd lets
 * a lease expire TTL after the last keepalive it received; we count from when each answered
 * keepalive was *sent* (never later than etcd received it), and give up the lease at
 * two thirds of the TTL without an answer: the groups are dropped before etcd could hand
 * them to another node. (etcd3's own keepalive loop only reports a loss after twice the
 * TTL, which is why it is not used.)
 */
export class NodeLease {
  private readonly state = new BehaviorSubject<LeaseState>({ held: false, reason: 'not granted yet' });
  readonly state$: Observable<LeaseState> = this.state.asObservable();
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private generation = 0;
  private confirmedAt = 0;
  private readonly subscriptions = new Subscription();
  private keeping: Subscription | undefined;
  private closed = false;
  /** Aborted by close: a grant waiting for etcd stops waiting. */
  private readonly closing = new AbortController();
  /** The revision at which the current lease's node record was written. */
  private recordRevision = 0n;
  readonly safeMs: number;
  readonly keepaliveEveryMs: number;

  constructor(
    private readonly etcd: Etcd3,
    private readonly options: NodeLeaseOptions,
  ) {
    this.safeMs = Math.floor((options.ttlMs * 2) / 3);
    this.keepaliveEveryMs = Math.floor(options.ttlMs / 6);
  }

  get current(): LeaseState {
    return this.state.value;
  }

  /**
   * Resolves once a lease is held, retrying while etcd does not answer (`onRetry` is told why
   * and how long it waits); rejects once the lease is closed.
   */
  async start(onRetry?: (reason: string, delayMs: number) => void): Promise<void> {
    await retryWithBackoff(() => this.grant(), {
      signal: this.closing.signal,
      policy: this.options.backoff ?? ETCD_BACKOFF,
      onFailedAttempt: ({ error, delayMs }) => onRetry?.(error.message, delayMs),
    });
  }

  private async grant(): Promise<void> {
    const sentAt = performance.now();
    const lease = this.etcd.lease(this.options.ttlMs / 1000, { autoKeepAlive: false });
    lease.on('lost', (error: Error) => debug('etcd3 reports the lease lost: %s', error.message));
    let id: string;
    try {
      id = await lease.grant();
      const put = await this.etcd.put(this.options.nodeKey).value(this.options.nodeValue()).lease(id);
      this.recordRevision = BigInt(put.header.revision);
    } catch (error) {
      lease.release();
      throw error;
    }
    if (this.closed) {
      void lease.revoke().catch(() => undefined);
      return;
    }
    this.lease = lease;
    this.leaseId = id;
    this.confirmedAt = sentAt;
    this.generation += 1;
    debug('lease %s granted (ttl %dms, safe for %dms)', id, this.options.ttlMs, this.safeMs);
    this.state.next({ held: true, leaseId: id, generation: this.generation });
    this.keepAlive(lease);
  }

  /**
   * A keepalive every TTL/6, each one sent whether or not the earlier ones were answered; the
   * watchdog fires when none was answered for `safeMs`. A keepalive may hang for its whole
   * deadline (on a member that is electing a new leader, or one that just died and was picked at
   * random by the client): waiting for it before sending the next (as one-at-a-time did) left as
   * little as one more try in the safe window, so one etcd member killed could lose the lease.
   * At most `safeMs / keepaliveEveryMs` (4) calls are ever in flight.
   */
  private keepAlive(lease: Lease): void {
    const keeping = new Subscription();
    let watchdog = timer(this.safeMs).subscribe(() => this.lose(`no keepalive answered by etcd for ${formatDuration(this.safeMs)}`));
    keeping.add(() => watchdog.unsubscribe());
    const maxInFlight = Math.max(1, Math.ceil(this.safeMs / this.keepaliveEveryMs));
    let inFlight = 0;
    keeping.add(
      timer(this.keepaliveEveryMs, this.keepaliveEveryMs)
        .pipe(
          filter(() => inFlight < maxInFlight),
          mergeMap(async () => {
            const sentAt = performance.now();
            inFlight += 1;
            try {
              // An answer later than the safe window confirms nothing the watchdog still counts.
              const answer = await lease.keepaliveOnce({ deadline: Date.now() + this.safeMs });
              return { sentAt, ttl: Number(answer.TTL), error: undefined };
            } catch (error) {
              return { sentAt, ttl: undefined, error: error as Error };
            } finally {
              inFlight -= 1;
            }
          }),
        )
        .subscribe((result) => {
          if (this.lease !== lease) return;
          if (result.error !== undefined) {
            // etcd says the lease is gone (revoked, or expired): nothing to wait for.
            if (result.error.name === 'EtcdLeaseInvalidError') this.lose('etcd revoked the lease or let it expire');
            else debug('keepalive failed: %s', result.error.message);
            return;
          }
          if (result.ttl === undefined || result.ttl <= 0) return this.lose('etcd revoked the lease or let it expire');
          this.confirmedAt = Math.max(this.confirmedAt, result.sentAt);
          watchdog.unsubscribe();
          const left = this.confirmedAt + this.safeMs - performance.now();
          watchdog = timer(Math.max(0, left)).subscribe(() => this.lose(`no keepalive answered by etcd for ${formatDuration(this.safeMs)}`));
        }),
    );
    this.keeping = keeping;
    this.subscriptions.add(keeping);
  }

  /** Gives the lease up at once and asks for a new one in the background. */
  private lose(reason: string): void {
    if (!this.current.held) return;
    const lease = this.lease;
    this.keeping?.unsubscribe();
    this.lease = undefined;
    this.leaseId = undefined;
    debug('lease lost: %s', reason);
    this.state.next({ held: false, reason });
    if (lease !== undefined) {
      // Best effort: frees our keys at once when etcd is reachable (a revoke, not a wait for expiry).
      void lease.revoke({ deadline: Date.now() + 1000 }).catch(() => undefined);
    }
    if (!this.closed) void this.start((why, delayMs) => debug('no new lease yet: %s; again in %dms', why, delayMs)).catch(() => undefined);
  }

  /**
   * This node's record was deleted at `revision` (seen by the watch): if that is after the
   * current lease wrote it, the lease is gone (revoked, or expired), and this is the
   * quickest way to learn it; a keepalive on a revoked lease may simply go unanswered.
   */
  recordDeleted(revision: string): void {
    if (this.current.held && BigInt(revision) > this.recordRevision) this.lose("etcd revoked the lease or let it expire (this node's record is gone)");
  }

  /** Notes a rewrite of this node's record under the current lease (a new common port announced). */
  recordWritten(revision: string): void {
    if (BigInt(revision) > this.recordRevision) this.recordRevision = BigInt(revision);
  }

  /** True while the lease is held and `id` is it. */
  holds(id: string): boolean {
    return this.current.held && this.leaseId === id;
  }

  /** Revokes the lease (a clean shutdown: this node's groups are free at once). */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort(new Error('the node lease is closed'));
    this.subscriptions.unsubscribe();
    const lease = this.lease;
    this.lease = undefined;
    if (this.current.held) this.state.next({ held: false, reason: 'the node is shutting down' });
    this.state.complete();
    if (lease !== undefined) await lease.revoke({ deadline: Date.now() + 1000 }).catch(() => undefined);
  }
}
