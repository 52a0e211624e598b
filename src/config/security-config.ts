import { resolve } from 'node:path';
import { z } from 'zod';
import { MUX_INITIAL_WINDOW } from '../protocol/mux-codec.js';
import { filePath } from './group-security.js';
import { DEFAULT_MAX_PORT_RANGE, PORT_RANGE_LIMIT } from './port-range.js';
import { section } from './sections.js';
import { DEFAULT_WEBSOCKET_PATH, websocketPath } from './server-route.js';
import { duration, MAX_MUX_STREAMS_LIMIT, problem, wholeNumber } from './values.js';

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
      /** Where clients with `transport: ws|wss` upgrade on the common port (default DEFAULT_WEBSOCKET_PATH). */
      readonly websocketPath?: string;
    };

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

export const LOGIN_LIMIT_DEFAULTS = Object.freeze({ windowMs: 60_000, slowAfter: 3, slowByMs: 1000, blockAfter: 10, blockForMs: 300_000 });
export const LIMITS_DEFAULTS = Object.freeze({
  maxPendingUsersPerApp: 128,
  maxHandshakes: 1024,
  maxHandshakesPerSource: 64,
  maxControlQueueBytes: 4 * 1024 * 1024,
  maxMuxStreams: 256,
  muxBudgetBytes: 64 * 1024 * 1024,
  maxPortRange: DEFAULT_MAX_PORT_RANGE,
});

/** A burst of frames in one turn may pass a quarter of a smaller queue, and stop reading a good client. */
const MIN_CONTROL_QUEUE_BYTES = 256 * 1024;
const DEFAULT_CERT = './tls/commonserver.crt';
const DEFAULT_KEY = './tls/commonserver.key';

const PORT_RANGES_EXPECTED = problem('expected port ranges such as ["6000-6999", 7022]');
const PORT_RANGE = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5}))?\s*$/;
const portRange = z
  .union([z.int(PORT_RANGES_EXPECTED), z.string(PORT_RANGES_EXPECTED).regex(PORT_RANGE, PORT_RANGES_EXPECTED)], PORT_RANGES_EXPECTED)
  .transform((item, ctx): PortRange => {
    const match = typeof item === 'number' ? [String(item), String(item), String(item)] : PORT_RANGE.exec(item)!;
    const from = Number(match[1]);
    const to = Number(match[2] ?? match[1]);
    if (!(from >= 1 && to <= 65535 && from <= to)) ctx.addIssue({ code: 'custom', message: PORT_RANGES_EXPECTED.error({ input: item }) });
    return Object.freeze({ from, to });
  });

const loginLimit = section({
  window: duration.default(LOGIN_LIMIT_DEFAULTS.windowMs),
  slowAfter: wholeNumber(1).default(LOGIN_LIMIT_DEFAULTS.slowAfter),
  slowBy: duration.default(LOGIN_LIMIT_DEFAULTS.slowByMs),
  blockAfter: wholeNumber(1).default(LOGIN_LIMIT_DEFAULTS.blockAfter),
  blockFor: duration.default(LOGIN_LIMIT_DEFAULTS.blockForMs),
}).meta({ description: 'Failed logins per source address within window: slowed by slowBy after slowAfter, refused for blockFor after blockAfter' });

const limits = section({
  maxPendingUsersPerApp: wholeNumber(1)
    .default(LIMITS_DEFAULTS.maxPendingUsersPerApp)
    .meta({ description: 'User connections held per app while they wait for a work conn' }),
  maxHandshakes: wholeNumber(1)
    .default(LIMITS_DEFAULTS.maxHandshakes)
    .meta({ description: 'Connections on the common port that have not logged in or joined yet' }),
  maxHandshakesPerSource: wholeNumber(1).default(LIMITS_DEFAULTS.maxHandshakesPerSource),
  maxControlQueueBytes: wholeNumber(
    MIN_CONTROL_QUEUE_BYTES,
    Number.MAX_SAFE_INTEGER,
    `expected a whole number of at least ${MIN_CONTROL_QUEUE_BYTES} (256 KiB)`,
  )
    .default(LIMITS_DEFAULTS.maxControlQueueBytes)
    .meta({
      description: 'Bytes that may wait for a peer that does not read its control conn: above a quarter it is not read, at the cap it is cut off (SLOW_PEER)',
    }),
  maxMuxStreams: wholeNumber(1, MAX_MUX_STREAMS_LIMIT, `expected a whole number of streams from 1 to ${MAX_MUX_STREAMS_LIMIT}`)
    .default(LIMITS_DEFAULTS.maxMuxStreams)
    .meta({ description: "Users on one session's mux conn at once; a user past it is reset" }),
  muxBudgetBytes: wholeNumber(MUX_INITIAL_WINDOW, Number.MAX_SAFE_INTEGER, `expected a whole number of bytes of at least ${MUX_INITIAL_WINDOW}`)
    .default(LIMITS_DEFAULTS.muxBudgetBytes)
    .meta({
      description: `Bytes the streams of one session's mux conn may hold unread in all: at least maxMuxStreams times ${MUX_INITIAL_WINDOW} (each stream's initial window); windows grow from the rest`,
    }),
  maxPortRange: wholeNumber(1, PORT_RANGE_LIMIT, `expected a whole number of ports from 1 to ${PORT_RANGE_LIMIT}`)
    .default(LIMITS_DEFAULTS.maxPortRange)
    .meta({ description: 'Ports one remotePort range of a group file may span (each is an app with its own public port); a larger range refuses the group' }),
});

