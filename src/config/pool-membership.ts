import type { GroupSpec } from './group-file.js';
import type { PoolsConfig } from './pool-config.js';

/** Where a pool's public port was fixed, in words for error messages. */
export interface PoolPort {
  readonly port: number;
  readonly by: string;
}

/** Why a group's file may not join a pool: the server's policy, or a port its pool members disagree on. */
export interface PoolProblem {
  readonly code: 'POLICY' | 'POOL_CONFLICT';
  /** `[ 'apps', index, 'pool' | 'remotePort' ]`, for the file's line and the API's field. */
  readonly path: ['apps', number, 'pool' | 'remotePort'];
  readonly message: string;
}

/**
 * The ports already fixed by registered members of each pool (`specs` carry resolved ports),
 * the first member found per pool: that is the registrant that fixed it.
 */
export function fixedPoolPorts(specs: Iterable<GroupSpec>, except: string): Map<string, PoolPort> {
  const fixed = new Map<string, PoolPort>();
  for (const spec of specs) {
    if (spec.name === except) continue;
    for (const app of spec.apps) {
      if (app.pool !== undefined && app.remotePort !== 0 && !fixed.has(app.pool)) {
        fixed.set(app.pool, { port: app.remotePort, by: `group ${spec.name} (${spec.file})` });
      }
    }
  }
  return fixed;
}

/**
 * The first reason `spec` may not join the pools its apps name, or undefined. The server config
 * fixes a pool's port when it says one; otherwise the first registered member did (`fixed`).
 */
export function poolProblem(spec: GroupSpec, pools: PoolsConfig, fixed: ReadonlyMap<string, PoolPort>): PoolProblem | undefined {
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
    const port = portOf(app.pool, pools, fixed);
    if (port === undefined && app.remotePort === 0) {
      return {
        code: 'POOL_CONFLICT',
        path: ['apps', index, 'remotePort'],
        message: `pool "${app.pool}" has no public port yet: give remotePort here (the first member fixes it) or pools.${app.pool}.remotePort in the server config`,
      };
    }
    if (port !== undefined && app.remotePort !== 0 && app.remotePort !== port.port) {
      return {
        code: 'POOL_CONFLICT',
        path: ['apps', index, 'remotePort'],
        message: `pool "${app.pool}" is on port ${port.port} (fixed by ${port.by}), this file says ${app.remotePort}: members must agree (or leave remotePort out)`,
      };
    }
  }
  return undefined;
}

/** `spec` with each pooled app's remotePort set to its pool's port (call after `poolProblem` found none). */
export function withPoolPorts(spec: GroupSpec, pools: PoolsConfig, fixed: ReadonlyMap<string, PoolPort>): GroupSpec {
  if (!spec.apps.some((app) => app.pool !== undefined && app.remotePort === 0)) return spec;
  const apps = spec.apps.map((app) => (app.pool === undefined || app.remotePort !== 0 ? app : Object.freeze({ ...app, remotePort: portOf(app.pool, pools, fixed)!.port })));
  return Object.freeze({ ...spec, apps: Object.freeze(apps) });
}

function portOf(pool: string, pools: PoolsConfig, fixed: ReadonlyMap<string, PoolPort>): PoolPort | undefined {
  const configured = pools[pool]?.remotePort;
  return configured !== undefined ? { port: configured, by: `pools.${pool}.remotePort in the server config` } : fixed.get(pool);
}

/** Who claims a public port: a pool's members share it, any other app holds it alone. */
export function portClaimant(group: string, app: { name: string; pool?: string }): string {
  return app.pool === undefined ? `${group}/${app.name}` : `pool ${app.pool}`;
}

/**
 * `spec` checked against its pools and with their ports filled in, given the other registered
 * groups (`registered`, resolved ports): the spec to register, or why it may not join.
 */
export function joinPoolsOf(spec: GroupSpec, pools: PoolsConfig, registered: Iterable<GroupSpec>): { spec: GroupSpec; problem?: undefined } | { problem: PoolProblem } {
  const fixed = fixedPoolPorts(registered, spec.name);
  const problem = poolProblem(spec, pools, fixed);
  return problem === undefined ? { spec: withPoolPorts(spec, pools, fixed) } : { problem };
}
