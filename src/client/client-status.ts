import { formatHostPort, type GroupSpec } from '../config/index.js';
import type { AppBinding } from '../protocol/index.js';
import type { ClientEvent } from './events.js';

/** Where the client is in its lifecycle, as `groupclient status` shows it. */
export type ClientState = 'connecting' | 'active' | 'reconnecting' | 'stopped';

/** One app of the group file as the running client serves it. */
export interface AppStatus {
  name: string;
  type: string;
  /** The local target this host dials. */
  target: string;
  /** How users reach it: `:6022`, `:6053/udp`, `routed by name (a.example.com)`, or why the server refused it. */
  public: string;
  /** `unchecked`: no health checks (only pooled apps have them). */
  health: 'healthy' | 'unhealthy' | 'unchecked';
  /** Users relayed now (TCP users and UDP sessions). */
  liveConns: number;
}

/** What `groupclient status` prints: the answer of the control socket's `status`. */
export interface ClientStatusReport {
  group: string;
  state: ClientState;
  /** The server of the current (or last) session. */
  server?: string;
  /** When the current session logged in (ISO 8601); only while active. */
  sessionSince?: string;
  sessionAgeMs?: number;
  apps: AppStatus[];
}

/**
 * The running client's state, folded from its events: the control socket answers `status`
 * with it. Fed by `events$` like the log lines, so that it never touches the data path.
 */
export class ClientStatus {
  private state: ClientState = 'connecting';
  private server: string | undefined;
  private since: number | undefined;
  private bindings = new Map<string, AppBinding>();
  private readonly health = new Map<string, boolean>();
  private readonly live = new Map<string, number>();

  constructor(
    private readonly spec: () => GroupSpec,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one event of the client (subscribe it to `events$`). */
  readonly take = (event: ClientEvent): void => {
    switch (event.type) {
      case 'connecting':
        this.server = event.server;
        if (this.state !== 'reconnecting') this.state = 'connecting';
        return;
      case 'login-accepted':
        this.state = 'active';
        this.server = event.server;
        this.since = this.now();
        this.bindings = new Map(event.apps.map((app) => [app.name, app]));
        return;
      case 'session-lost':
        this.state = 'reconnecting';
        this.since = undefined;
        this.health.clear();
        return;
      case 'stopped':
        this.state = 'stopped';
        this.since = undefined;
        return;
      case 'apps-changed':
        for (const name of event.closed) this.bindings.delete(name);
        for (const app of event.opened) this.bindings.set(app.name, app);
        return;
      case 'health-changed':
        this.health.set(event.app, event.healthy);
        return;
      case 'work-conn-opened':
      case 'udp-session-opened':
        this.live.set(event.app, (this.live.get(event.app) ?? 0) + 1);
        return;
      case 'conn-closed':
      case 'udp-session-closed':
        this.live.set(event.app, Math.max(0, (this.live.get(event.app) ?? 0) - 1));
        return;
      default:
        return;
    }
  };

  report(): ClientStatusReport {
    const spec = this.spec();
    const active = this.state === 'active' && this.since !== undefined;
    return {
      group: spec.name,
      state: this.state,
      ...(this.server !== undefined ? { server: this.server } : {}),
      ...(active ? { sessionSince: new Date(this.since!).toISOString(), sessionAgeMs: this.now() - this.since! } : {}),
      apps: spec.apps.map((app) => {
        const healthy = this.health.get(app.name);
        return {
          name: app.name,
          type: app.type ?? 'tcp',
          target: `${formatHostPort(app.local)}${app.type === 'udp' ? '/udp' : ''}`,
          public: publicSide(app, this.bindings.get(app.name), active),
          health: healthy === undefined ? 'unchecked' : healthy ? 'healthy' : 'unhealthy',
          liveConns: this.live.get(app.name) ?? 0,
        };
      }),
    };
  }
}

/** How users reach an app: the server's word while active, else what the file asks for. */
function publicSide(app: GroupSpec['apps'][number], binding: AppBinding | undefined, active: boolean): string {
  if (binding !== undefined && binding.state !== 'listening') return `refused by the server: ${binding.error}`;
  if (app.vhost !== undefined) return routedByName(app.vhost);
  const port = binding?.remotePort ?? (active ? undefined : app.remotePort);
  if (port === undefined) return 'not served by the server';
  return `${port === 0 ? 'port chosen by the server' : `:${port}`}${app.type === 'udp' ? '/udp' : ''}`;
}

/** A vhost app's public side: the server routes its users by the name they ask for. */
export function routedByName(app: { domains?: readonly string[]; subdomain?: string }): string {
  const names = [...(app.domains ?? []), ...(app.subdomain !== undefined ? [`${app.subdomain}.<subdomainHost>`] : [])];
  return `routed by name (${names.join(', ')})`;
}
