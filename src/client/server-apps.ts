import { formatDuration, formatHostPort, type AppSpec, type GroupSpec } from '../config/index.js';
import type { AppTarget } from '../protocol/index.js';

export interface AppRefusal {
  app: string;
  /** The local target the server named, as `host:port`. */
  target: string;
  reason: string;
}

/** The apps this host serves, given its own file and the apps the server last sent. */
export interface ServedApps {
  spec: GroupSpec;
  /** The server's apps outside `allowLocal:`: never dialed, reported to the server (AppsRefused). */
  refused: AppRefusal[];
  /** Apps of the host's file the server's list overrides (a different entry, or none), in words naming the app. */
  warnings: string[];
}

/**
 * The host keeps the last word on what it dials. Once the server has sent its apps (GroupApps)
 * they replace the host file's, each kept only if its local target is inside the host's
 * `allowLocal:`, or is the very target the host's own file names for that app (the host wrote
 * it: an existing pair of files stays valid whatever allowLocal says). Before GroupApps (an
 * older server), the host's own apps are served as they always were.
 */
export function servedApps(host: GroupSpec, server: readonly AppTarget[] | undefined): ServedApps {
  if (server === undefined) return { spec: host, refused: [], warnings: [] };
  const own = new Map(host.apps.map((app) => [app.name, app]));
  const apps: AppSpec[] = [];
  const refused: AppRefusal[] = [];
  const warnings: string[] = [];
  for (const target of server) {
    const app = appSpecOf(target);
    const mine = own.get(app.name);
    const where = formatHostPort(app.local);
    const difference = mine === undefined ? undefined : differenceOf(mine, app);
    if (difference !== undefined) warnings.push(`app "${app.name}": this host's file says ${difference}; the server's applies`);
    const reason = mine !== undefined && formatHostPort(mine.local) === where ? undefined : host.allowLocal.refusal(app.local);
    if (reason === undefined) apps.push(app);
    else refused.push({ app: app.name, target: where, reason });
  }
  for (const name of own.keys()) {
    if (!server.some((target) => target.name === name)) warnings.push(`app "${name}" is in this host's file but not in the server's registry: not served`);
  }
  return { spec: Object.freeze({ ...host, apps: Object.freeze(apps) }), refused, warnings };
}

function appSpecOf({ name, local, type, remotePort, proxyProtocol, pool, healthCheck }: AppTarget): AppSpec {
  return Object.freeze({
    name,
    local: Object.freeze({ ...local }),
    remotePort,
    ...(type === undefined ? {} : { type }),
    ...(proxyProtocol === undefined ? {} : { proxyProtocol }),
    ...(pool === undefined ? {} : { pool }),
    ...(healthCheck === undefined ? {} : { healthCheck: Object.freeze({ ...healthCheck }) }),
  });
}

/** What the host's entry says that the server's does not, for the fields the client uses. */
function differenceOf(mine: AppSpec, theirs: AppSpec): string | undefined {
  const facts: [string, string, string][] = [
    ['local', formatHostPort(mine.local), formatHostPort(theirs.local)],
    ['type', mine.type ?? 'tcp', theirs.type ?? 'tcp'],
    ['proxyProtocol', mine.proxyProtocol ?? 'none', theirs.proxyProtocol ?? 'none'],
    ['pool', mine.pool ?? 'none', theirs.pool ?? 'none'],
    ['healthCheck', healthCheckText(mine), healthCheckText(theirs)],
  ];
  const differing = facts.filter(([, a, b]) => a !== b).map(([field, a, b]) => `${field} ${a} where the server says ${b}`);
  return differing.length === 0 ? undefined : differing.join(', ');
}

/** A pooled app's check in words, to compare the host's with the server's (the client runs the server's). */
function healthCheckText({ healthCheck: check }: AppSpec): string {
  if (check === undefined) return 'none';
  const { type, path, intervalMs, timeoutMs, failures, successes } = check;
  return `${type}${path === undefined ? '' : ` ${path}`} every ${formatDuration(intervalMs)} (timeout ${formatDuration(timeoutMs)}, ${failures} failures, ${successes} successes)`;
}
