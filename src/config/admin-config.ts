import { isIP } from 'node:net';
import { z } from 'zod';
import { secretValue } from './secret-source.js';
import { section } from './sections.js';
import { duration, formatDuration, hostPort, problem, wholeNumber } from './values.js';

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

export const ADMIN_DEFAULT_BIND = '127.0.0.1:7500';
export const ADMIN_DEFAULT_LIMITS: AdminLimits = Object.freeze({
  maxConnections: 64,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
});
const MAX_ADMIN_CONNECTIONS = 10_000;
/** A DNS name or an IP literal (v6 in brackets), with an optional port. */
const ALLOWED_HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*\.?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/;
const ALLOWED_HOST_EXPECTED = problem('expected a host name such as admin.example.com or admin.example.com:8443');

/** True for 127.0.0.0/8, ::1 and "localhost": addresses no other host can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host.startsWith('::ffff:127.');
}

const allowedHost = z.string(ALLOWED_HOST_EXPECTED).transform((entry, ctx) => {
  const host = entry.trim().toLowerCase();
  const port = /:(\d+)$/.exec(host)?.[1];
  if (!ALLOWED_HOST.test(host) || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) {
    ctx.addIssue({ code: 'custom', message: ALLOWED_HOST_EXPECTED.error({ input: entry }) });
  }
  return host;
});

// 0 would switch Node's own limit off: exactly what these settings exist to prevent.
const timeout = duration.refine((ms) => ms >= 1, 'must be longer than 0');

/** The `admin:` section of commonserver.yaml: where the admin API and dashboard listen. */
export function adminSectionSchema(env: NodeJS.ProcessEnv) {
  return section({
    bind: hostPort({ allowPortZero: true }).prefault(ADMIN_DEFAULT_BIND),
    token: secretValue(env).optional().meta({ description: 'Bearer token for every /api route and /metrics; required off loopback' }),
    allowedHosts: z
      .array(allowedHost, 'expected a list of host names (e.g. [admin.example.com, "admin.example.com:8443"])')
      .default([])
      .meta({ description: 'Names the admin may be reached by besides its bind address (a reverse proxy): lowercase name (any port) or name:port' }),
    maxConnections: wholeNumber(1, MAX_ADMIN_CONNECTIONS, `expected a whole number of connections from 1 to ${MAX_ADMIN_CONNECTIONS}`).default(
      ADMIN_DEFAULT_LIMITS.maxConnections,
    ),
    headersTimeout: timeout.default(ADMIN_DEFAULT_LIMITS.headersTimeoutMs),
    requestTimeout: timeout
      .optional()
      .meta({ description: `Default ${formatDuration(ADMIN_DEFAULT_LIMITS.requestTimeoutMs)}, and never shorter than headersTimeout` }),
    keepAliveTimeout: timeout.default(ADMIN_DEFAULT_LIMITS.keepAliveTimeoutMs),
  })
    .meta({ description: 'The admin API, dashboard and Prometheus metrics; off unless this section exists' })
    .transform(({ bind, token, allowedHosts, maxConnections, headersTimeout, requestTimeout, keepAliveTimeout }, ctx) => {
      if (token === undefined && !isLoopback(bind.host)) {
        ctx.addIssue({
          code: 'custom',
          path: ['token'],
          message: `required when admin.bind (${bind.host}) is not a loopback address: anyone who can reach it could change the registry`,
        });
      }
      const requestTimeoutMs = requestTimeout ?? Math.max(ADMIN_DEFAULT_LIMITS.requestTimeoutMs, headersTimeout);
      if (headersTimeout > requestTimeoutMs) {
        ctx.addIssue({
          code: 'custom',
          path: ['headersTimeout'],
          message: `must not be longer than admin.requestTimeout (${formatDuration(requestTimeoutMs)}): the headers are part of the request`,
        });
      }
      return Object.freeze({
        bind: Object.freeze(bind),
        ...(token ? { token: token.secret } : {}),
        allowedHosts: Object.freeze(allowedHosts) as readonly string[],
        maxConnections,
        headersTimeoutMs: headersTimeout,
        requestTimeoutMs,
        keepAliveTimeoutMs: keepAliveTimeout,
      });
    });
}

export type AdminConfig = z.output<ReturnType<typeof adminSectionSchema>>;

/** What an AdminServer accepts: a parsed `admin:` section, or (in process) its bind and token with the rest defaulted. */
export type AdminSettings = Pick<AdminConfig, 'bind' | 'token'> & Partial<Omit<AdminConfig, 'bind' | 'token'>>;
