import createDebug from 'debug';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { asyncScheduler, distinctUntilChanged, exhaustMap, map, merge, scan, skip, startWith, Subject, timer, type Observable, type SchedulerLike } from 'rxjs';
import { deadline } from '../net/index.js';
import { formatDuration, formatHostPort, type AppSpec, type HealthCheckSpec, type HostPort, type ProxyProtocolVersion } from '../config/index.js';
import { proxyHeader } from './proxy-header.js';

const debug = createDebug('ntp:client:health-checks');

/** One check's outcome. */
export type CheckResult = { ok: true } | { ok: false; reason: string };

/** A pooled app's health as the server is told it. */
export interface HealthChange {
  app: string;
  healthy: boolean;
  reason: string;
}

/** Where the counting of one app's checks stands. */
interface Verdict {
  healthy: boolean;
  /** Checks in a row that disagree with `healthy` (they flip it at the threshold). */
  streak: number;
  reason: string;
}

/**
 * Runs each pooled app's health check against its local target, every `interval`, the first
 * at once; emits a change when `failures` checks in a row failed (healthy → unhealthy) or
 * `successes` in a row passed (unhealthy → healthy). `healthyAtStart` is the state the server
 * already has for an app (a new session starts healthy; a reloaded check keeps what was last
 * reported). A check never overlaps the previous one (`exhaustMap`, timeout ≤ interval).
 * `scheduler` times the checks and their deadlines (a virtual one in tests).
 */
export function healthChanges(
  apps: readonly AppSpec[],
  healthyAtStart: (app: string) => boolean,
  scheduler: SchedulerLike = asyncScheduler,
  probe = checkOnce,
): Observable<HealthChange> {
  return merge(
    ...apps.flatMap((app) => {
      const check = app.healthCheck;
      if (app.pool === undefined || check === undefined) return [];
      const start: Verdict = { healthy: healthyAtStart(app.name), streak: 0, reason: 'not checked yet' };
      return [
        timer(0, check.intervalMs, scheduler).pipe(
          exhaustMap(() => probe(app.local, check, app.proxyProtocol, scheduler)),
          scan((verdict, result) => nextVerdict(verdict, result, check), start),
          // Compared with the state the server already has (the first check may flip it): only changes are news.
          startWith(start),
          distinctUntilChanged((a, b) => a.healthy === b.healthy),
          skip(1),
          map((verdict) => ({ app: app.name, healthy: verdict.healthy, reason: verdict.reason })),
        ),
      ];
    }),
  );
}

/** Counts one more result: a disagreeing streak reaching its threshold flips the verdict. */
export function nextVerdict(verdict: Verdict, result: CheckResult, check: HealthCheckSpec): Verdict {
  const reason = result.ok ? 'check passed' : result.reason;
  if (result.ok === verdict.healthy) return { healthy: verdict.healthy, streak: 0, reason };
  const streak = verdict.streak + 1;
  const threshold = verdict.healthy ? check.failures : check.successes;
  return streak >= threshold ? { healthy: !verdict.healthy, streak: 0, reason } : { healthy: verdict.healthy, streak, reason: verdict.reason };
}

/**
 * One TCP or HTTP check of `target`, bounded by the check's timeout. Never rejects. An HTTP
 * check of a `proxyProtocol` app starts with a header naming no user (v1 UNKNOWN, v2 LOCAL),
 * as a load balancer's checks do: such an app refuses a request without one.
 */
export function checkOnce(
  target: HostPort,
  check: HealthCheckSpec,
  proxyProtocol?: ProxyProtocolVersion,
  scheduler: SchedulerLike = asyncScheduler,
): Promise<CheckResult> {
  const where = formatHostPort(target);
  return new Promise((resolve) => {
    const settled$ = new Subject<void>();
    let settled = false;
    let cancel = (): void => {};
    const done = (result: CheckResult): void => {
      if (settled) return;
      settled = true;
      settled$.next();
      if (!result.ok) debug('%s: check failed: %s', where, result.reason);
      resolve(result);
    };
    deadline(check.timeoutMs, settled$, scheduler).subscribe(() => {
      done({ ok: false, reason: `${where}: no answer within ${formatDuration(check.timeoutMs)}` });
      cancel();
    });
    if (check.type === 'tcp') {
      const socket = connect({ host: target.host, port: target.port });
      cancel = () => socket.destroy();
      socket.once('connect', () => {
        // Connected is all a TCP check asks: close at once, nothing sent.
        socket.destroy();
        done({ ok: true });
      });
      socket.once('error', (error: NodeJS.ErrnoException) => done({ ok: false, reason: `${where}: ${error.code ?? error.message}` }));
      return;
    }
    const withHeader = (): Socket => {
      const socket = connect({ host: target.host, port: target.port });
      // Queued until connected: the header leaves before the request.
      socket.write(proxyHeader(proxyProtocol!, undefined));
      return socket;
    };
    const options = {
      host: target.host,
      port: target.port,
      path: check.path ?? '/',
      method: 'GET',
      headers: { 'user-agent': 'groupclient-health-check', connection: 'close' },
    } as const;
    // Without an agent: a fresh conn per check (an agent would also ignore createConnection).
    const req = request(proxyProtocol === undefined ? { ...options, agent: false } : { ...options, createConnection: withHeader }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      done(status >= 200 && status < 300 ? { ok: true } : { ok: false, reason: `${where}: GET ${check.path ?? '/'} answered HTTP ${status}` });
      req.destroy();
    });
    cancel = () => req.destroy();
    req.once('error', (error: NodeJS.ErrnoException) => done({ ok: false, reason: `${where}: ${error.code ?? error.message}` }));
    req.end();
  });
}
