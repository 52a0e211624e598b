import { dirname, resolve } from 'node:path';
import { parseDuration, type Parsed } from './values.js';
import type { YamlFile } from './yaml-file.js';

/** How the common port is spoken. TLS unless `plaintext: true` is written in the file. */
export type TransportConfig =
  | { readonly plaintext: true }
  | {
      readonly plaintext: false;
      /** Absolute paths; created (self-signed) on first start when both are missing. */
      readonly certFile: string;
      readonly keyFile: string;
      /** Mutual TLS: clients must present a certificate signed by this CA. */
      readonly clientCaFile?: string;
    };

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** What the registry's groups may ask for; checked at login and activation. */
export interface PolicyConfig {
  /** Public ports groups may bind; undefined = any. */
  readonly allowPorts?: readonly PortRange[];
  /** Groups active at once. */
  readonly maxGroups?: number;
  readonly maxAppsPerGroup?: number;
}

/** Failed logins per source address: slowed after `slowAfter`, refused after `blockAfter`. */
export interface LoginLimitConfig {
  readonly windowMs: number;
  readonly slowAfter: number;
  readonly slowByMs: number;
  readonly blockAfter: number;
  readonly blockForMs: number;
}

/** Caps on what a peer can make the server hold. */
export interface LimitsConfig {
  /** UserConns held per app while they wait for a work conn. */
  readonly maxPendingUsersPerApp: number;
  /** Connections on the common port that have not finished login or join yet. */
  readonly maxHandshakes: number;
  readonly maxHandshakesPerSource: number;
  /**
   * Bytes that may wait for a client that does not read its common conn: above a quarter of
   * it, its frames are not read until they are out; above all of it, it is cut off (SLOW_PEER).
   */
  readonly maxControlQueueBytes?: number;
}

export interface SecurityConfig {
  readonly tls: TransportConfig;
  readonly policy: PolicyConfig;
  readonly loginLimit: LoginLimitConfig;
  readonly limits: LimitsConfig;
}

export const LOGIN_LIMIT_DEFAULTS: LoginLimitConfig = Object.freeze({ windowMs: 60_000, slowAfter: 3, slowByMs: 1000, blockAfter: 10, blockForMs: 300_000 });
export const LIMITS_DEFAULTS: LimitsConfig = Object.freeze({ maxPendingUsersPerApp: 128, maxHandshakes: 1024, maxHandshakesPerSource: 64, maxControlQueueBytes: 4 * 1024 * 1024 });
/** A burst of frames in one turn may pass a quarter of a smaller queue, and stop reading a good client. */
const MIN_CONTROL_QUEUE_BYTES = 256 * 1024;
export const SECURITY_KEYS = ['tls', 'plaintext', 'allowPorts', 'maxGroups', 'maxAppsPerGroup', 'loginLimit', 'limits'] as const;

