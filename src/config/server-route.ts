import { z } from 'zod';
import { Secret } from './secret.js';
import { secretValue } from './secret-source.js';
import { formatHostPort, parseHostPort, problem, type HostPort, type Parsed } from './values.js';

/*
 * How a groupclient's conns reach the common port when it cannot dial it directly: through an
 * HTTP CONNECT or SOCKS5 proxy (`proxy:`), and/or as WebSocket upgrades (`transport: ws|wss`)
 * that a reverse proxy on port 443 passes through. Our TLS, with its pinned certificate and the
 * login proof, runs inside whatever carries it.
 */

export type ProxyScheme = 'http' | 'socks5';

export interface ProxyUrl {
  readonly scheme: ProxyScheme;
  readonly address: HostPort;
  readonly username?: string;
  /** Never printed: `formatProxy` leaves the credentials out. */
  readonly password?: Secret;
}

export const SERVER_CARRIERS = ['tcp', 'ws', 'wss'] as const;
/** tcp: the common port itself; ws / wss: WebSocket upgrades (wss: inside a TLS conn to a reverse proxy). */
export type ServerCarrier = (typeof SERVER_CARRIERS)[number];

export const DEFAULT_WEBSOCKET_PATH = '/_ntp/ws';

export interface ServerRoute {
  readonly proxy?: ProxyUrl;
  readonly transport: ServerCarrier;
  /** The WebSocket upgrade's path (ws / wss). */
  readonly path: string;
}

export const DIRECT_ROUTE: ServerRoute = Object.freeze({ transport: 'tcp', path: DEFAULT_WEBSOCKET_PATH });

const PROXY_EXPECTED = 'expected http://[user:pass@]HOST:PORT or socks5://[user:pass@]HOST:PORT';
const PROXY_URL = /^(http|socks5):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@]+?)\/?$/;

/** A proxy URL as text (`${VAR}` already expanded): its parts, or what is wrong (never quoting a password). */
export function parseProxyUrl(text: string): Parsed<ProxyUrl> {
  const match = PROXY_URL.exec(text.trim());
  if (match === null) return { ok: false, problem: PROXY_EXPECTED };
  const [, scheme, user, pass, hostPortText] = match;
  const address = parseHostPort(hostPortText);
  if (!address.ok) return { ok: false, problem: `${PROXY_EXPECTED}: ${address.problem}` };
  const username = user === undefined ? undefined : decodeURIComponent(user);
  const password = pass === undefined ? undefined : decodeURIComponent(pass);
  // RFC 1929 carries each in one length byte.
  if ((username?.length ?? 0) > 255 || (password?.length ?? 0) > 255) return { ok: false, problem: 'proxy user and password: 255 characters at most' };
  return {
    ok: true,
    value: Object.freeze({
      scheme: scheme as ProxyScheme,
      address: Object.freeze(address.value),
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password: new Secret(password) }),
    }),
  };
}

/** The proxy as logs and status show it: scheme, user and address, never the password. */
export function formatProxy(proxy: ProxyUrl): string {
  return `${proxy.scheme}://${proxy.username === undefined ? '' : `${proxy.username}@`}${formatHostPort(proxy.address)}`;
}

/** `proxy:` in a host file: a URL whose `${VAR}`s come from the environment (a password need not be written in the file). */
function proxyField(env: NodeJS.ProcessEnv) {
  return secretValue(env, 1)
    .transform(({ secret }, ctx): ProxyUrl => {
      const parsed = parseProxyUrl(secret.reveal());
      if (parsed.ok) return parsed.value;
      ctx.addIssue({ code: 'custom', message: parsed.problem });
      return z.NEVER;
    })
    .meta({
      description:
        'Client side: reach the commonserver through this proxy, http://[user:pass@]HOST:PORT (CONNECT) or socks5://[user:pass@]HOST:PORT; ${VAR} reads from the environment',
    });
}

const PATH_EXPECTED = 'expected a path starting with "/" (no spaces)';

/** A WebSocket upgrade's path, as the client asks for it and the server accepts it. */
export const websocketPath = z
  .string(problem(PATH_EXPECTED))
  .regex(/^\/[!-~]*$/, problem(PATH_EXPECTED))
  .max(1024, problem(PATH_EXPECTED));

/** The host-file fields of the route to the server. */
export function serverRouteShape(env: NodeJS.ProcessEnv) {
  return {
    proxy: proxyField(env).optional(),
    transport: z
      .enum(SERVER_CARRIERS, problem(`expected one of ${SERVER_CARRIERS.join(', ')}`))
      .optional()
      .meta({
        description:
          'Client side: tcp (the default) dials the common port; ws / wss send every conn as a WebSocket upgrade (wss: over TLS to a reverse proxy, e.g. on port 443), with our pinned TLS inside',
      }),
    path: websocketPath.optional().meta({ description: `Client side, transport ws / wss: the upgrade's path (default ${DEFAULT_WEBSOCKET_PATH})` }),
  };
}

type RouteFields = z.output<z.ZodObject<ReturnType<typeof serverRouteShape>>>;

/**
 * The route fields as the client reads them: `{ route }` when the file asks for anything but a
 * direct TCP dial, else nothing. `path` without `transport: ws|wss` is an issue.
 */
export function serverRoute({ proxy, transport = 'tcp', path }: RouteFields, ctx: z.RefinementCtx): { route?: ServerRoute } {
  if (path !== undefined && transport === 'tcp') ctx.addIssue({ code: 'custom', path: ['path'], message: 'path is for transport: ws or wss' });
  if (proxy === undefined && transport === 'tcp') return {};
  return { route: Object.freeze({ ...(proxy === undefined ? {} : { proxy }), transport, path: path ?? DEFAULT_WEBSOCKET_PATH }) };
}
