import { appDomains, appPublicRefusal, formatDuration, protocolMark, type AppSpec, type PublicPolicy } from '../../config/index.js';
import { BACKOFF } from '../../net/index.js';
import type { AppBinding, Message } from '../../protocol/index.js';
import type { VhostServer } from '../../vhost/index.js';
import type { SharedPorts } from '../shared-ports/shared-ports.js';
import { AppServer, type UserConnSink } from './app-server.js';
import { BindRetries, type BindRetryPolicy } from './bind-retry.js';
import type { EmitServerEvent } from '../events.js';
import { UdpAppServer, type UdpSessionSink } from '../udp/udp-app-server.js';

/** Why an app opens no port, as both ends and the admin API say it. */
export type RefusedState = `refused by ${'host' | 'server'}: ${string}`;

/** An app's public port: a TCP listener, or a UDP socket with its sessions. */
export type PublicApp = AppServer | UdpAppServer;

export interface PublicAppsOptions {
  group: string;
  bindHost: string;
  /** The server's shared pools: pooled apps join one instead of binding a port of their own. */
  pools: SharedPorts;
  /** What the server allows on the public side: every app is judged by it before it opens. */
  publicPolicy: PublicPolicy;
  /** UserConns one app may hold while they wait for work conns. */
  maxPendingUsersPerApp?: number;
  /** How a public port that was busy is tried again (default BACKOFF: 0.5 s doubling to 20 s). */
  bindRetry?: BindRetryPolicy;
  /** The shared HTTP/HTTPS ports, when the server has them: vhost apps are routed there. */
  vhost?: VhostServer;
  /** Where the apps hand their users (TCP) and sessions (UDP): the AppGroup. */
  sink: UserConnSink & UdpSessionSink;
  emit: EmitServerEvent;
  /** Sends a message to the client on the common conn. */
  send: (message: Message) => void;
  isActive: () => boolean;
  /** The group's apps as its registry entry says them now (a reload changes them). */
  currentApps: () => readonly AppSpec[];
}

/**
 * The public side of one AppGroup's apps: a port of its own, a place in a shared pool, or
 * names on the vhost ports. Opens them at activation, applies a reload's diff (keep, reopen,
 * close, open), and retries a busy port until it binds.
 */
export class PublicApps {
  private readonly servers = new Map<string, PublicApp>();
  /** Apps this server will not open (its policy, no vhost ports), with "refused by server: why". */
  private readonly refusals = new Map<string, RefusedState>();
  private readonly bindRetries: BindRetries;

  constructor(private readonly options: PublicAppsOptions) {
    this.bindRetries = new BindRetries(options.group, this.retryBind, options.bindRetry);
  }

  /** The apps open now (or binding), by name. */
  get byName(): ReadonlyMap<string, PublicApp> {
    return this.servers;
  }

  /** Why the server refused to open `name` ("refused by server: ..."), if it did. */
  refusal(name: string): RefusedState | undefined {
    return this.refusals.get(name);
  }

  /** Whether `app` is still open under its name (not removed or reopened by a reload). */
  isCurrent(app: PublicApp): boolean {
    return this.servers.get(app.name) === app;
  }

  /** Opens every current app; one that cannot open fails alone, the others serve. */
  openAll(): Promise<AppBinding[]> {
    return Promise.all(this.options.currentApps().map((app) => this.open(app)));
  }

  /**
   * Applies an edited registry entry (`after` is current already): removed apps (and apps whose
   * public port changed) close with their conns, new ones open; the other apps take their new
   * `allow` and `maxConnections` for the next user, their conns untouched.
   */
  async update(before: readonly AppSpec[], after: readonly AppSpec[], removedWhy = 'removed from the registry'): Promise<AppBinding[]> {
    const previous = new Map(before.map((app) => [app.name, app]));
    const opening: AppSpec[] = [];
    const closed: string[] = [];
    for (const app of after) {
      const old = previous.get(app.name);
      previous.delete(app.name);
      const sameSide = old?.remotePort === app.remotePort && old.pool === app.pool && old.type === app.type && old.visibility === app.visibility;
      if (old !== undefined && sameSide && sameRouting(old, app)) {
        const server = this.servers.get(app.name);
        if (server !== undefined) {
          server.applySpec(app);
          continue;
        }
        // Still waiting for its busy port: the retry binds the spec current by then.
        if (this.bindRetries.has(app.name)) continue;
        // The server's policy is fixed while it runs: refused once, refused again (and said once).
        if (this.refusals.has(app.name)) continue;
      }
      const why =
        old !== undefined && old.visibility !== app.visibility
          ? `it became ${app.visibility ?? 'public'}`
          : old?.pool !== app.pool
            ? `its pool changed to ${app.pool ?? 'none'}`
            : old?.type !== app.type
              ? `its type changed to ${app.type ?? 'tcp'}`
              : old?.remotePort === app.remotePort
                ? 'its names changed'
                : `its remotePort changed to ${app.remotePort}`;
      if (old !== undefined && this.close(app.name, why)) closed.push(app.name);
      opening.push(app);
    }
    for (const name of previous.keys()) {
      this.refusals.delete(name);
      if (this.close(name, removedWhy)) closed.push(name);
    }
    if (!this.options.isActive()) return [];
    const opened = await Promise.all(opening.map((app) => this.open(app)));
    // The client's port table would be stale until its next login otherwise.
    if (this.options.isActive() && (opened.length > 0 || closed.length > 0)) this.options.send({ type: 'AppsChanged', opened, closed });
    return opened;
  }

