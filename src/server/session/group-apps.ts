import { formatHostPort, type AppSpec } from '../../config/index.js';
import type { AppTarget } from '../../protocol/index.js';
import type { RefusedState } from '../public/public-apps.js';

/** A registry app as GroupApps carries it: what the host needs to serve it, its local target included. */
export function appTarget(app: AppSpec): AppTarget {
  return {
    name: app.name,
    local: { host: app.local.host, port: app.local.port },
    ...(app.type === undefined ? {} : { type: app.type }),
    remotePort: app.remotePort,
    ...(app.proxyProtocol === undefined ? {} : { proxyProtocol: app.proxyProtocol }),
    ...(app.pool === undefined ? {} : { pool: app.pool }),
    ...(app.healthCheck === undefined ? {} : { healthCheck: { ...app.healthCheck } }),
  };
}

/**
 * The apps a host refused (AppsRefused), each with the local target it refused: an edit of the
 * registry that points the app elsewhere clears the refusal, so the host judges the new target.
 */
export class HostRefusals {
  private readonly refused = new Map<string, { reason: string; target: string }>();

  /** "refused by host: why", if the host refused `name`. */
  reasonFor(name: string): RefusedState | undefined {
    const refusal = this.refused.get(name);
    return refusal === undefined ? undefined : `refused by host: ${refusal.reason}`;
  }

  /** The apps the host has not refused: those the server opens. */
  served(apps: readonly AppSpec[]): AppSpec[] {
    return apps.filter((app) => this.refused.get(app.name)?.target !== formatHostPort(app.local));
  }

  /** The host's latest word, for the registry's apps (other names are ignored): the newly refused. */
  replace(apps: readonly AppSpec[], refused: readonly { name: string; reason: string }[]): { name: string; reason: string }[] {
    const before = new Map(this.refused);
    this.refused.clear();
    const fresh: { name: string; reason: string }[] = [];
    for (const { name, reason } of refused) {
      const app = apps.find((candidate) => candidate.name === name);
      if (app === undefined) continue;
      this.refused.set(name, { reason, target: formatHostPort(app.local) });
      if (before.get(name)?.reason !== reason) fresh.push({ name, reason });
    }
    return fresh;
  }

  /** Forgets refusals of apps gone from the registry or pointed at another target. */
  prune(apps: readonly AppSpec[]): void {
    for (const [name, { target }] of this.refused) {
      const app = apps.find((candidate) => candidate.name === name);
      if (app === undefined || formatHostPort(app.local) !== target) this.refused.delete(name);
    }
  }
}
