import type { AppType } from './app-type.js';
import type { AppSpec, GroupSpec } from './group-file.js';
import type { PoolsConfig } from './pool-config.js';

/**
 * What a pool's first registered member fixed: its type, and its public port (tcp) or its
 * vhost fields (http, https), with who fixed them, in words for error messages.
 */
export interface PoolShape {
  readonly type: AppType;
  /** tcp pools: the public port (0 for a vhost pool). */
  readonly port: number;
  /** vhost pools: the first member's app, whose names, locations, rewrite and auth every member repeats. */
  readonly vhostApp?: AppSpec;
  readonly by: string;
}

/** Why a group's file may not join a pool: the server's policy, or what its pool members disagree on. */
export interface PoolProblem {
  readonly code: 'POLICY' | 'POOL_CONFLICT';
  /** `[ 'apps', index, field ]`, for the file's line and the API's field. */
  readonly path: ['apps', number, 'pool' | 'remotePort' | 'type' | 'domains'];
  readonly message: string;
}

/**
 * What registered members of each pool fixed (`specs` carry resolved ports), from the first
 * member found per pool: that is the registrant that fixed it.
 */
function fixedPools(specs: Iterable<GroupSpec>, except: string): Map<string, PoolShape> {
  const fixed = new Map<string, PoolShape>();
  for (const spec of specs) {
    if (spec.name === except) continue;
    for (const app of spec.apps) {
      if (app.pool === undefined || fixed.has(app.pool)) continue;
      const by = `group ${spec.name} (${spec.file})`;
      if (app.vhost !== undefined) fixed.set(app.pool, { type: app.vhost.type, port: 0, vhostApp: app, by });
      else if (app.remotePort !== 0) fixed.set(app.pool, { type: 'tcp', port: app.remotePort, by });
    }
  }
  return fixed;
}

/**
 * The first reason `spec` may not join the pools its apps name, or undefined. The server config
 * fixes a pool's port or names when it says them; otherwise the first registered member did (`fixed`),
 * with the pool's type, and for a vhost pool its names: every member of a vhost pool answers
 * to the same names, locations, Host rewrite and basic auth, since the pool (not one member)
 * is what a request for them reaches.
 */
