import type { Subscription } from 'rxjs';
import { appDomains, type AppType } from '../config/index.js';
import type { TrafficHistory } from './traffic-history.js';
import {
  UdpAppServer,
  type ClusterView,
  type CommonServer,
  type DeactivationCode,
  type RefusedState,
  type ServerEvent,
  type UdpCounters,
} from '../server/index.js';

export type GroupState = 'ready' | 'in-use' | 'lost';

export interface AppView {
  name: string;
  /** `http` and `https` apps share the server's vhost port (`publicPort`) and answer to `domains`. */
  type: AppType;
  domains?: string[];
  /** The shared pool this app is a member of (see GET /api/pools). */
  pool?: string;
  /** A private app: no public port (`publicPort` 0), reached only by visitors of `allowVisitors`. */
  visibility?: 'private';
  allowVisitors?: readonly string[];
  /** The port in the registry (0: chosen by the server; 0 for a vhost app). */
  remotePort: number;
  /** The port actually bound while the group is in use, else null. */
  publicPort: number | null;
  /** `refused by host: WHY` (outside the host's allowLocal) or `refused by server: WHY` (its policy): no public port. */
  state: 'listening' | 'failed' | 'idle' | RefusedState;
  /** Live relayed conns; for a UDP app, its open sessions. */
  liveConns: number;
  bytesIn: number;
  bytesOut: number;
  /** Bytes since local midnight, from the traffic history (it survives restarts, unlike bytesIn/bytesOut). */
  today: { bytesIn: number; bytesOut: number };
  /** A UDP app's sessions, datagrams and drops by reason while it listens, else null. */
  udp: UdpCounters | null;
  /** The header the groupclient writes to the local app, as the registry says (the client's file decides). */
  proxyProtocol: 'v1' | 'v2' | null;
  /**
   * Bytes per second shared by all the app's users (null: unlimited): `in` users to app, `out`
   * app to users. `throttled`: how often a user was paused by the limit since the port opened
   * (null while the app is not listening).
   */
  bandwidth: { in: number | null; out: number | null; throttled: { in: number; out: number } | null };
}

export interface GroupView {
  name: string;
  state: GroupState;
  apps: AppView[];
  client: { id: string; address: string; connectedSince: string; lastHeartbeat: string } | null;
  liveConns: number;
  bytesIn: number;
  bytesOut: number;
  lastDeactivation: { code: DeactivationCode; reason: string; at: string } | null;
  /** In a cluster: the node serving the group (this one or another) and where it is reached; null when inactive or single. */
  node: { name: string; advertise: string; commonPort: number; self: boolean } | null;
}

/** Departures that mean the client vanished rather than left on purpose. */
const LOST: ReadonlySet<DeactivationCode> = new Set(['CONNECTION_LOST', 'HEARTBEAT_TIMEOUT', 'PROTOCOL_ERROR']);
/** Kept per kind: lifecycle events, and as many of the ones users and traffic cause. */
const RECENT_EVENTS = 200;
/**
 * What users, traffic and the heartbeat cause, many per second on a busy server: kept apart
 * from the lifecycle events (a group activated, an app failed) so that churn cannot push those out.
 */
const CHURN: ReadonlySet<ServerEvent['type']> = new Set<ServerEvent['type']>([
  'heartbeat',
  'user-conn-accepted',
  'user-conn-refused',
  'visitor-refused',
  'work-conn-requested',
  'work-conn-joined',
  'work-conn-pooled',
  'work-conn-failed',
  'conn-closed',
  'traffic',
  'udp-session-opened',
  'udp-session-closed',
  'udp-dropped',
  'pool-user-routed',
  'pool-user-refused',
  'vhost-refused',
  'bad-peer',
  'login-throttled',
]);

export type TimedEvent = ServerEvent & { at: string };

/**
 * What the admin surface knows beyond the server's own maps, all taken from `events$`:
 * traffic totals since start per group/app, each group's last departure, recent events.
 */
export class AdminState {
  private readonly traffic = new Map<string, { bytesIn: number; bytesOut: number }>();
  private readonly departures = new Map<string, GroupView['lastDeactivation']>();
  /** Lifecycle events and churn, each bounded to RECENT_EVENTS, in arrival order (`seq`). */
  private readonly lifecycle: (TimedEvent & { seq: number })[] = [];
  private readonly churn: (TimedEvent & { seq: number })[] = [];
  private seq = 0;
  private readonly subscription: Subscription;

  constructor(
    private readonly server: CommonServer,
    private readonly cluster?: ClusterView,
    private readonly history?: TrafficHistory,
  ) {
    this.subscription = server.observe('admin-state', (event) => this.onEvent(event));
  }