/** Reads the security sections of commonserver.yaml (paths relative to the file). */
export function parseSecurityConfig(yaml: YamlFile, root: Record<string, unknown>): SecurityConfig {
  const base = dirname(yaml.file);
  let transport: TransportConfig;
  if (root.plaintext !== undefined && typeof root.plaintext !== 'boolean') throw yaml.error(['plaintext'], 'expected true or false');
  if (root.plaintext === true) {
    if (root.tls !== undefined) throw yaml.error(['plaintext'], 'plaintext: true and a tls section contradict each other; keep one');
    transport = { plaintext: true };
  } else {
    const tls = yaml.mapAt(['tls'], root.tls ?? {});
    yaml.onlyKeys(['tls'], tls, ['cert', 'key', 'clientCa']);
    const path = (key: string, fallback?: string): string | undefined => {
      const value = tls[key] ?? fallback;
      if (value === undefined) return undefined;
      if (typeof value !== 'string' || value === '') throw yaml.error(['tls', key], 'expected a file path');
      return resolve(base, value);
    };
    const clientCaFile = path('clientCa');
    transport = {
      plaintext: false,
      certFile: path('cert', './tls/commonserver.crt')!,
      keyFile: path('key', './tls/commonserver.key')!,
      ...(clientCaFile ? { clientCaFile } : {}),
    };
  }

  const policy: PolicyConfig = {
    ...(root.allowPorts === undefined ? {} : { allowPorts: yaml.expect(['allowPorts'], parsePortRanges(root.allowPorts)) }),
    ...(root.maxGroups === undefined ? {} : { maxGroups: yaml.expect(['maxGroups'], count(root.maxGroups)) }),
    ...(root.maxAppsPerGroup === undefined ? {} : { maxAppsPerGroup: yaml.expect(['maxAppsPerGroup'], count(root.maxAppsPerGroup)) }),
  };

  const limit = yaml.mapAt(['loginLimit'], root.loginLimit ?? {});
  yaml.onlyKeys(['loginLimit'], limit, ['window', 'slowAfter', 'slowBy', 'blockAfter', 'blockFor']);
  const d = LOGIN_LIMIT_DEFAULTS;
  const loginLimit: LoginLimitConfig = {
    windowMs: limit.window === undefined ? d.windowMs : yaml.expect(['loginLimit', 'window'], parseDuration(limit.window)),
    slowAfter: limit.slowAfter === undefined ? d.slowAfter : yaml.expect(['loginLimit', 'slowAfter'], count(limit.slowAfter)),
    slowByMs: limit.slowBy === undefined ? d.slowByMs : yaml.expect(['loginLimit', 'slowBy'], parseDuration(limit.slowBy)),
    blockAfter: limit.blockAfter === undefined ? d.blockAfter : yaml.expect(['loginLimit', 'blockAfter'], count(limit.blockAfter)),
    blockForMs: limit.blockFor === undefined ? d.blockForMs : yaml.expect(['loginLimit', 'blockFor'], parseDuration(limit.blockFor)),
  };
  if (loginLimit.blockAfter <= loginLimit.slowAfter) {
    throw yaml.error(['loginLimit', 'blockAfter'], `must be larger than slowAfter (${loginLimit.slowAfter})`);
  }

  const caps = yaml.mapAt(['limits'], root.limits ?? {});
  yaml.onlyKeys(['limits'], caps, Object.keys(LIMITS_DEFAULTS));
  const limits = Object.fromEntries(
    Object.entries(LIMITS_DEFAULTS).map(([key, fallback]) => [key, caps[key] === undefined ? fallback : yaml.expect(['limits', key], count(caps[key]))]),
  ) as unknown as LimitsConfig;
  if (limits.maxControlQueueBytes! < MIN_CONTROL_QUEUE_BYTES) {
    throw yaml.error(['limits', 'maxControlQueueBytes'], `must be at least ${MIN_CONTROL_QUEUE_BYTES} (256 KiB)`);
  }

  return Object.freeze({ tls: Object.freeze(transport), policy: Object.freeze(policy), loginLimit: Object.freeze(loginLimit), limits: Object.freeze(limits) });
}

/** `["6000-6999", 7022]` or a single `"6000-6999"`. */
export function parsePortRanges(value: unknown): Parsed<PortRange[]> {
  const items = Array.isArray(value) ? value : [value];
  const ranges: PortRange[] = [];
  for (const item of items) {
    const match = typeof item === 'number' ? [String(item), String(item), String(item)] : /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5}))?\s*$/.exec(String(item));
    const from = match ? Number(match[1]) : NaN;
    const to = match ? Number(match[2] ?? match[1]) : NaN;
    if (!(from >= 1 && to <= 65535 && from <= to)) {
      return { ok: false, problem: `expected port ranges such as ["6000-6999", 7022], got ${JSON.stringify(item)}` };
    }
    ranges.push(Object.freeze({ from, to }));
  }
  return { ok: true, value: ranges };
}

export function formatPortRanges(ranges: readonly PortRange[]): string {
  return ranges.map(({ from, to }) => (from === to ? `${from}` : `${from}-${to}`)).join(', ');
}

function count(value: unknown): Parsed<number> {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1) return { ok: true, value };
  return { ok: false, problem: `expected a whole number of at least 1, got ${JSON.stringify(value)}` };
}