/** The security fields of commonserver.yaml (paths relative to the file). */
export function securityShape(baseDir: string) {
  return {
    tls: section({
      cert: filePath(baseDir)
        .optional()
        .meta({ description: `Certificate file (default ${DEFAULT_CERT}; created with the key on first start)` }),
      key: filePath(baseDir)
        .optional()
        .meta({ description: `Key file (default ${DEFAULT_KEY})` }),
      clientCa: filePath(baseDir).optional().meta({ description: 'Mutual TLS: clients must present a certificate signed by this CA' }),
      websocketPath: websocketPath.optional().meta({
        description: `The path on the common port where clients with transport: ws / wss upgrade (default ${DEFAULT_WEBSOCKET_PATH}); our TLS runs inside the WebSocket`,
      }),
    }).optional(),
    plaintext: z.boolean(problem('expected true or false')).optional().meta({ description: 'No TLS on the common port (clients then need --plaintext)' }),
    allowPorts: z
      .union([portRange.transform((one) => [one]), z.array(portRange, PORT_RANGES_EXPECTED)], PORT_RANGES_EXPECTED)
      .optional()
      .meta({ description: 'Public ports groups may bind, e.g. ["6000-6999", 7022]; any when absent' }),
    maxGroups: wholeNumber(1).optional().meta({ description: 'Groups active at once' }),
    maxAppsPerGroup: wholeNumber(1).optional(),
    loginLimit: loginLimit.prefault({}),
    limits: limits.prefault({}),
  };
}

type SecurityFields = z.output<z.ZodObject<ReturnType<typeof securityShape>>>;

/** The security sections as the server reads them, checked against each other. */
export function securityConfig(fields: SecurityFields, baseDir: string, ctx: z.RefinementCtx) {
  if (fields.plaintext === true && fields.tls !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['plaintext'], message: 'plaintext: true and a tls section contradict each other; keep one' });
  }
  const tls: TransportConfig =
    fields.plaintext === true
      ? { plaintext: true }
      : {
          plaintext: false,
          certFile: fields.tls?.cert ?? resolve(baseDir, DEFAULT_CERT),
          keyFile: fields.tls?.key ?? resolve(baseDir, DEFAULT_KEY),
          ...(fields.tls?.clientCa ? { clientCaFile: fields.tls.clientCa } : {}),
          ...(fields.tls?.websocketPath ? { websocketPath: fields.tls.websocketPath } : {}),
        };
  const { window, slowAfter, slowBy, blockAfter, blockFor } = fields.loginLimit;
  if (blockAfter <= slowAfter) ctx.addIssue({ code: 'custom', path: ['loginLimit', 'blockAfter'], message: `must be larger than slowAfter (${slowAfter})` });
  const { maxMuxStreams, muxBudgetBytes } = fields.limits;
  if (muxBudgetBytes < maxMuxStreams * MUX_INITIAL_WINDOW) {
    ctx.addIssue({
      code: 'custom',
      path: ['limits', 'muxBudgetBytes'],
      message: `must be at least ${maxMuxStreams * MUX_INITIAL_WINDOW} (maxMuxStreams ${maxMuxStreams} times the ${MUX_INITIAL_WINDOW}-byte initial window)`,
    });
  }
  return {
    tls: Object.freeze(tls),
    /** What the registry's groups may ask for; checked at login and activation. */
    policy: Object.freeze({
      ...(fields.allowPorts ? { allowPorts: Object.freeze(fields.allowPorts) as readonly PortRange[] } : {}),
      ...(fields.maxGroups ? { maxGroups: fields.maxGroups } : {}),
      ...(fields.maxAppsPerGroup ? { maxAppsPerGroup: fields.maxAppsPerGroup } : {}),
      // Always set from the file (it has a default); optional for a server built in code.
      ...(fields.limits.maxPortRange ? { maxPortRange: fields.limits.maxPortRange } : {}),
    }),
    /** Failed logins per source address: slowed after `slowAfter`, refused after `blockAfter`. */
    loginLimit: Object.freeze({ windowMs: window, slowAfter, slowByMs: slowBy, blockAfter, blockForMs: blockFor }),
    /** Caps on what a peer can make the server hold. */
    limits: Object.freeze(fields.limits),
  };
}

export type SecurityConfig = ReturnType<typeof securityConfig>;
export type PolicyConfig = SecurityConfig['policy'];
export type LoginLimitConfig = SecurityConfig['loginLimit'];
export type LimitsConfig = SecurityConfig['limits'];

export function formatPortRanges(ranges: readonly PortRange[]): string {
  return ranges.map(({ from, to }) => (from === to ? `${from}` : `${from}-${to}`)).join(', ');
}
