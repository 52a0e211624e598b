import { z } from 'zod';
import { isGroupName } from './group-name.js';
import { section } from './sections.js';
import { duration, formatDuration, port, problem, wholeNumber } from './values.js';
import { domainName } from './vhost-app.js';

/** How a pool spreads its users over its live, healthy members. */
export type Balance = 'round_robin' | 'least_conn';
export const BALANCES = ['round_robin', 'least_conn'] as const satisfies readonly Balance[];

/**
 * How a groupclient checks a pooled app's local target. A member is reported unhealthy after
 * `failures` checks failed in a row, and healthy again after `successes` passed in a row: one
 * lucky answer from a flapping app does not bring its users back.
 */
export interface HealthCheckSpec {
  readonly type: 'tcp' | 'http';
  /** `http` only: the path asked for with GET; a 2xx answer passes. */
  readonly path?: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly failures: number;
  readonly successes: number;
}

export const HEALTH_CHECK_DEFAULTS: HealthCheckSpec = Object.freeze({ type: 'tcp', intervalMs: 10_000, timeoutMs: 3_000, failures: 3, successes: 2 });
const MIN_INTERVAL_MS = 100;
const MAX_THRESHOLD = 100;

const POOL_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;
const POOL_NAME_EXPECTED = problem('expected a pool name of letters, digits, "-", "_" or "."');

/** A pool name follows the app-name rule: it appears in metrics labels, URLs and log lines. */
export const poolName = z
  .string(POOL_NAME_EXPECTED)
  .regex(POOL_NAME, POOL_NAME_EXPECTED)
  .meta({ description: 'A shared pool: apps of several groups with the same pool share its public port' });

const PATH_EXPECTED = problem('expected a URL path starting with "/" (printable, no spaces)');

/** An app's `healthCheck:` (only on pooled apps); absent, a TCP check with the defaults. */
export const healthCheckSchema = section({
  type: z.enum(['tcp', 'http'], problem('expected tcp or http')).default(HEALTH_CHECK_DEFAULTS.type),
  path: z
    .string(PATH_EXPECTED)
    .regex(/^\/[\x21-\x7e]{0,1023}$/, PATH_EXPECTED)
    .optional()
    .meta({ description: 'http only: the path asked for with GET (default /); a 2xx answer passes' }),
  interval: duration.default(HEALTH_CHECK_DEFAULTS.intervalMs),
  timeout: duration.optional().meta({ description: 'At most the interval (default 3s, or the interval if shorter)' }),
  failures: wholeNumber(1, MAX_THRESHOLD)
    .default(HEALTH_CHECK_DEFAULTS.failures)
    .meta({ description: 'Failed checks in a row that make the member unhealthy' }),
  successes: wholeNumber(1, MAX_THRESHOLD).default(HEALTH_CHECK_DEFAULTS.successes).meta({ description: 'Passed checks in a row that make it healthy again' }),
})
  .meta({ description: 'How the groupclient checks a pooled app: an unhealthy member gets no new users' })
  .transform(({ type, path, interval, timeout, failures, successes }, ctx): HealthCheckSpec => {
    if (path !== undefined && type !== 'http') ctx.addIssue({ code: 'custom', path: ['path'], message: 'a path needs type: http' });
    if (interval < MIN_INTERVAL_MS) ctx.addIssue({ code: 'custom', path: ['interval'], message: `must be at least ${formatDuration(MIN_INTERVAL_MS)}` });
    const timeoutMs = timeout ?? Math.min(HEALTH_CHECK_DEFAULTS.timeoutMs, interval);
    if (timeoutMs < 1 || timeoutMs > interval)
      ctx.addIssue({ code: 'custom', path: ['timeout'], message: `must be from 1ms to the interval (${formatDuration(interval)}): checks never overlap` });
    return Object.freeze({ type, ...(type === 'http' ? { path: path ?? '/' } : {}), intervalMs: interval, timeoutMs, failures, successes });
  });

const GROUP_NAME_EXPECTED = problem('expected a group name');
const groupName = z.string(GROUP_NAME_EXPECTED).refine((name) => isGroupName(name), GROUP_NAME_EXPECTED);

/** `pools.NAME` in commonserver.yaml: what the server fixes for a pool, and who may join it. */
const poolSchema = section({
  remotePort: port({ allowZero: false }).optional().meta({ description: "The pool's public port; unset: the first registered member's remotePort fixes it" }),
  balance: z
    .enum(BALANCES, problem(`expected ${BALANCES.join(' or ')}`))
    .default('round_robin')
    .meta({ description: 'round_robin: members in turn; least_conn: the member with the fewest open conns' }),
  groups: z
    .array(groupName, problem('expected a list of group names'))
    .min(1, problem('expected a list of group names'))
    .optional()
    .meta({ description: 'The only groups that may join; unset: any registered group' }),
  domains: z
    .array(domainName, problem('expected a list of host names'))
    .min(1, problem('expected a list of host names'))
    .optional()
    .meta({ description: "A pool of http or https apps: the names every member's domains must be; unset: the first registered member's" }),
}).transform(({ remotePort, balance, groups, domains }, ctx) => {
  if (remotePort !== undefined && domains !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['domains'], message: 'a pool has a public port (tcp apps) or names (http, https apps), not both' });
  }
  return Object.freeze({
    balance,
    ...(remotePort === undefined ? {} : { remotePort }),
    ...(groups === undefined ? {} : { groups: Object.freeze(groups) as readonly string[] }),
    ...(domains === undefined ? {} : { domains: Object.freeze([...new Set(domains)]) as readonly string[] }),
  });
});

export type PoolConfig = z.output<typeof poolSchema>;
export type PoolsConfig = Readonly<Record<string, PoolConfig>>;

/** `pools:` in commonserver.yaml. */
export const poolsSchema = z
  .record(
    poolName,
    z.preprocess((value) => value ?? {}, poolSchema),
  )
  .transform((pools): PoolsConfig => Object.freeze(pools))
  .meta({ description: 'Shared pools: public ports or vhost names served by several groups (apps with pool: NAME)' });

/**
 * An app's `pool` and `healthCheck` as the code reads them: a pooled app always has a check (a
 * TCP one by default); a check without a pool, or a pooled UDP app, is an issue at that field.
 */
export function poolMembership(
  { type, pool, healthCheck }: { type: string; pool?: string | undefined; healthCheck?: HealthCheckSpec | undefined },
  ctx: z.RefinementCtx,
): { pool?: string; healthCheck?: HealthCheckSpec } {
  if (healthCheck !== undefined && pool === undefined) {
    ctx.addIssue({ code: 'custom', path: ['healthCheck'], message: 'a health check decides which member of a pool gets users: add pool: NAME, or remove it' });
  }
  // A pool hands each user's connection (or HTTP/TLS conn) to one member; a UDP app's users are
  // sessions keyed by address on a port of its own, which no pool routes.
  if (pool !== undefined && type === 'udp') {
    ctx.addIssue({
      code: 'custom',
      path: ['pool'],
      message: 'pool applies to tcp, http and https apps, not to type: udp (a pool spreads connections over its members)',
    });
  }
  // The check speaks plain HTTP; an https app's local server expects a TLS handshake and would fail every one.
  if (type === 'https' && healthCheck?.type === 'http') {
    ctx.addIssue({
      code: 'custom',
      path: ['healthCheck', 'type'],
      message: 'an https app is checked with type: tcp (an http check speaks plain HTTP, not TLS)',
    });
  }
  return pool === undefined ? {} : { pool, healthCheck: healthCheck ?? HEALTH_CHECK_DEFAULTS };
}
