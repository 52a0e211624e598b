import { z } from 'zod';
import { normalisePath, PathError } from '../vhost/request-path.js';
import type { AppType } from './app-type.js';
import { headerRulesSchema, type HeaderRules } from './header-rules.js';
import type { Secret } from './secret.js';
import { secretValue } from './secret-source.js';
import { section } from './sections.js';
import { port, problem, type Parsed } from './values.js';

/** Basic auth the server asks of every HTTP request before it reaches the app. */
export interface BasicAuth {
  readonly user: string;
  readonly password: Secret;
}

/** An app served on the vhost ports, routed by Host header (http) or TLS SNI (https). */
export interface VhostAppSpec {
  readonly type: 'http' | 'https';
  /** Names written in `domains:` (lower case; `*.example.com` matches any name below it). */
  readonly domains: readonly string[];
  /** Joined to the server's `subdomainHost` (`subdomain: app` → app.tunnel.example.com). */
  readonly subdomain?: string;
  /** http only: path prefixes routed to this app (default `/`); the longest match wins. */
  readonly locations: readonly string[];
  /** http only: the Host header the app sees instead of the user's. */
  readonly hostHeaderRewrite?: string;
  readonly basicAuth?: BasicAuth;
  /** http only: lines set and removed on each request, after the forwarding headers. */
  readonly requestHeaders?: HeaderRules;
  /** http only: lines set and removed on each final response (not on 1xx, nor on a 101 upgrade). */
  readonly responseHeaders?: HeaderRules;
}

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const HOSTNAME = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`);
const SUBDOMAIN = new RegExp(`^${LABEL}$`);
const DOMAIN_EXPECTED = 'expected a host name such as app.example.com or *.example.com';

/** A host name as users type it: letters, digits and "-" per label, optionally `*.` in front. */
export function parseDomain(value: unknown): Parsed<string> {
  const text = typeof value === 'string' ? value.trim().toLowerCase().replace(/\.$/, '') : undefined;
  if (text === undefined || text.length > 253 || !HOSTNAME.test(text)) return { ok: false, problem: `${DOMAIN_EXPECTED}, got ${JSON.stringify(value)}` };
  return { ok: true, value: text };
}

/** `parseDomain` as a schema: lower-cased, trailing dot dropped. */
export const domainName = z
  .string(problem(DOMAIN_EXPECTED))
  .transform((value, ctx) => {
    const parsed = parseDomain(value);
    if (parsed.ok) return parsed.value;
    ctx.addIssue({ code: 'custom', message: parsed.problem });
    return z.NEVER;
  })
  .meta({ description: 'A host name (app.example.com) or a wildcard below one (*.example.com)' });

const LOCATION_EXPECTED = problem('expected a path prefix starting with "/"');
const USER_EXPECTED = problem('expected a user name without ":" or spaces');
const HOST_HEADER_EXPECTED = 'expected a host name, optionally with :port';

/** The fields of an app that only vhost apps may have, as written in a group file (their `type` is the app's, in app-type.ts). */
export function vhostAppShape(env: NodeJS.ProcessEnv) {
  return {
    domains: z.array(domainName, problem('expected a list of host names')).optional().meta({ description: 'Host names the vhost app answers to' }),
    subdomain: z
      .string(problem('expected one label of letters, digits and "-"'))
      .transform((value) => value.trim().toLowerCase())
      .refine((value) => SUBDOMAIN.test(value), 'expected one label of letters, digits and "-"')
      .optional()
      .meta({ description: "Claims <subdomain>.<the server's subdomainHost>" }),
    locations: z
      .array(
        z
          .string(LOCATION_EXPECTED)
          .regex(/^\/[\x21-\x22\x24-\x3e\x40-\x7e]{0,1023}$/, LOCATION_EXPECTED)
          .superRefine(inNormalForm),
        problem('expected a list of path prefixes such as ["/", "/api"]'),
      )
      .min(1, 'expected a list of path prefixes such as ["/", "/api"]')
      .optional()
      .meta({ description: 'http: path prefixes routed to this app (default ["/"]); the longest match wins' }),
    hostHeaderRewrite: z
      .string(problem(HOST_HEADER_EXPECTED))
      .transform((value, ctx) => {
        const text = value.trim().toLowerCase();
        const match = /^([^:\s]+)(?::(\d{1,5}))?$/.exec(text);
        const host = match ? parseDomain(match[1]) : undefined;
        if (!match || !host?.ok || host.value.startsWith('*') || (match[2] !== undefined && Number(match[2]) > 65535)) {
          ctx.addIssue({ code: 'custom', message: `${HOST_HEADER_EXPECTED}, got ${JSON.stringify(value)}` });
          return z.NEVER;
        }
        return text;
      })
      .optional()
      .meta({ description: "http: the Host header the app sees instead of the user's" }),
    basicAuth: section({
      // A colon cannot be told apart from the separator of user:password in the header.
      user: z.string(USER_EXPECTED).regex(/^[^:\s]{1,128}$/, USER_EXPECTED),
      password: secretValue(env, 1),
    })
      .optional()
      .meta({ description: 'http: the server asks every request for this user and password (${VAR} allowed)' }),
    requestHeaders: headerRulesSchema('request').optional(),
    responseHeaders: headerRulesSchema('response').optional(),
  };
}

/**
 * Requests are matched on their path in normal form (src/vhost/request-path.ts): a location
 * written otherwise would never match what it seems to, so it is refused with the form to write.
 */
function inNormalForm(location: string, ctx: z.RefinementCtx): void {
  try {
    const normal = normalisePath(location);
    if (normal !== location) ctx.addIssue({ code: 'custom', message: `expected a path prefix in normal form: write ${JSON.stringify(normal)}` });
  } catch (error) {
    if (!(error instanceof PathError)) throw error;
    ctx.addIssue({ code: 'custom', message: `expected a path prefix requests can match, not one with ${error.message}` });
  }
}

type VhostFields = z.output<z.ZodObject<ReturnType<typeof vhostAppShape>>> & { type: AppType };

const VHOST_ONLY = ['domains', 'subdomain', 'locations', 'hostHeaderRewrite', 'basicAuth', 'requestHeaders', 'responseHeaders'] as const;
const HTTP_ONLY = ['locations', 'hostHeaderRewrite', 'basicAuth', 'requestHeaders', 'responseHeaders'] as const;

/**
 * An app's public side from its fields: `remotePort` for a TCP or UDP app, the vhost fields for
 * an http or https app (which may not have a remotePort: they share the server's vhost ports).
 * Issues are added at the app's own fields.
 */
export function appPublicSide(app: VhostFields & { remotePort?: number | undefined }, ctx: z.RefinementCtx): { remotePort: number; vhost?: VhostAppSpec } {
  const { type } = app;
  if (type === 'tcp' || type === 'udp') {
    const stray = VHOST_ONLY.find((key) => app[key] !== undefined);
    if (stray !== undefined) ctx.addIssue({ code: 'custom', path: [stray], message: 'only apps of type http or https have this field (add type: http)' });
    const checked = port().safeParse(app.remotePort);
    if (!checked.success) ctx.addIssue({ code: 'custom', path: ['remotePort'], message: checked.error.issues[0]!.message });
    return { remotePort: checked.success ? checked.data : 0 };
  }
  if (app.remotePort !== undefined)
    ctx.addIssue({ code: 'custom', path: ['remotePort'], message: `an ${type} app is reached through the server's vhost port by name: remove remotePort` });
  const domains = app.domains ?? [];
  domains.forEach((domain, i) => {
    if (domains.indexOf(domain) !== i) ctx.addIssue({ code: 'custom', path: ['domains', i], message: `duplicate domain ${domain}` });
  });
  if (domains.length === 0 && app.subdomain === undefined)
    ctx.addIssue({ code: 'custom', path: ['domains'], message: `an ${type} app needs domains: [name, ...] or subdomain: NAME` });
  if (type === 'https') {
    // The server never sees inside the TLS stream: it cannot route by path, rewrite or authenticate.
    const httpOnly = HTTP_ONLY.find((key) => app[key] !== undefined);
    if (httpOnly !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: [httpOnly],
        message: 'https apps are routed by TLS name only (the server does not decrypt them): only http apps have this field',
      });
  }
  const locations = app.locations ?? ['/'];
  locations.forEach((location, i) => {
    if (locations.indexOf(location) !== i) ctx.addIssue({ code: 'custom', path: ['locations', i], message: `duplicate location ${location}` });
  });
  const vhost: VhostAppSpec = Object.freeze({
    type,
    domains: Object.freeze(domains),
    ...(app.subdomain === undefined ? {} : { subdomain: app.subdomain }),
    locations: Object.freeze(locations),
    ...(app.hostHeaderRewrite === undefined ? {} : { hostHeaderRewrite: app.hostHeaderRewrite }),
    ...(app.basicAuth === undefined ? {} : { basicAuth: Object.freeze({ user: app.basicAuth.user, password: app.basicAuth.password.secret }) }),
    ...(app.requestHeaders === undefined ? {} : { requestHeaders: app.requestHeaders }),
    ...(app.responseHeaders === undefined ? {} : { responseHeaders: app.responseHeaders }),
  });
  return { remotePort: 0, vhost };
}