function poolProblem(spec: GroupSpec, pools: PoolsConfig, fixed: ReadonlyMap<string, PoolShape>): PoolProblem | undefined {
  for (const [index, app] of spec.apps.entries()) {
    if (app.pool === undefined) continue;
    const config = pools[app.pool];
    if (config?.groups !== undefined && !config.groups.includes(spec.name)) {
      return {
        code: 'POLICY',
        path: ['apps', index, 'pool'],
        message: `group "${spec.name}" may not join pool "${app.pool}": the server's pools.${app.pool}.groups allows only ${config.groups.join(', ')}`,
      };
    }
    const type = app.vhost?.type ?? 'tcp';
    if (type !== 'tcp' && config?.remotePort !== undefined) {
      return {
        code: 'POOL_CONFLICT',
        path: ['apps', index, 'type'],
        message: `pool "${app.pool}" has a public port (pools.${app.pool}.remotePort in the server config): a ${type} app reached by name cannot join it`,
      };
    }
    const named = configuredNames(app, index, type, pools);
    if (named !== undefined) return named;
    const shape = fixed.get(app.pool);
    if (shape !== undefined && shape.type !== type) {
      return {
        code: 'POOL_CONFLICT',
        path: ['apps', index, 'type'],
        message: `pool "${app.pool}" serves ${shape.type} apps (fixed by ${shape.by}), this app is ${type}: members must agree`,
      };
    }
    const problem = type === 'tcp' ? portProblem(app, index, pools, fixed) : vhostProblem(app, index, shape);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/** The problem with `app` against `pools.NAME.domains` in the server config, if it says any. */
function configuredNames(app: AppSpec, index: number, type: AppType, pools: PoolsConfig): PoolProblem | undefined {
  const pool = app.pool!;
  const names = pools[pool]?.domains;
  if (names === undefined) return undefined;
  const where = `pools.${pool}.domains in the server config`;
  if (type === 'tcp') {
    return { code: 'POOL_CONFLICT', path: ['apps', index, 'type'], message: `pool "${pool}" answers to names (${where}): a tcp app cannot join it` };
  }
  const mine = new Set(app.vhost!.domains);
  if (mine.size === names.length && names.every((name) => mine.has(name))) return undefined;
  return {
    code: 'POOL_CONFLICT',
    path: ['apps', index, 'domains'],
    message: `pool "${pool}" answers to ${names.join(', ')} (${where}): every member's domains must be those`,
  };
}

function portProblem(app: AppSpec, index: number, pools: PoolsConfig, fixed: ReadonlyMap<string, PoolShape>): PoolProblem | undefined {
  const pool = app.pool!;
  const port = portOf(pool, pools, fixed);
  if (port === undefined && app.remotePort === 0) {
    return {
      code: 'POOL_CONFLICT',
      path: ['apps', index, 'remotePort'],
      message: `pool "${pool}" has no public port yet: give remotePort here (the first member fixes it) or pools.${pool}.remotePort in the server config`,
    };
  }
  if (port !== undefined && app.remotePort !== 0 && app.remotePort !== port.port) {
    return {
      code: 'POOL_CONFLICT',
      path: ['apps', index, 'remotePort'],
      message: `pool "${pool}" is on port ${port.port} (fixed by ${port.by}), this file says ${app.remotePort}: members must agree (or leave remotePort out)`,
    };
  }
  return undefined;
}

function vhostProblem(app: AppSpec, index: number, shape: PoolShape | undefined): PoolProblem | undefined {
  if (shape?.vhostApp === undefined || vhostIdentity(shape.vhostApp) === vhostIdentity(app)) return undefined;
  return {
    code: 'POOL_CONFLICT',
    path: ['apps', index, 'domains'],
    message: `pool "${app.pool}" answers to ${describeNames(shape.vhostApp)} (fixed by ${shape.by}): every member needs the same domains, subdomain, locations, hostHeaderRewrite and basicAuth`,
  };
}

/** What every member of a vhost pool must repeat, as one comparable string (the password only as equal or not, never printed). */
function vhostIdentity(app: AppSpec): string {
  const vhost = app.vhost!;
  const auth = vhost.basicAuth === undefined ? undefined : [vhost.basicAuth.user, vhost.basicAuth.password.reveal()];
  return JSON.stringify([vhost.type, [...vhost.domains].sort(), vhost.subdomain, [...vhost.locations].sort(), vhost.hostHeaderRewrite, auth]);
}

function describeNames(app: AppSpec): string {
  const vhost = app.vhost!;
  const names = [...vhost.domains, ...(vhost.subdomain === undefined ? [] : [`subdomain ${vhost.subdomain}`])];
  return `${names.join(', ')}${vhost.type === 'http' ? ` (locations ${vhost.locations.join(', ')})` : ''}`;
}

/** `spec` with each pooled tcp app's remotePort set to its pool's port (call after `poolProblem` found none). */
function withPoolPorts(spec: GroupSpec, pools: PoolsConfig, fixed: ReadonlyMap<string, PoolShape>): GroupSpec {
  const unfixed = (app: AppSpec): boolean => app.pool !== undefined && app.vhost === undefined && app.remotePort === 0;
  if (!spec.apps.some(unfixed)) return spec;
  const apps = spec.apps.map((app) => (unfixed(app) ? Object.freeze({ ...app, remotePort: portOf(app.pool!, pools, fixed)!.port }) : app));
  return Object.freeze({ ...spec, apps: Object.freeze(apps) });
}

function portOf(pool: string, pools: PoolsConfig, fixed: ReadonlyMap<string, PoolShape>): { port: number; by: string } | undefined {
  const configured = pools[pool]?.remotePort;
  if (configured !== undefined) return { port: configured, by: `pools.${pool}.remotePort in the server config` };
  const shape = fixed.get(pool);
  return shape === undefined || shape.port === 0 ? undefined : shape;
}

/**
 * `spec` checked against its pools and with their ports filled in, given the other registered
 * groups (`registered`, resolved ports): the spec to register, or why it may not join.
 */
export function joinPoolsOf(
  spec: GroupSpec,
  pools: PoolsConfig,
  registered: Iterable<GroupSpec>,
): { spec: GroupSpec; problem?: undefined } | { problem: PoolProblem } {
  const fixed = fixedPools(registered, spec.name);
  const problem = poolProblem(spec, pools, fixed);
  return problem === undefined ? { spec: withPoolPorts(spec, pools, fixed) } : { problem };
}
