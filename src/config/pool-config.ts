import { isGroupName } from './group-file.js';
import { parseDuration, parsePort, type Parsed } from './values.js';
import type { YamlFile } from './yaml-file.js';

type Path = (string | number)[];

/** How a pool spreads its users over its live, healthy members. */
export type Balance = 'round_robin' | 'least_conn';
export const BALANCES: readonly Balance[] = ['round_robin', 'least_conn'];

/** `pools.NAME` in commonserver.yaml: what the server fixes for a pool, and who may join it. */
export interface PoolConfig {
  /** The pool's public port; unset: the first registered member's remotePort fixes it. */
  readonly remotePort?: number;
  readonly balance: Balance;
  /** The only groups that may join; unset: any registered group. */
  readonly groups?: readonly string[];
}

export type PoolsConfig = Readonly<Record<string, PoolConfig>>;

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
const HEALTH_CHECK_KEYS = ['type', 'path', 'interval', 'timeout', 'failures', 'successes'] as const;
const POOL_KEYS = ['remotePort', 'balance', 'groups'] as const;

/** A pool name follows the app-name rule: it appears in metrics labels, URLs and log lines. */
export function isPoolName(name: unknown): name is string {
  return typeof name === 'string' && /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/.test(name);
}

/** An app's `healthCheck:` (only on pooled apps); absent, a TCP check with the defaults. */
export function parseHealthCheck(yaml: YamlFile, path: Path, raw: unknown): HealthCheckSpec {
  const d = HEALTH_CHECK_DEFAULTS;
  const check = yaml.mapAt(path, raw);
  yaml.onlyKeys(path, check, HEALTH_CHECK_KEYS);
  const type = check.type ?? d.type;
  if (type !== 'tcp' && type !== 'http') throw yaml.error([...path, 'type'], `expected tcp or http, got ${JSON.stringify(type)}`);
  let checkPath: string | undefined;
  if (check.path !== undefined) {
    if (type !== 'http') throw yaml.error([...path, 'path'], 'a path needs type: http');
    if (typeof check.path !== 'string' || !/^\/[\x21-\x7e]*$/.test(check.path) || check.path.length > 1024) {
      throw yaml.error([...path, 'path'], `expected a URL path starting with "/" (printable, no spaces), got ${JSON.stringify(check.path)}`);
    }
    checkPath = check.path;
  }
  const intervalMs = check.interval === undefined ? d.intervalMs : yaml.expect([...path, 'interval'], parseDuration(check.interval));
  if (intervalMs < MIN_INTERVAL_MS) throw yaml.error([...path, 'interval'], `must be at least ${MIN_INTERVAL_MS}ms`);
  const timeoutMs = check.timeout === undefined ? Math.min(d.timeoutMs, intervalMs) : yaml.expect([...path, 'timeout'], parseDuration(check.timeout));
  if (timeoutMs < 1 || timeoutMs > intervalMs) throw yaml.error([...path, 'timeout'], `must be from 1ms to the interval (${intervalMs}ms): checks never overlap`);
  const threshold = (key: 'failures' | 'successes'): number =>
    check[key] === undefined ? d[key] : yaml.expect([...path, key], wholeNumber(check[key], 1, MAX_THRESHOLD));
  return Object.freeze({
    type,
    ...(type === 'http' ? { path: checkPath ?? '/' } : {}),
    intervalMs,
    timeoutMs,
    failures: threshold('failures'),
    successes: threshold('successes'),
  });
}

/** `pools:` in commonserver.yaml. */
export function parsePoolsSection(yaml: YamlFile, raw: unknown): PoolsConfig {
  const pools: Record<string, PoolConfig> = {};
  const section = yaml.mapAt(['pools'], raw);
  for (const [name, value] of Object.entries(section)) {
    if (!isPoolName(name)) throw yaml.error(['pools', name], 'expected a pool name of letters, digits, "-", "_" or "." (at most 64)');
    const pool = yaml.mapAt(['pools', name], value ?? {});
    yaml.onlyKeys(['pools', name], pool, POOL_KEYS);
    const balance = pool.balance ?? 'round_robin';
    if (!BALANCES.includes(balance as Balance)) throw yaml.error(['pools', name, 'balance'], `expected ${BALANCES.join(' or ')}, got ${JSON.stringify(balance)}`);
    let groups: string[] | undefined;
    if (pool.groups !== undefined) {
      if (!Array.isArray(pool.groups) || pool.groups.length === 0) throw yaml.error(['pools', name, 'groups'], 'expected a list of group names');
      pool.groups.forEach((group: unknown, i: number) => {
        if (typeof group !== 'string' || !isGroupName(group)) throw yaml.error(['pools', name, 'groups', i], `expected a group name, got ${JSON.stringify(group)}`);
      });
      groups = [...(pool.groups as string[])];
    }
    pools[name] = Object.freeze({
      balance: balance as Balance,
      ...(pool.remotePort === undefined ? {} : { remotePort: yaml.expect(['pools', name, 'remotePort'], parsePort(pool.remotePort, { allowZero: false })) }),
      ...(groups ? { groups: Object.freeze(groups) } : {}),
    });
  }
  return Object.freeze(pools);
}

function wholeNumber(value: unknown, min: number, max: number): Parsed<number> {
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return { ok: true, value };
  return { ok: false, problem: `expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}` };
}
