import { vhostAppProblem, type ClaimProblem } from './domain-claims.js';
import type { AppSpec } from './group-file.js';
import { formatPortRanges, type PortRange } from './security-config.js';
import type { HostPort } from './values.js';
import type { VhostConfig } from './vhost-config.js';

/** What of the server's config decides whether an app's public side is allowed. */
export interface PublicPolicy {
  /** The public ports a TCP or UDP app may have; unset: any. */
  readonly allowPorts?: readonly PortRange[] | undefined;
  /** The vhost ports and their names policy: without them, no vhost app is allowed. */
  readonly vhost?: VhostConfig | undefined;
  /** TCP ports the server itself listens on, each with what it is: no TCP app may take one. */
  readonly ownPorts: ReadonlyMap<number, string>;
}

/** The parts of commonserver.yaml a PublicPolicy is made of. */
export interface PublicPolicySource {
  readonly bind: HostPort;
  readonly admin?: { readonly bind: HostPort } | undefined;
  readonly vhost?: VhostConfig | undefined;
  readonly policy?: { readonly allowPorts?: readonly PortRange[] | undefined } | undefined;
}

/** The server config's PublicPolicy. A port 0 in it is chosen at start: no app can name it in advance. */
export function publicPolicyOf({ bind, admin, vhost, policy }: PublicPolicySource): PublicPolicy {
  const ownPorts = new Map<number, string>();
  const own = (address: HostPort | undefined, what: string) => {
    if (address !== undefined && address.port !== 0 && !ownPorts.has(address.port)) ownPorts.set(address.port, what);
  };
  own(bind, 'the common port');
  own(admin?.bind, 'the admin port');
  own(vhost?.http, 'the http vhost port');
  own(vhost?.https, 'the https vhost port');
  return { ...(policy?.allowPorts === undefined ? {} : { allowPorts: policy.allowPorts }), ...(vhost === undefined ? {} : { vhost }), ownPorts };
}

/**
 * Why the server refuses an app's public side, or undefined: the one verdict the loader (at
 * activation), `commonserver verify`, the admin API and `cluster import` share. A TCP or UDP
 * app has a port of its own: within allowPorts (remotePort 0 too, since the system would
 * choose any port), and for TCP not a port the server listens on itself. An http or https
 * app has none: it is judged by the vhost policy (ports, subdomainHost, allowDomains), never
 * by allowPorts. A pooled app is judged as any app of its type (a pool's port was filled in
 * from the pool when the group joined it).
 */
export function appPublicRefusal(policy: PublicPolicy, group: string, app: AppSpec, index: number): ClaimProblem | undefined {
  if (app.vhost !== undefined) return vhostAppProblem(group, app, index, policy.vhost);
  const path = ['apps', index, 'remotePort'];
  const own = app.type === 'udp' || app.remotePort === 0 ? undefined : policy.ownPorts.get(app.remotePort);
  if (own !== undefined) return { path, problem: `${group}/${app.name}: port ${app.remotePort} is ${own} of this server` };
  const ranges = policy.allowPorts;
  if (ranges === undefined || ranges.some(({ from, to }) => app.remotePort >= from && app.remotePort <= to)) return undefined;
  const what = app.remotePort === 0 ? 'remotePort 0 (any port)' : `port ${app.remotePort}`;
  return { path, problem: `${group}/${app.name}: ${what} is outside allowPorts (${formatPortRanges(ranges)})` };
}
