import { appDomains, type AppSpec, type GroupSpec, type VhostConfig } from '../config/index.js';
import type { Socket } from 'node:net';
import { locationCover, pathWithoutParams } from './request-path.js';
import type { VirtualConn } from './virtual-conn.js';

/**
 * Where a routed user goes: something that gives it a conn to the app. One live AppServer of
 * one group, or a pool that chooses one of its members' AppServers for each user conn.
 */
export interface VhostTarget {
  /** `group/app` (or `pool NAME`), for logs and events; the key it is attached under. */
  readonly label: string;
  /** The app's current spec: auth, rewrites and locations apply from the next request. */
  readonly spec: AppSpec;
  /**
   * Starts a work conn for `conn` (an HTTPS user's own socket, or the VirtualConn of an HTTP
   * user's requests to this app); a reason when the app refuses it now (maxConnections...).
   */
  connect(conn: Socket | VirtualConn): string | undefined;
  /** Whether `address` may use the app (its `allow` list). */
  admits(address: string | undefined): boolean;
}

export type VhostKind = 'http' | 'https';

/** What a name (and path) leads to. */
export type Route =
  | { readonly kind: 'unknown' }
  /**
   * An HTTP path that apps may read under two locations of different apps (with and without
   * its `;` parameters): routing either way could pass the other one's checks. Answered 400.
   */
  | { readonly kind: 'ambiguous' }
  /** A registered app whose group has no live client (or whose app failed): answered at once. */
  | { readonly kind: 'offline'; readonly label: string }
  | { readonly kind: 'live'; readonly target: VhostTarget };

interface Entry {
  /** A path prefix in normal form (request-path.ts; the config refuses any other). */
  readonly location: string;
  /** `group/app`, or `pool NAME` for a pooled app: the label of the target it leads to. */
  readonly label: string;
}

/**
 * The vhost routing table: host names (and, for HTTP, path prefixes) of every registered
 * group, whether its client is online or not, so that a known name whose group is offline is
 * answered at once instead of looking unknown. Live targets are attached by the AppGroups.
 */
export class VhostRouter {
  private table = new Map<string, Entry[]>();
  private readonly live = new Map<string, VhostTarget>();

  constructor(readonly config: VhostConfig) {}

  /**
   * Rebuilds the table from the registry. Claims were checked when the registry was loaded;
   * groups registered by other paths still cannot share a name: the first one keeps it. The
   * members of a pool share its names: they lead to the pool, which picks a member per conn.
   */
  rebuild(groups: Iterable<GroupSpec>): void {
    const table = new Map<string, Entry[]>();
    const holder = new Map<string, string>();
    for (const spec of groups) {
      for (const [index, app] of spec.apps.entries()) {
        if (app.vhost === undefined) continue;
        const claimant = app.pool === undefined ? spec.name : `pool ${app.pool}`;
        for (const { domain } of appDomains(app, index, this.config.subdomainHost)) {
          const key = `${app.vhost.type} ${domain}`;
          const owner = holder.get(domain);
          // A second member of the same pool adds nothing: the pool's entries are there already.
          if (owner !== undefined && (owner !== claimant || app.pool !== undefined)) continue;
          holder.set(domain, claimant);
          const entries = table.get(key) ?? [];
          const label = app.pool === undefined ? `${spec.name}/${app.name}` : claimant;
          for (const location of app.vhost.type === 'http' ? app.vhost.locations : ['/']) entries.push({ location, label });
          table.set(key, entries);
        }
      }
    }
    this.table = table;
  }

  /** Routes the names that lead to `target.label` to it (an AppServer, or a pool of them). */
  attach(target: VhostTarget): void {
    this.live.set(target.label, target);
  }

  detach(target: VhostTarget): void {
    if (this.live.get(target.label) === target) this.live.delete(target.label);
  }

  /**
   * The route for a host name (lower case, no port) and, for HTTP, a request path in normal
   * form (`normalisePath`): the location that covers it best (`locationCover`), the same one
   * whether the app keeps the path's `;` parameters or drops them.
   */
  resolve(kind: VhostKind, host: string, path = '/'): Route {
    const entries = this.entriesFor(kind, host) ?? [];
    const entry = bestCover(entries, path);
    if (bestCover(entries, pathWithoutParams(path))?.label !== entry?.label) return { kind: 'ambiguous' };
    if (entry === undefined) return { kind: 'unknown' };
    const target = this.live.get(entry.label);
    return target === undefined ? { kind: 'offline', label: entry.label } : { kind: 'live', target };
  }

  /** Exact name first, then the nearest `*.` parent. */
  private entriesFor(kind: VhostKind, host: string): Entry[] | undefined {
    const exact = this.table.get(`${kind} ${host}`);
    if (exact !== undefined) return exact;
    for (let dot = host.indexOf('.'); dot >= 0; dot = host.indexOf('.', dot + 1)) {
      const wildcard = this.table.get(`${kind} *${host.slice(dot)}`);
      if (wildcard !== undefined) return wildcard;
    }
    return undefined;
  }
}

/** The entry whose location covers `path` best; on a tie, the first one (the first claim). */
function bestCover(entries: readonly Entry[], path: string): Entry | undefined {
  let best: Entry | undefined;
  let bestLength = -1;
  for (const entry of entries) {
    const cover = locationCover(entry.location, path);
    if (cover > bestLength) [best, bestLength] = [entry, cover];
  }
  return best;
}
