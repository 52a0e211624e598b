import type { Parsed } from './values.js';
import type { YamlFile } from './yaml-file.js';

/** Which PROXY protocol header the groupclient writes to the local app before the user's bytes. */
export type ProxyProtocolVersion = 'v1' | 'v2';

/**
 * An app's bandwidth cap in bytes per second, shared by all its users at once. `in` is what
 * users send towards the app, `out` what the app sends back to them; a missing side is unlimited.
 */
export interface BandwidthLimit {
  readonly in?: number;
  readonly out?: number;
}

/** How an app's traffic is shaped on its way: the header before it, the rate it may flow at. */
export interface AppTraffic {
  /** Client side: the local app expects a PROXY protocol header naming the real user. */
  readonly proxyProtocol?: ProxyProtocolVersion;
  /** Server side: enforced where users enter, on the aggregate of the app's users. */
  readonly bandwidth?: BandwidthLimit;
}

export const APP_TRAFFIC_KEYS = ['proxyProtocol', 'bandwidth'] as const;
const BANDWIDTH_KEYS = ['in', 'out'] as const;

/** Below this a single socket read (up to 64 KiB) would stall its user for a minute or more. */
const MIN_BANDWIDTH = 1024;
const MAX_BANDWIDTH = 1024 ** 4;

export function parseAppTraffic(yaml: YamlFile, path: (string | number)[], app: Record<string, unknown>): AppTraffic {
  const traffic: { proxyProtocol?: ProxyProtocolVersion; bandwidth?: BandwidthLimit } = {};
  if (app.proxyProtocol !== undefined) {
    if (app.proxyProtocol !== 'v1' && app.proxyProtocol !== 'v2') {
      throw yaml.error([...path, 'proxyProtocol'], `expected v1 or v2 (the PROXY protocol version the local app reads), got ${JSON.stringify(app.proxyProtocol)}`);
    }
    traffic.proxyProtocol = app.proxyProtocol;
  }
  if (app.bandwidth !== undefined) {
    const where = [...path, 'bandwidth'];
    const raw = yaml.mapAt(where, app.bandwidth);
    yaml.onlyKeys(where, raw, BANDWIDTH_KEYS);
    if (raw.in === undefined && raw.out === undefined) {
      throw yaml.error(where, 'expected in: (users to app), out: (app to users) or both, such as { in: 10MB, out: 10MB }');
    }
    const limit: { in?: number; out?: number } = {};
    for (const side of BANDWIDTH_KEYS) {
      if (raw[side] !== undefined) limit[side] = yaml.expect([...where, side], parseByteRate(raw[side]));
    }
    traffic.bandwidth = Object.freeze(limit);
  }
  return traffic;
}

const RATE = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?(?:\/s)?$/;
const UNIT_BYTES: Record<string, number> = { B: 1, KB: 1024, KiB: 1024, MB: 1024 ** 2, MiB: 1024 ** 2, GB: 1024 ** 3, GiB: 1024 ** 3 };
const BITS = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)i?(?:b|bit|bps)(?:\/s)?$/;
/** Network rates are decimal: 1 Mbit/s is 10^6 bits per second. */
const BIT_PREFIX: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9 };

/**
 * A rate in bytes per second: a bare number, or a number with B, KB, MB or GB (powers of 1024,
 * as frp reads them; KiB, MiB and GiB mean the same), optionally followed by "/s". Bits are
 * refused rather than guessed: "100Mb" and "100Mbps" say how to write them in bytes.
 */
export function parseByteRate(value: unknown): Parsed<number> {
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : undefined;
  const match = text === undefined ? null : RATE.exec(text);
  if (match) {
    const bytes = Math.round(Number(match[1]) * UNIT_BYTES[match[2] ?? 'B']!);
    if (bytes >= MIN_BANDWIDTH && bytes <= MAX_BANDWIDTH) return { ok: true, value: bytes };
    return { ok: false, problem: `expected a rate from 1KB to 1024GB per second, got ${JSON.stringify(value)}` };
  }
  const bits = text === undefined ? null : BITS.exec(text);
  if (bits) {
    const bytes = (Number(bits[1]) * BIT_PREFIX[bits[2]!.toLowerCase()]!) / 8;
    return { ok: false, problem: `bandwidth is in bytes per second (B, KB, MB, GB), not bits: ${JSON.stringify(value)} would be ${Math.round(bytes)} bytes per second, about ${describeBytes(bytes)}` };
  }
  return { ok: false, problem: `expected a rate in bytes per second such as 512KB, 10MB or 1GB, got ${JSON.stringify(value)}` };
}

function describeBytes(bytes: number): string {
  for (const [unit, size] of [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))}${unit}`;
  }
  return `${Math.round(bytes)}B`;
}