  /** The session ended: no more retries, every app closed with its conns. */
  closeAll(reason: string): void {
    this.bindRetries.cancelAll();
    for (const server of this.servers.values()) this.shut(server, reason);
  }

  /** Closes an app's public port and its conns; false if it had none open. */
  private close(name: string, reason: string): boolean {
    this.bindRetries.cancel(name);
    const server = this.servers.get(name);
    if (server === undefined) return false;
    this.servers.delete(name);
    this.shut(server, reason);
    this.options.emit({ type: 'app-closed', group: this.options.group, app: name, reason });
    return true;
  }

  /**
   * Closes an app's public port and resets its users; a vhost app is detached from the router
   * first, so that its names are answered as offline at once instead of routed to a closed app.
   */
  private shut(server: PublicApp, reason: string): void {
    if (server instanceof AppServer) this.options.vhost?.router.detach(server);
    server.close(reason);
  }

  private async open(app: AppSpec): Promise<AppBinding> {
    const { group } = this.options;
    this.refusals.delete(app.name);
    if (app.visibility === 'private') return this.openPrivateApp(app);
    const problem = appPublicRefusal(this.options.publicPolicy, group, app, this.options.currentApps().indexOf(app))?.problem;
    const refusal = problem ?? (app.vhost !== undefined && this.options.vhost === undefined ? 'this server has no vhost ports' : undefined);
    // Both ends show the same words: the client logs the error of its LoginResp or AppsChanged.
    if (refusal !== undefined) return this.refuse(app, refusal);
    if (app.vhost !== undefined) return this.openVhostApp(app);
    const protocol = protocolMark(app);
    const bound = await this.bind(app);
    if (typeof bound === 'number') return { name: app.name, remotePort: bound, state: 'listening', ...protocol };
    // A busy port is often freed soon (a process restarting, another group's app closing).
    const retrying = bound.code === 'EADDRINUSE' && this.options.isActive();
    if (retrying) this.bindRetries.schedule(app.name, bound);
    const retryMs = this.options.bindRetry ?? BACKOFF;
    const reason = `${describeBindError(bound, app.remotePort)}${retrying ? `; retrying (first within ${formatDuration(retryMs.firstMs)}, then at most every ${formatDuration(retryMs.maxMs)})` : ''}`;
    this.options.emit({ type: 'app-failed', group, app: app.name, port: app.remotePort, reason });
    return { name: app.name, remotePort: app.remotePort, state: 'failed', error: reason, ...protocol };
  }

  /**
   * A vhost app opens no port: its AppServer is attached to the vhost router under the app's
   * names, and holds the users routed to it like a port-based app holds its own.
   */
  private openVhostApp(app: AppSpec): AppBinding {
    const { group, emit } = this.options;
    const vhost = this.options.vhost!;
    const server = new AppServer(group, app, this.options.bindHost, this.options.sink, emit, this.options.maxPendingUsersPerApp);
    if (app.pool === undefined) vhost.router.attach(server);
    else {
      try {
        this.options.pools.joinVhost(app.pool, group, server);
      } catch (error) {
        const reason = (error as Error).message;
        emit({ type: 'app-failed', group, app: app.name, port: 0, reason });
        return { name: app.name, remotePort: 0, state: 'failed', error: reason };
      }
    }
    this.servers.set(app.name, server);
    const port = vhost.port(app.vhost!.type);
    // Only the names: the fields that name them matter to error messages, not here.
    const domains = appDomains(app, 0, vhost.config.subdomainHost).map(({ domain }) => domain);
    emit({ type: 'app-opened', group, app: app.name, port, domains });
    return { name: app.name, remotePort: port, state: 'listening', domains };
  }

