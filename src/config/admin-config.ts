import { isIP } from 'node:net';
import { parseSecret } from './secret-source.js';
import type { Secret } from './secret.js';
import { parseDuration, parseHostPort, type HostPort } from './values.js';
import type { YamlFile } from './yaml-file.js';

/** How much of the admin port one process hands out: connections and the time a request may take. */
export interface AdminLimits {
  /** Concurrent connections (event streams included); more are closed as they arrive. */
  readonly maxConnections: number;
  /** Time to receive a request's headers: a client that sends them byte by byte is cut off. */
  readonly headersTimeoutMs: number;
  /** Time to receive a whole request, body included (not the answer: event streams stay open). */
  readonly requestTimeoutMs: number;
  /** How long an idle keep-alive connection stays open between requests. */
  readonly keepAliveTimeoutMs: number;
}

/** The `admin:` section of commonserver.yaml: where the admin API and dashboard listen. */
export interface AdminConfig extends Partial<AdminLimits> {
  readonly bind: HostPort;
  /** Bearer token for every /api route and /metrics; required off loopback. */
  readonly token?: Secret;
  /**
   * Names the admin may be reached by besides its bind address (a reverse proxy's name, say):
   * any other `Host` is refused, so that a web page cannot rebind its own name to the admin.
   * Lowercase `name` (any port) or `name:port`.
   */
  readonly allowedHosts?: readonly string[];
}

export const ADMIN_DEFAULT_BIND = '127.0.0.1:7500';
export const ADMIN_DEFAULT_LIMITS: AdminLimits = Object.freeze({
  maxConnections: 64,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
});
const MAX_ADMIN_CONNECTIONS = 10_000;
const ADMIN_KEYS = ['bind', 'token', 'allowedHosts', 'maxConnections', 'headersTimeout', 'requestTimeout', 'keepAliveTimeout'] as const;
/** A DNS name or an IP literal (v6 in brackets), with an optional port. */
const ALLOWED_HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*\.?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/;

/** True for 127.0.0.0/8, ::1 and "localhost": addresses no other host can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host.startsWith('::ffff:127.');
}

/** Validates the `admin:` section; an exposed admin server without a token is refused. */
export function parseAdminSection(yaml: YamlFile, raw: unknown, env: NodeJS.ProcessEnv = process.env): AdminConfig {
  const section = yaml.mapAt(['admin'], raw ?? {});
  yaml.onlyKeys(['admin'], section, ADMIN_KEYS);
  const bind = yaml.expect(['admin', 'bind'], parseHostPort(section.bind ?? ADMIN_DEFAULT_BIND, { allowPortZero: true }));
  const token = section.token === undefined ? undefined : parseSecret(yaml, section.token, env, ['admin', 'token']);
  if (token === undefined && !isLoopback(bind.host)) {
    throw yaml.error(['admin', 'token'], `required when admin.bind (${bind.host}) is not a loopback address: anyone who can reach it could change the registry`);
  }
  const allowedHosts = parseAllowedHosts(yaml, section.allowedHosts);

  const maxConnections = section.maxConnections ?? ADMIN_DEFAULT_LIMITS.maxConnections;
  if (typeof maxConnections !== 'number' || !Number.isInteger(maxConnections) || maxConnections < 1 || maxConnections > MAX_ADMIN_CONNECTIONS) {
    throw yaml.error(['admin', 'maxConnections'], `expected a whole number of connections from 1 to ${MAX_ADMIN_CONNECTIONS}, got ${JSON.stringify(maxConnections)}`);
  }
  const duration = (key: 'headersTimeout' | 'requestTimeout' | 'keepAliveTimeout', fallback: number): number => {
    if (section[key] === undefined) return fallback;
    const ms = yaml.expect(['admin', key], parseDuration(section[key]));
    // 0 would switch Node's own limit off: exactly what these settings exist to prevent.
    if (ms < 1) throw yaml.error(['admin', key], 'must be longer than 0');
    return ms;
  };
  const headersTimeoutMs = duration('headersTimeout', ADMIN_DEFAULT_LIMITS.headersTimeoutMs);
  const requestTimeoutMs = duration('requestTimeout', Math.max(ADMIN_DEFAULT_LIMITS.requestTimeoutMs, headersTimeoutMs));
  const keepAliveTimeoutMs = duration('keepAliveTimeout', ADMIN_DEFAULT_LIMITS.keepAliveTimeoutMs);
  if (headersTimeoutMs > requestTimeoutMs) {
    throw yaml.error(['admin', 'headersTimeout'], `must not be longer than admin.requestTimeout (${requestTimeoutMs}ms): the headers are part of the request`);
  }

  return Object.freeze({
    bind: Object.freeze(bind),
    ...(token ? { token } : {}),
    allowedHosts,
    maxConnections,
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs,
  });
}

function parseAllowedHosts(yaml: YamlFile, raw: unknown): readonly string[] {
  if (raw === undefined) return Object.freeze([]);
  if (!Array.isArray(raw)) throw yaml.error(['admin', 'allowedHosts'], 'expected a list of host names (e.g. [admin.example.com, "admin.example.com:8443"])');
  return Object.freeze(
    raw.map((entry: unknown, i: number) => {
      const host = typeof entry === 'string' ? entry.trim().toLowerCase() : '';
      const port = /:(\d+)$/.exec(host)?.[1];
      if (!ALLOWED_HOST.test(host) || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) {
        throw yaml.error(['admin', 'allowedHosts', i], `expected a host name such as admin.example.com or admin.example.com:8443, got ${JSON.stringify(entry)}`);
      }
      return host;
    }),
  );
}
