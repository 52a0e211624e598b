import { appDomains, type AppSpec, type GroupSpec, type VhostConfig } from '../config/index.js';
import type { Socket } from 'node:net';
import type { VirtualConn } from './virtual-conn.js';

/**
 * Where a routed user goes: something that gives it a conn to the app. Today one live
 * AppServer of one group; an app served by several hosts plugs in here by choosing a member.
 */
export interface VhostTarget {
  /** `group/app`, for logs and events. */
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
  /** A registered app whose group has no live client (or whose app failed): answered at once. */
  | { readonly kind: 'offline'; readonly label: string }
  | { readonly kind: 'live'; readonly target: VhostTarget };

interface Entry {
  readonly location: string;
  readonly group: string;
  readonly app: string;
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
   * groups registered by other paths still cannot share a name: the first one keeps it.
   */
  rebuild(groups: Iterable<GroupSpec>): void {
    const table = new Map<string, Entry[]>();
    const holder = new Map<string, string>();
    for (const spec of groups) {
      for (const [index, app] of spec.apps.entries()) {
        if (app.vhost === undefined) continue;
        for (const { domain } of appDomains(app, index, this.config.subdomainHost)) {
          const key = `${app.vhost.type} ${domain}`;
          const owner = holder.get(domain);
          if (owner !== undefined && owner !== spec.name) continue;
          holder.set(domain, spec.name);
          const entries = table.get(key) ?? [];
          for (const location of app.vhost.type === 'http' ? app.vhost.locations : ['/']) entries.push({ location, group: spec.name, app: app.name });
          // Longest prefix first: the first match is the route.
          entries.sort((a, b) => b.location.length - a.location.length);
          table.set(key, entries);
        }
      }
    }
    this.table = table;
  }

  attach(group: string, app: string, target: VhostTarget): void {
    this.live.set(`${group}/${app}`, target);
  }

  detach(group: string, app: string, target: VhostTarget): void {
    if (this.live.get(`${group}/${app}`) === target) this.live.delete(`${group}/${app}`);
  }

  /** The route for a host name (lower case, no port) and, for HTTP, a request path. */
  resolve(kind: VhostKind, host: string, path = '/'): Route {
    const entries = this.entriesFor(kind, host);
    const entry = entries?.find((candidate) => path.startsWith(candidate.location));
    if (entry === undefined) return { kind: 'unknown' };
    const label = `${entry.group}/${entry.app}`;
    const target = this.live.get(label);
    return target === undefined ? { kind: 'offline', label } : { kind: 'live', target };
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