  close(): void {
    this.subscription.unsubscribe();
  }

  /** The last lifecycle events and the last churn events, merged oldest first. */
  recentEvents(): TimedEvent[] {
    return [...this.lifecycle, ...this.churn].sort((a, b) => a.seq - b.seq).map(({ seq: _seq, ...event }) => event as TimedEvent);
  }

  private onEvent(event: ServerEvent): void {
    const kept = CHURN.has(event.type) ? this.churn : this.lifecycle;
    kept.push({ ...event, at: new Date().toISOString(), seq: this.seq++ });
    if (kept.length > RECENT_EVENTS) kept.shift();
    switch (event.type) {
      case 'traffic': {
        const key = `${event.group}/${event.app}`;
        const totals = this.traffic.get(key) ?? { bytesIn: 0, bytesOut: 0 };
        totals.bytesIn += event.bytesIn;
        totals.bytesOut += event.bytesOut;
        this.traffic.set(key, totals);
        return;
      }
      case 'group-deactivated':
        this.departures.set(event.group, { code: event.code, reason: event.reason, at: new Date().toISOString() });
        return;
      case 'group-activated':
        this.departures.delete(event.group);
        return;
      case 'group-deregistered':
        this.departures.delete(event.group);
        for (const key of this.traffic.keys()) if (key.startsWith(`${event.group}/`)) this.traffic.delete(key);
        return;
      default:
        return;
    }
  }

  groups(): GroupView[] {
    return [...this.server.readyGroup.keys()].sort().map((name) => this.group(name)!);
  }

  group(name: string): GroupView | undefined {
    const spec = this.server.readyGroup.get(name);
    if (spec === undefined) return undefined;
    const live = this.server.inUseGroup.get(name);
    const departure = this.departures.get(name) ?? null;
    const activation = this.cluster?.activation(name);
    const elsewhere = live === undefined && activation !== undefined && activation.node !== this.cluster?.node;
    const vhost = this.server.vhost;
    const apps = spec.apps.map((app, index): AppView => {
      const appServer = live?.apps.get(app.name);
      const type = app.type ?? 'tcp';
      const vhostType = app.vhost?.type;
      const domains = appDomains(app, index, vhost?.config.subdomainHost).map(({ domain }) => domain);
      const totals = this.traffic.get(`${name}/${app.name}`) ?? { bytesIn: 0, bytesOut: 0 };
      return {
        name: app.name,
        type,
        ...(vhostType === undefined ? {} : { domains }),
        ...(app.pool === undefined ? {} : { pool: app.pool }),
        ...(app.visibility === undefined ? {} : { visibility: app.visibility, allowVisitors: app.allowVisitors ?? [] }),
        remotePort: app.remotePort,
        publicPort: appServer === undefined ? null : vhostType === undefined ? appServer.port : (vhost?.port(vhostType) ?? null),
        state: live === undefined ? 'idle' : appServer !== undefined ? 'listening' : (live.refusal(app.name) ?? 'failed'),
        liveConns: appServer?.liveConnCount ?? 0,
        ...totals,
        today: this.history?.today(name, app.name) ?? { bytesIn: 0, bytesOut: 0 },
        udp: appServer instanceof UdpAppServer ? appServer.counters() : null,
        proxyProtocol: app.proxyProtocol ?? null,
        bandwidth: {
          in: app.bandwidth?.in ?? null,
          out: app.bandwidth?.out ?? null,
          throttled:
            appServer === undefined || appServer instanceof UdpAppServer
              ? null
              : { in: appServer.bandwidth.in.throttledReads, out: appServer.bandwidth.out.throttledReads },
        },
      };
    });
    return {
      name,
      state: live !== undefined || elsewhere ? 'in-use' : departure !== null && LOST.has(departure.code) ? 'lost' : 'ready',
      apps,
      client:
        live === undefined
          ? null
          : {
              id: live.clientId,
              address: live.clientAddress,
              connectedSince: new Date(live.since).toISOString(),
              lastHeartbeat: new Date(live.lastHeartbeatAt).toISOString(),
            },
      liveConns: apps.reduce((sum, app) => sum + app.liveConns, 0),
      bytesIn: apps.reduce((sum, app) => sum + app.bytesIn, 0),
      bytesOut: apps.reduce((sum, app) => sum + app.bytesOut, 0),
      lastDeactivation: departure,
      node:
        activation === undefined
          ? null
          : { name: activation.node, advertise: activation.advertise, commonPort: activation.commonPort, self: activation.node === this.cluster?.node },
    };
  }
}
