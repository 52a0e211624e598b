import { z } from 'zod';

/**
 * Schemas for the value syntaxes our YAML files share. Each parses the human form (`10s`,
 * `host:port`) into what the code uses (milliseconds, `{ host, port }`) and, when it refuses a
 * value, says what it expected and quotes what it got.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/** The same message for every way a value can be wrong (wrong type, pattern or range). */
export function problem(expected: string): { error: (issue: { input?: unknown }) => string } {
  return { error: (issue) => `${expected}, got ${JSON.stringify(issue.input)}` };
}

/** Runs a value schema outside a file (a command-line flag): its problem or its value. */
function parseValue<T>(schema: z.ZodType<T>, value: unknown): Parsed<T> {
  const result = schema.safeParse(value);
  return result.success ? { ok: true, value: result.data } : { ok: false, problem: result.error.issues[0]!.message };
}

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const DURATION_EXPECTED = problem('expected a duration such as 10s, 500ms or 1m');

/** "10s", "500ms", "1.5m", "2h", or a bare number of milliseconds; parsed to milliseconds. */
export const duration = z
  .union(
    [
      z.number(DURATION_EXPECTED).min(0, DURATION_EXPECTED).refine(Number.isFinite, DURATION_EXPECTED),
      z.string(DURATION_EXPECTED).regex(DURATION, DURATION_EXPECTED),
    ],
    DURATION_EXPECTED,
  )
  .transform((value) => {
    if (typeof value === 'number') return Math.round(value);
    const [, amount, unit] = DURATION.exec(value)!;
    return Math.round(Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS]);
  })
  .meta({ description: 'A duration: 10s, 500ms, 1.5m, 2h, or a number of milliseconds' });

/**
 * Milliseconds written as people write durations, in the config's own syntax: 250ms, 1.5s,
 * 30s, 2m, 1h (never 30000ms). Whole minutes and hours in their unit, else seconds to a tenth.
 */
export function formatDuration(ms: number): string {
  const whole = Math.round(ms);
  if (whole < 1000) return `${whole}ms`;
  if (whole % 3_600_000 === 0) return `${whole / 3_600_000}h`;
  if (whole % 60_000 === 0) return `${whole / 60_000}m`;
  return `${Number((whole / 1000).toFixed(whole < 10_000 ? 1 : 0))}s`;
}

/** A whole number from `min` to `max`. */
export function wholeNumber(
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  expected = max === Number.MAX_SAFE_INTEGER ? `expected a whole number of at least ${min}` : `expected a whole number from ${min} to ${max}`,
) {
  const message = problem(expected);
  return z.int(message).min(min, message).max(max, message);
}

/** A whole number from `min` to `max`, as a number or a string of digits (a command-line value). */
export function parseCount(value: unknown, { min, max }: { min: number; max: number }): Parsed<number> {
  const number = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  const parsed = parseValue(wholeNumber(min, max), number);
  return parsed.ok ? parsed : { ok: false, problem: `expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}` };
}

/** The most pooled work conns a groupclient can be told to accept (each is a socket, TLS ~30 KB). */
export const MAX_POOLED_WORK_CONNS_LIMIT = 4096;
/** The most users a mux conn can be told to carry at once (on the client, each is a local dial: a file descriptor). */
export const MAX_MUX_STREAMS_LIMIT = 65_536;

/** The groupclient's count options (`--NAME N`), as its command line and `verify` read them. */
export const CLIENT_COUNT_OPTIONS = Object.freeze({
  'max-pooled-work-conns': { min: 0, max: MAX_POOLED_WORK_CONNS_LIMIT },
  'max-mux-streams': { min: 1, max: MAX_MUX_STREAMS_LIMIT },
});
export type ClientCountOption = keyof typeof CLIENT_COUNT_OPTIONS;

/** Each count option given, checked; the first bad one is named. */
export function parseClientCounts(
  values: Partial<Record<ClientCountOption, string>>,
): { ok: true; counts: Partial<Record<ClientCountOption, number>> } | { ok: false; option: ClientCountOption; problem: string } {
  const counts: Partial<Record<ClientCountOption, number>> = {};
  for (const option of Object.keys(CLIENT_COUNT_OPTIONS) as ClientCountOption[]) {
    if (values[option] === undefined) continue;
    const parsed = parseCount(values[option], CLIENT_COUNT_OPTIONS[option]);
    if (!parsed.ok) return { ok: false, option, problem: parsed.problem };
    counts[option] = parsed.value;
  }
  return { ok: true, counts };
}

export interface HostPort {
  host: string;
  port: number;
}

export function port({ allowZero = true } = {}) {
  const min = allowZero ? 0 : 1;
  const message = problem(`expected a port number (${min}-65535)`);
  return z.int(message).min(min, message).max(65535, message);
}

const HOST_PORT = /^\s*(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})\s*$/;

/** "host:port" or "[v6]:port", parsed to `{ host, port }`. */
export function hostPort({ allowPortZero = false } = {}) {
  const expected = problem('expected "host:port"');
  const portNumber = port({ allowZero: allowPortZero });
  return z
    .string(expected)
    .regex(HOST_PORT, expected)
    .transform((value, ctx): HostPort => {
      const [, v6, name, digits] = HOST_PORT.exec(value)!;
      const checked = portNumber.safeParse(Number(digits));
      if (!checked.success) {
        ctx.issues.push({ code: 'custom', input: value, message: checked.error.issues[0]!.message });
        return z.NEVER;
      }
      return { host: (v6 ?? name)!, port: checked.data };
    })
    .meta({ description: allowPortZero ? 'host:port or [v6]:port (port 0: any free port)' : 'host:port or [v6]:port' });
}

export function parseHostPort(value: unknown, options: { allowPortZero?: boolean } = {}): Parsed<HostPort> {
  return parseValue(hostPort(options), value);
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** How much the CLIs print: each level includes the ones before it. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `logLevel:` in a config file. */
export const logLevel = z
  .enum(LOG_LEVELS, problem(`expected one of ${LOG_LEVELS.join(', ')}`))
  .meta({ description: 'What the CLI prints: error, warn, info (the default) or debug (a line per user connection); --log-level overrides it' });

/** `--log-level` on a command line. */
export function parseLogLevel(value: unknown): Parsed<LogLevel> {
  return parseValue(logLevel, value);
}
