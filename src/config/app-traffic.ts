import { z } from 'zod';
import { section } from './sections.js';
import { problem, type Parsed } from './values.js';

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

/** Below this a single socket read (up to 64 KiB) would stall its user for a minute or more. */
const MIN_BANDWIDTH = 1024;
const MAX_BANDWIDTH = 1024 ** 4;
const RATE_EXPECTED = 'expected a rate in bytes per second such as 512KB, 10MB or 1GB';
const RATE_RANGE = 'expected a rate from 1KB to 1024GB per second';

const byteRate = z
  // Each branch bounded, so that the JSON Schema says anyOf (editors) and not a bare type list.
  .union(
    [z.number(problem(RATE_EXPECTED)).min(MIN_BANDWIDTH, problem(RATE_RANGE)), z.string(problem(RATE_EXPECTED)).min(1, problem(RATE_EXPECTED))],
    problem(RATE_EXPECTED),
  )
  .transform((value, ctx) => {
    const parsed = parseByteRate(value);
    if (parsed.ok) return parsed.value;
    ctx.issues.push({ code: 'custom', input: value, message: parsed.problem });
    return z.NEVER;
  })
  .meta({ description: 'Bytes per second: a number, or with B, KB, MB, GB (powers of 1024), "/s" optional; at least 1KB. Bits are refused' });

const BANDWIDTH_EMPTY = 'expected in: (users to app), out: (app to users) or both, such as { in: 10MB, out: 10MB }';
const bandwidth = section({
  in: byteRate.optional().meta({ description: 'Users to app, for all users of the app together' }),
  out: byteRate.optional().meta({ description: 'App to users, for all users of the app together' }),
})
  .refine((limit) => limit.in !== undefined || limit.out !== undefined, BANDWIDTH_EMPTY)
  .transform((limit): BandwidthLimit =>
    Object.freeze({ ...(limit.in === undefined ? {} : { in: limit.in }), ...(limit.out === undefined ? {} : { out: limit.out }) }),
  );

const PROXY_EXPECTED = problem('expected v1 or v2 (the PROXY protocol version the local app reads)');

/**
 * How an app's traffic is shaped on its way; part of each app in a group file. `proxyProtocol`
 * is read by the groupclient (the local app expects the header); `bandwidth` by the server,
 * which enforces it where users enter, on the aggregate of the app's users.
 */
export const appTrafficShape = {
  proxyProtocol: z
    .enum(['v1', 'v2'], PROXY_EXPECTED)
    .optional()
    .meta({ description: 'The groupclient writes a PROXY protocol header (v1 text, v2 binary) naming the real user before the first byte' }),
  bandwidth: bandwidth.optional().meta({ description: "Bytes per second for all the app's users together: in = users to app, out = app to users" }),
};

const RATE = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?(?:\/s)?$/;
const UNIT_BYTES: Record<string, number> = { B: 1, KB: 1024, KiB: 1024, MB: 1024 ** 2, MiB: 1024 ** 2, GB: 1024 ** 3, GiB: 1024 ** 3 };
const BITS = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)i?(?:b|bit|bps)(?:\/s)?$/;
/** Network rates are decimal: 1 Mbit/s is 10^6 bits per second. */
const BIT_PREFIX: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9 };

/**
 * A rate in bytes per second: a bare number, or a number with B, KB, MB or GB (powers of 1024,
 * as frp reads them; KiB, MiB and GiB mean the same), optionally followed by "/s". Bits are
 * refused rather than guessed: "100Mb" and "100Mbps" say what they would be in bytes.
 */
export function parseByteRate(value: unknown): Parsed<number> {
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : undefined;
  const match = text === undefined ? null : RATE.exec(text);
  if (match) {
    const bytes = Math.round(Number(match[1]) * UNIT_BYTES[match[2] ?? 'B']!);
    if (bytes >= MIN_BANDWIDTH && bytes <= MAX_BANDWIDTH) return { ok: true, value: bytes };
    return { ok: false, problem: `${RATE_RANGE}, got ${JSON.stringify(value)}` };
  }
  const bits = text === undefined ? null : BITS.exec(text);
  if (bits) {
    const bytes = (Number(bits[1]) * BIT_PREFIX[bits[2]!.toLowerCase()]!) / 8;
    return {
      ok: false,
      problem: `bandwidth is in bytes per second (B, KB, MB, GB), not bits: ${JSON.stringify(value)} would be ${Math.round(bytes)} bytes per second, about ${describeBytes(bytes)}`,
    };
  }
  return { ok: false, problem: `${RATE_EXPECTED}, got ${JSON.stringify(value)}` };
}

function describeBytes(bytes: number): string {
  for (const [unit, size] of [
    ['GB', 1024 ** 3],
    ['MB', 1024 ** 2],
    ['KB', 1024],
  ] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))}${unit}`;
  }
  return `${Math.round(bytes)}B`;
}
