import { Secret } from './secret.js';
import type { Parsed } from './values.js';
import type { YamlFile } from './yaml-file.js';

type Path = (string | number)[];

/** How an app is reached: its own public port (`tcp`), or the server's shared vhost ports by name. */
export type AppType = 'tcp' | 'http' | 'https';

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
}

export const VHOST_APP_KEYS = ['type', 'domains', 'subdomain', 'locations', 'hostHeaderRewrite', 'basicAuth'] as const;

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const HOSTNAME = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`);
const SUBDOMAIN = new RegExp(`^${LABEL}$`);

/** A host name as users type it: letters, digits and "-" per label, optionally `*.` in front. */
export function parseDomain(value: unknown): Parsed<string> {
  const text = typeof value === 'string' ? value.trim().toLowerCase().replace(/\.$/, '') : undefined;
  if (text === undefined || text.length > 253 || !HOSTNAME.test(text)) {
    return { ok: false, problem: `expected a host name such as app.example.com or *.example.com, got ${JSON.stringify(value)}` };
  }
  return { ok: true, value: text };
}

/**
 * The vhost fields of one app, or undefined for a plain TCP app (which may not use them).
 * `remotePort` is refused on vhost apps: they share the server's vhost ports.
 */
export function parseVhostApp(yaml: YamlFile, path: Path, app: Record<string, unknown>, env: NodeJS.ProcessEnv): VhostAppSpec | undefined {
  const type = app.type ?? 'tcp';
  if (type !== 'tcp' && type !== 'http' && type !== 'https') throw yaml.error([...path, 'type'], `expected tcp, http or https, got ${JSON.stringify(type)}`);
  if (type === 'tcp') {
    const stray = VHOST_APP_KEYS.find((key) => key !== 'type' && app[key] !== undefined);
    if (stray !== undefined) throw yaml.error([...path, stray], 'only apps of type http or https have this field (add type: http)');
    return undefined;
  }
  if (app.remotePort !== undefined) {
    throw yaml.error([...path, 'remotePort'], `an ${type} app is reached through the server's vhost port by name: remove remotePort`);
  }
  const domains: string[] = [];
  if (app.domains !== undefined) {
    if (!Array.isArray(app.domains)) throw yaml.error([...path, 'domains'], 'expected a list of host names');
    app.domains.forEach((raw: unknown, i: number) => {
      const domain = yaml.expect([...path, 'domains', i], parseDomain(raw));
      if (domains.includes(domain)) throw yaml.error([...path, 'domains', i], `duplicate domain ${domain}`);
      domains.push(domain);
    });
  }
  let subdomain: string | undefined;
  if (app.subdomain !== undefined) {
    subdomain = typeof app.subdomain === 'string' ? app.subdomain.trim().toLowerCase() : '';
    if (!SUBDOMAIN.test(subdomain)) throw yaml.error([...path, 'subdomain'], `expected one label of letters, digits and "-", got ${JSON.stringify(app.subdomain)}`);
  }
  if (domains.length === 0 && subdomain === undefined) {
    throw yaml.error([...path, 'domains'], `an ${type} app needs domains: [name, ...] or subdomain: NAME`);
  }
  if (type === 'https') {
    // The server never sees inside the TLS stream: it cannot route by path, rewrite or authenticate.
    const httpOnly = (['locations', 'hostHeaderRewrite', 'basicAuth'] as const).find((key) => app[key] !== undefined);
    if (httpOnly !== undefined) throw yaml.error([...path, httpOnly], 'https apps are routed by TLS name only (the server does not decrypt them): only http apps have this field');
  }
  const locations = app.locations === undefined ? ['/'] : parseLocations(yaml, [...path, 'locations'], app.locations);
  let hostHeaderRewrite: string | undefined;
  if (app.hostHeaderRewrite !== undefined) {
    const text = typeof app.hostHeaderRewrite === 'string' ? app.hostHeaderRewrite.trim().toLowerCase() : '';
    const match = /^([^:\s]+)(?::(\d{1,5}))?$/.exec(text);
    const host = match ? parseDomain(match[1]) : undefined;
    if (!match || !host?.ok || host.value.startsWith('*') || (match[2] !== undefined && Number(match[2]) > 65535)) {
      throw yaml.error([...path, 'hostHeaderRewrite'], `expected a host name, optionally with :port, got ${JSON.stringify(app.hostHeaderRewrite)}`);
    }
    hostHeaderRewrite = text;
  }
  return Object.freeze({
    type,
    domains: Object.freeze(domains),
    ...(subdomain === undefined ? {} : { subdomain }),
    locations: Object.freeze(locations),
    ...(hostHeaderRewrite === undefined ? {} : { hostHeaderRewrite }),
    ...(app.basicAuth === undefined ? {} : { basicAuth: parseBasicAuth(yaml, [...path, 'basicAuth'], app.basicAuth, env) }),
  });
}

function parseLocations(yaml: YamlFile, path: Path, value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) throw yaml.error(path, 'expected a list of path prefixes such as ["/", "/api"]');
  const locations: string[] = [];
  value.forEach((raw: unknown, i: number) => {
    // Printable ASCII without spaces, "?" or "#": what can start a request target's path.
    if (typeof raw !== 'string' || !/^\/[\x21-\x7e]{0,1023}$/.test(raw) || /[?#]/.test(raw)) {
      throw yaml.error([...path, i], `expected a path prefix starting with "/", got ${JSON.stringify(raw)}`);
    }
    if (locations.includes(raw)) throw yaml.error([...path, i], `duplicate location ${raw}`);
    locations.push(raw);
  });
  return locations;
}

function parseBasicAuth(yaml: YamlFile, path: Path, value: unknown, env: NodeJS.ProcessEnv): BasicAuth {
  const auth = yaml.mapAt(path, value);
  yaml.onlyKeys(path, auth, ['user', 'password']);
  // A colon cannot be told apart from the separator of user:password in the header.
  if (typeof auth.user !== 'string' || !/^[^:\s]{1,128}$/.test(auth.user)) {
    throw yaml.error([...path, 'user'], 'expected a user name without ":" or spaces');
  }
  if (typeof auth.password !== 'string' || auth.password === '') {
    throw yaml.error([...path, 'password'], 'expected a password (a literal, or ${VAR} to read it from the environment)');
  }
  const password = auth.password.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, variable: string) => {
    const found = env[variable];
    if (found === undefined || found === '') throw yaml.error([...path, 'password'], `environment variable ${variable} is not set`);
    return found;
  });
  return Object.freeze({ user: auth.user, password: new Secret(password) });
}