  /** An app the server will not open: no port, "refused by server: why" on both ends and in the API. */
  private refuse(app: AppSpec, problem: string): AppBinding {
    const error: RefusedState = `refused by server: ${problem}`;
    this.refusals.set(app.name, error);
    const port = app.vhost === undefined ? app.remotePort : 0;
    this.options.emit({ type: 'app-refused', group: this.options.group, app: app.name, port, by: 'server', reason: problem });
    return { name: app.name, remotePort: port, state: 'failed', error, ...protocolMark(app) };
  }

  /**
   * A private app opens nothing: its AppServer only admits the visitors the server let through
   * (`connect`), with the same caps, bandwidth, counters and events as a public app's users.
   */
  private openPrivateApp(app: AppSpec): AppBinding {
    const { group, emit, bindHost, sink } = this.options;
    this.servers.set(app.name, new AppServer(group, app, bindHost, sink, emit, this.options.maxPendingUsersPerApp));
    emit({ type: 'app-opened', group, app: app.name, port: 0 });
    return { name: app.name, remotePort: 0, state: 'listening', visibility: 'private', ...protocolMark(app) };
  }

  /** Binds an app's public port: the port bound, or the bind error. */
  private async bind(app: AppSpec): Promise<number | NodeJS.ErrnoException> {
    const { group, bindHost, sink, emit } = this.options;
    const server: PublicApp =
      app.type === 'udp'
        ? new UdpAppServer(group, app, bindHost, sink, emit)
        : new AppServer(group, app, bindHost, sink, emit, this.options.maxPendingUsersPerApp);
    this.servers.set(app.name, server);
    try {
      // A UDP app is never pooled (the group file refuses pool: on it); vhost pools open in openVhostApp.
      const port =
        app.pool === undefined || !(server instanceof AppServer)
          ? await server.listen()
          : await this.options.pools.join(app.pool, app.remotePort, group, server);
      // The client may have gone (or the app been removed) while we were binding.
      if (!this.options.isActive() || this.servers.get(app.name) !== server) server.close();
      else emit({ type: 'app-opened', group, app: app.name, port });
      return port;
    } catch (error) {
      if (this.servers.get(app.name) === server) this.servers.delete(app.name);
      return error as NodeJS.ErrnoException;
    }
  }

  /**
   * One retry of a busy port; rejects while it is still busy. Once bound, the client is told
   * with AppsChanged, so that it can show the port (its LoginResp said the app had failed).
   */
  private readonly retryBind = async (name: string): Promise<void> => {
    const app = this.options.currentApps().find((candidate) => candidate.name === name);
    if (!this.options.isActive() || app === undefined || this.servers.has(name)) return;
    const bound = await this.bind(app);
    if (typeof bound !== 'number') {
      if (bound.code === 'EADDRINUSE') throw bound;
      this.options.emit({ type: 'app-failed', group: this.options.group, app: name, port: app.remotePort, reason: describeBindError(bound, app.remotePort) });
      return;
    }
    const protocol = protocolMark(app);
    if (this.options.isActive() && this.servers.has(name))
      this.options.send({ type: 'AppsChanged', opened: [{ name, remotePort: bound, state: 'listening', ...protocol }], closed: [] });
  };
}

/**
 * Whether an edited app (of the same type) is still reached the same way: a TCP or UDP app on
 * its port, or a vhost app under the same names. Otherwise it reopens, so that the client, the
 * metrics and the trace learn its new names (its conns close, as for a new remotePort).
 */
function sameRouting(before: AppSpec, after: AppSpec): boolean {
  if (before.vhost === undefined || after.vhost === undefined) return before.vhost === after.vhost;
  const names = (app: AppSpec): string => JSON.stringify([app.vhost!.type, app.vhost!.domains, app.vhost!.subdomain]);
  return names(before) === names(after);
}

function describeBindError(error: NodeJS.ErrnoException, port: number): string {
  switch (error.code) {
    case 'EADDRINUSE':
      return `port ${port} is already in use`;
    case 'EACCES':
      return `port ${port} is not allowed (privileged port or no permission)`;
    case 'EADDRNOTAVAIL':
      return `the bind address is not available on this host`;
    default:
      return `cannot listen on port ${port}: ${error.message}`;
  }
}
