import type { AppSpec, GroupSpec } from './group-file.js';
import { portLabel } from './udp-app.js';
import type { VhostConfig } from './vhost-config.js';

type Path = (string | number)[];

/**
 * Something on the public side that only one group may hold: a public port, or a host name on
 * the vhost ports. `key` is what must be unique across groups, unless the claims come from the
 * same `claimant`: the members of one pool share its port or names.
 */
export interface PublicClaim {
  readonly key: string;
  readonly app: string;
  /** `group/app`, or `pool NAME` for a pooled app (every member of the pool claims as the pool). */
  readonly claimant: string;
  /** The field of the group file that makes the claim. */
  readonly path: Path;
}

/** A field of a group file that the server's policy refuses, with why. */
export interface ClaimProblem {
  readonly path: Path;
  readonly problem: string;
}

/** The host names a vhost app answers to, each with the field that names it. */
export function appDomains(app: AppSpec, index: number, subdomainHost: string | undefined): { domain: string; path: Path }[] {
  if (app.vhost === undefined) return [];
  const names = app.vhost.domains.map((domain, i) => ({ domain, path: ['apps', index, 'domains', i] as Path }));
  if (app.vhost.subdomain !== undefined && subdomainHost !== undefined) {
    names.push({ domain: `${app.vhost.subdomain}.${subdomainHost}`, path: ['apps', index, 'subdomain'] });
  }
  return names;
}

/**
 * Every port and host name a group holds on the public side. A port is keyed by its number and
 * protocol (`port 6080`, `port 53/udp`): a TCP app and a UDP app may share a port number.
 */
export function publicClaims(spec: GroupSpec, vhost: VhostConfig | undefined): PublicClaim[] {
  return spec.apps.flatMap((app, index): PublicClaim[] => {
    const claimant = publicClaimant(spec.name, app);
    if (app.vhost === undefined)
      return app.remotePort === 0 ? [] : [{ key: `port ${portLabel(app)}`, app: app.name, claimant, path: ['apps', index, 'remotePort'] }];
    return appDomains(app, index, vhost?.subdomainHost).map(({ domain, path }) => ({ key: `domain ${domain}`, app: app.name, claimant, path }));
  });
}

/** Who claims a public port or name: a pool's members share it, any other app holds it alone. */
export function publicClaimant(group: string, app: { name: string; pool?: string | undefined }): string {
  return app.pool === undefined ? `${group}/${app.name}` : `pool ${app.pool}`;
}

/**
 * The first claim of `mine` that another group's `theirs` already makes as
 * someone else, with that someone: a port or name is shared only within one pool.
 */
export function claimClash(mine: readonly PublicClaim[], theirs: readonly PublicClaim[]): { claim: PublicClaim; owner: string } | undefined {
  for (const claim of theirs) {
    const clash = mine.find((candidate) => candidate.key === claim.key && candidate.claimant !== claim.claimant);
    if (clash !== undefined) return { claim: clash, owner: claim.claimant };
  }
  return undefined;
}

/** Whether `name` (itself perhaps `*.x`) is covered by `pattern` (`x.y`, or `*.y` for anything below y). */
export function domainMatches(pattern: string, name: string): boolean {
  return pattern.startsWith('*.') ? name.endsWith(pattern.slice(1)) : pattern === name;
}

/**
 * What the server's vhost policy refuses in one group, first problem only: a vhost app on a
 * server without that vhost port, a subdomain without `subdomainHost`, a name outside
 * `allowDomains`, two apps of the group on the same name and location, or a pool's name shared
 * with an app outside that pool. Checked when the directory loads, by the admin API, and at
 * activation.
 */
export function vhostProblem(spec: GroupSpec, vhost: VhostConfig | undefined): ClaimProblem | undefined {
  const routes = new Map<string, string>();
  const claimants = new Map<string, string>();
  for (const [index, app] of spec.apps.entries()) {
    const problem = vhostAppProblem(spec.name, app, index, vhost);
    if (problem !== undefined) return problem;
    if (app.vhost === undefined) continue;
    const claimant = publicClaimant(spec.name, app);
    for (const { domain, path } of appDomains(app, index, vhost?.subdomainHost)) {
      // A pool's name leads to the pool as a whole: no app outside it may take a location of it.
      const other = claimants.get(domain) ?? claimant;
      if (other !== claimant && (other.startsWith('pool ') || claimant.startsWith('pool '))) {
        return {
          path,
          problem: `${domain} is already served by ${other.startsWith('pool ') ? other : `app "${other.slice(spec.name.length + 1)}"`} in this group: a pool's names are its own`,
        };
      }
      claimants.set(domain, claimant);
      for (const location of app.vhost.type === 'http' ? app.vhost.locations : ['']) {
        // Locations match without regard to case (src/vhost/request-path.ts): /Admin and /admin are one claim.
        const key = `${app.vhost.type} ${domain} ${location.toLowerCase()}`;
        const other = routes.get(key);
        if (other !== undefined) return { path, problem: `${domain}${location} is already routed to app "${other}" of this group` };
        routes.set(key, app.name);
      }
    }
  }
  return undefined;
}

/** The problem with one app against the server's vhost policy, or undefined. */
export function vhostAppProblem(group: string, app: AppSpec, index: number, vhost: VhostConfig | undefined): ClaimProblem | undefined {
  if (app.vhost === undefined) return undefined;
  if (vhost?.[app.vhost.type] === undefined) {
    return { path: ['apps', index, 'type'], problem: `this server has no ${app.vhost.type} vhost port (vhost.${app.vhost.type} in its config)` };
  }
  if (app.vhost.subdomain !== undefined && vhost.subdomainHost === undefined) {
    return { path: ['apps', index, 'subdomain'], problem: 'this server has no subdomainHost (vhost.subdomainHost in its config): use domains' };
  }
  if (vhost.allowDomains === undefined) return undefined;
  const patterns = [...(vhost.allowDomains[group] ?? []), ...(vhost.allowDomains['*'] ?? [])];
  for (const [i, domain] of app.vhost.domains.entries()) {
    if (!patterns.some((pattern) => domainMatches(pattern, domain))) {
      return {
        path: ['apps', index, 'domains', i],
        problem: `group "${group}" may not claim ${domain} (vhost.allowDomains: ${patterns.length === 0 ? 'none for this group' : patterns.join(', ')})`,
      };
    }
  }
  return undefined;
}
