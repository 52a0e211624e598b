/** Parsers for the value syntaxes our YAML files share. Each returns a message on failure. */

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** "10s", "500ms", "1.5m", "2h", or a bare number of milliseconds. */
export function parseDuration(value: unknown): Parsed<number> {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return { ok: true, value: Math.round(value) };
  if (typeof value === 'string') {
    const match = DURATION.exec(value.trim());
    if (match) return { ok: true, value: Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]) };
  }
  return { ok: false, problem: `expected a duration such as 10s, 500ms or 1m, got ${JSON.stringify(value)}` };
}

/** A whole number from `min` to `max`, as a number or a string of digits (a command-line value). */
export function parseCount(value: unknown, { min, max }: { min: number; max: number }): Parsed<number> {
  const number = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof number === 'number' && Number.isInteger(number) && number >= min && number <= max) return { ok: true, value: number };
  return { ok: false, problem: `expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}` };
}

/** The most pooled work conns a groupclient can be told to accept (each is a socket, TLS ~30 KB). */
export const MAX_POOLED_WORK_CONNS_LIMIT = 4096;

export interface HostPort {
  host: string;
  port: number;
}

/** "host:port" or "[v6]:port". */
export function parseHostPort(value: unknown, { allowPortZero = false } = {}): Parsed<HostPort> {
  if (typeof value !== 'string') return { ok: false, problem: `expected "host:port", got ${JSON.stringify(value)}` };
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value.trim());
  if (!match) return { ok: false, problem: `expected "host:port", got ${JSON.stringify(value)}` };
  const port = Number(match[3]);
  const portCheck = parsePort(port, { allowZero: allowPortZero });
  if (!portCheck.ok) return portCheck;
  return { ok: true, value: { host: (match[1] ?? match[2])!, port } };
}

export function parsePort(value: unknown, { allowZero = true } = {}): Parsed<number> {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1) || value > 65535) {
    return { ok: false, problem: `expected a port number (${allowZero ? 0 : 1}-65535), got ${JSON.stringify(value)}` };
  }
  return { ok: true, value };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** How much the CLIs print: each level includes the ones before it. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `logLevel:` in a config file, or `--log-level` on a command line. */
export function parseLogLevel(value: unknown): Parsed<LogLevel> {
  if (typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value)) return { ok: true, value: value as LogLevel };
  return { ok: false, problem: `expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}` };
}
