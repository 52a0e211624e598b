import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { ConfigError, groupNameProblem, isGroupName, parseHostPort } from '../config/index.js';
import { RegistryError, type ClusterView, type CommonServer, type GroupRegistry } from '../server/index.js';
import { HostFileError, hostFileText } from './host-file.js';
import { HttpError, readBody, sendJson, type RequestTarget } from './http-util.js';
import type { AdminState } from './state.js';
import type { TrafficHistory } from './traffic-history.js';

export interface ApiContext {
  server: CommonServer;
  registry: GroupRegistry;
  state: AdminState;
  history: TrafficHistory;
  cluster?: ClusterView;
  /** `sha256:…` of the common port's certificate (undefined: plaintext), for host files. */
  fingerprint?: string;
  /** True when the admin has a token (so this request showed it): only then does a host file carry the secret. */
  tokenRequired: boolean;
}

/**
 * The JSON routes under /api (SSE is the admin server's). Returns false for a path it does
 * not know, so the caller answers 404.
 *
 *   GET    /api/groups               every registered group with its state, apps, client, traffic
 *   GET    /api/readyGroup           the registry (names and apps)
 *   GET    /api/inUseGroup           the groups whose client is logged in
 *   GET    /api/groups/:name         one group
 *   POST   /api/groups               register a group (body: the group file, as YAML or JSON)
 *   PUT    /api/groups/:name         replace a group's file
 *   DELETE /api/groups/:name         remove a group (its client is disconnected)
 *   POST   /api/groups/:name/kick    disconnect the group's client (it may log in again)
 *   GET    /api/groups/:name/hostfile  the group's file as the host needs it (?server=HOST:PORT; the secret only behind a token)
 *   GET    /api/events/recent        the last events, oldest first (lifecycle events and user churn kept apart)
 *   GET    /api/history/:group/:app  the app's traffic: one-minute points for 24 h, daily totals for 30 days
 *   GET    /api/pools                every open pool: port (or a vhost pool's domains), balance, members with health and conns
 *   GET    /api/cluster              a cluster node: every node, and which node serves each group
 */
export async function handleApi(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, { path, segments, query }: RequestTarget): Promise<boolean> {
  const method = req.method ?? 'GET';
  // ['', 'api', 'groups', name] or ['', 'api', 'groups', name, 'kick'], the name decoded.
  const inGroups = segments.length >= 4 && segments[1] === 'api' && segments[2] === 'groups';
  if (path === '/api/groups') {
    if (method === 'GET') return ok(res, 200, { groups: ctx.state.groups() });
    if (method === 'POST') return ok(res, 201, { group: await mutate(ctx, async () => ctx.registry.create(await bodyOf(req))) });
    throw methodNotAllowed(method, path);
  }
  if (path === '/api/readyGroup' || path === '/api/inUseGroup') {
    if (method !== 'GET') throw methodNotAllowed(method, path);
    const names = path === '/api/readyGroup' ? [...ctx.server.readyGroup.keys()] : [...ctx.server.inUseGroup.keys()];
    return ok(res, 200, {
      groups: names
        .sort()
        .map((name) => ctx.state.group(name))
        .filter((group) => group !== undefined),
    });
  }
  if (path === '/api/pools') {
    if (method !== 'GET') throw methodNotAllowed(method, path);
    return ok(res, 200, { pools: ctx.server.pools.views() });
  }
  if (path === '/api/cluster') {
    if (method !== 'GET') throw methodNotAllowed(method, path);
    if (ctx.cluster === undefined) throw new HttpError(404, 'NOT_A_CLUSTER', 'this commonserver is not a cluster node (no cluster: section)');
    const activations = [...ctx.cluster.activations()].sort(([a], [b]) => a.localeCompare(b)).map(([group, where]) => ({ group, ...where }));
    return ok(res, 200, { node: ctx.cluster.node, prefix: ctx.cluster.prefix, leaseHeld: ctx.cluster.leaseHeld(), nodes: ctx.cluster.nodes(), activations });
  }
  if (inGroups && segments.length === 5 && segments[4] === 'hostfile') {
    if (method !== 'GET') throw methodNotAllowed(method, path);
    return serveHostFile(ctx, res, groupName(segments[3]!), query.get('server'));
  }
  if (segments.length === 5 && segments[1] === 'api' && segments[2] === 'history') {
    if (method !== 'GET') throw methodNotAllowed(method, path);
    const group = groupName(segments[3]!);
    const app = segments[4]!;
    if (ctx.server.readyGroup.get(group)?.apps.some((entry) => entry.name === app) !== true)
      throw new HttpError(404, 'APP_NOT_FOUND', `group "${group}" has no app "${app.slice(0, 64)}"`);
    return ok(res, 200, { group, app, ...ctx.history.of(group, app) });
  }
  if (path === '/api/events/recent') {
    if (method !== 'GET') throw methodNotAllowed(method, path);
    return ok(res, 200, { events: ctx.state.recentEvents() });
  }
  if (inGroups && segments.length === 5 && segments[4] === 'kick') {
    if (method !== 'POST') throw methodNotAllowed(method, path);
    const name = groupName(segments[3]!);
    const live = ctx.server.inUseGroup.get(name);
    const elsewhere = live === undefined ? ctx.cluster?.activation(name) : undefined;
    // A cluster node kicks only its own sessions: say which node to ask.
    if (elsewhere !== undefined && elsewhere.node !== ctx.cluster?.node) {
      throw new HttpError(
        409,
        'GROUP_ACTIVE_ELSEWHERE',
        `group "${name}" is active on node ${elsewhere.node} (${elsewhere.advertise}); kick it through that node's admin API`,
      );
    }
    if (live === undefined) throw new HttpError(404, 'GROUP_NOT_IN_USE', `group "${name}" has no client connected`);
    live.deactivate('KICKED', 'disconnected by an administrator');
    return ok(res, 200, { kicked: name });
  }
  if (inGroups && segments.length === 4) {
    const name = groupName(segments[3]!);
    switch (method) {
      case 'GET': {
        const view = ctx.state.group(name);
        if (view === undefined) throw new HttpError(404, 'GROUP_NOT_FOUND', `group "${name}" is not registered`);
        return ok(res, 200, { group: view });
      }
      case 'PUT':
        return ok(res, 200, { group: await mutate(ctx, async () => ctx.registry.replace(name, await bodyOf(req))) });
      case 'DELETE':
        await mutate(ctx, () => ctx.registry.remove(name));
        return ok(res, 200, { removed: name });
      default:
        throw methodNotAllowed(method, path);
    }
  }
  return false;
}

/** The group's host file as YAML text: `server:` from `?server=`, else this host's name and the common port. */
async function serveHostFile(ctx: ApiContext, res: ServerResponse, name: string, given: string | null): Promise<true> {
  const spec = ctx.server.readyGroup.get(name);
  if (spec === undefined) throw new HttpError(404, 'GROUP_NOT_FOUND', `group "${name}" is not registered`);
  const server = parseHostPort(given ?? `${hostname()}:${ctx.server.address().port}`);
  if (!server.ok) throw new HttpError(400, 'INVALID_SERVER', `?server=: ${server.problem}`, 'server');
  let text: string;
  try {
    text = await hostFileText(spec, { server: server.value, fingerprint: ctx.fingerprint, withSecret: ctx.tokenRequired });
  } catch (error) {
    if (error instanceof HostFileError) throw new HttpError(409, error.code, error.message);
    throw error;
  }
  res.writeHead(200, {
    'content-type': 'application/yaml; charset=utf-8',
    'content-disposition': `attachment; filename="${name}.yaml"`,
    'cache-control': 'no-store',
  });
  res.end(text);
  return true;
}

/** The group named in a URL, held to the config loader's rule: it becomes a file name. */
function groupName(name: string): string {
  if (!isGroupName(name)) {
    throw new HttpError(400, 'INVALID_GROUP_NAME', groupNameProblem(name));
  }
  return name;
}

function ok(res: ServerResponse, status: number, body: unknown): true {
  sendJson(res, status, body);
  return true;
}

async function bodyOf(req: IncomingMessage): Promise<string> {
  const text = await readBody(req);
  if (text.trim() === '') throw new HttpError(400, 'BODY_MISSING', 'expected the group as YAML or JSON in the request body');
  return text;
}

/** Runs a registry change and maps its failures to HTTP answers; returns the group's view. */
async function mutate(ctx: ApiContext, change: () => Promise<unknown>): Promise<unknown> {
  let result: unknown;
  try {
    result = await change();
  } catch (error) {
    if (error instanceof HttpError) throw error;
    if (error instanceof ConfigError) throw new HttpError(400, error.code, error.message, error.field);
    if (error instanceof RegistryError) {
      const status =
        error.code === 'GROUP_NOT_FOUND'
          ? 404
          : error.code === 'REGISTRY_UNAVAILABLE'
            ? 503
            : error.code === 'NAME_MISMATCH' || error.code === 'POLICY' || error.code === 'INVALID_GROUP_NAME'
              ? 400
              : 409;
      throw new HttpError(status, error.code, error.message, error.field);
    }
    throw new HttpError(500, 'REGISTRY_WRITE_FAILED', `the registry was not changed: ${(error as Error).message}`);
  }
  const name = (result as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? ctx.state.group(name) : undefined;
}

function methodNotAllowed(method: string, path: string): HttpError {
  return new HttpError(405, 'METHOD_NOT_ALLOWED', `${method} is not supported on ${path}`);
}
