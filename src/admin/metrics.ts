import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Subscription } from 'rxjs';
import type { ClusterView, CommonServer, ServerEvent } from '../server/index.js';
import { GroupSeries } from './group-series.js';

/**
 * The server's Prometheus metrics. Counters are derived only from `events$` (the relay code
 * never calls a metric); gauges are read from the server's own maps at each scrape, so they
 * cannot drift from what is really open. A registry per server (not prom-client's global
 * one), so several servers can share a process, as they do in tests.
 *
 * A group's series live as long as the group is registered: they survive its client's
 * reconnects, and disappear when the group (or one of its apps) is removed from the
 * registry, so a dashboard never shows a group that no longer exists.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly subscription: Subscription;
  private readonly series = new GroupSeries();
  /** Pools with a refused-users series, and [pool, group] pairs with a routed-users series: removed with them. */
  private readonly refusedPools = new Set<string>();
  private readonly memberPools = new Set<string>();

  private readonly connectionsTotal = new Counter({
    name: 'ntp_connections_total',
    help: 'User connections paired with a work conn',
    labelNames: ['group', 'app'],
    registers: [this.registry],
  });
  private readonly bytesIn = new Counter({
    name: 'ntp_bytes_in_total',
    help: 'Bytes from users towards the apps',
    labelNames: ['group', 'app'],
    registers: [this.registry],
  });
  private readonly bytesOut = new Counter({
    name: 'ntp_bytes_out_total',
    help: 'Bytes from the apps towards users',
    labelNames: ['group', 'app'],
    registers: [this.registry],
  });
  private readonly pairingSeconds = new Histogram({
    name: 'ntp_pairing_seconds',
    help: 'Time from a user connection to its joined work conn',
    labelNames: ['group'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly pairingFailures = new Counter({
    name: 'ntp_pairing_failures_total',
    help: 'User connections closed without a work conn',
    labelNames: ['group', 'app'],
    registers: [this.registry],
  });
  private readonly pooledWorkConns = new Counter({
    name: 'ntp_work_conns_pooled_total',
    help: 'Single-use work conns opened ahead of users into a pool',
    labelNames: ['group'],
    registers: [this.registry],
  });
  private readonly udpSessions = new Gauge({
    name: 'ntp_udp_sessions',
    help: 'Open sessions of UDP apps (one per user address)',
    labelNames: ['group', 'app'],
    registers: [this.registry],
  });
  private readonly udpSessionsTotal = new Counter({
    name: 'ntp_udp_sessions_total',
    help: 'Sessions opened by UDP apps',
    labelNames: ['group', 'app'],
    registers: [this.registry],
  });
  private readonly udpDropped = new Counter({
    name: 'ntp_udp_dropped_total',
    help: 'Datagrams a UDP app dropped: oversize, sessionCap (new peers over maxSessions), notAllowed (outside allow), backlog (more queued than the path carries)',
    labelNames: ['group', 'app', 'reason'],
    registers: [this.registry],
  });
  private readonly authFailures = new Counter({ name: 'ntp_auth_failures_total', help: 'Rejected logins', labelNames: ['code'], registers: [this.registry] });
  private readonly heartbeatTimeouts = new Counter({
    name: 'ntp_heartbeat_timeouts_total',
    help: 'Sessions ended by a heartbeat timeout',
    labelNames: ['group'],
    registers: [this.registry],
  });
  private readonly vhostRoutes = new Gauge({
    name: 'ntp_vhost_routes',
    help: 'Host names routed to a live vhost app (1 per name)',
    labelNames: ['group', 'app', 'domain'],
    registers: [this.registry],
  });
  private readonly vhostRefused = new Counter({
    name: 'ntp_vhost_refused_total',
    help: 'Vhost users that reached no app: answered by the server (http, code = status) or closed (https)',
    labelNames: ['kind', 'code'],
    registers: [this.registry],
  });
  /** The names each live vhost app answers to, so that their series can be removed with it. */
  private readonly routedNames = new Map<string, string[]>();
  private readonly badPeers = new Counter({
    name: 'ntp_bad_peers_total',
    help: 'Connections closed for a protocol or handshake fault',
    labelNames: ['code'],
    registers: [this.registry],
  });
  private readonly poolUsers = new Counter({
    name: 'ntp_pool_users_total',
    help: 'Users routed to each pool member',
    labelNames: ['pool', 'group'],
    registers: [this.registry],
  });
  /** Labelled by the visiting group only: it logged in, so its name is one of the registry's (the target is the peer's words). */
  private readonly visitorsRefused = new Counter({
    name: 'ntp_visitors_refused_total',
    help: 'Visits refused (not allowed, bad secret, no such private app, owner offline...), by the visiting group',
    labelNames: ['visitor_group'],
    registers: [this.registry],
  });
  private readonly poolRefused = new Counter({
    name: 'ntp_pool_users_refused_total',
    help: 'Users of a pool reset at once: no live, healthy member',
    labelNames: ['pool'],
    registers: [this.registry],
  });

  constructor(
    private readonly server: CommonServer,
    cluster?: ClusterView,
  ) {
    if (cluster !== undefined) this.addClusterMetrics(cluster);
    this.registerGauges(cluster);
    // Process metrics (CPU, resident memory, open fds, heap, event loop lag, GC) with the
    // names every Node.js dashboard already knows.
    collectDefaultMetrics({ register: this.registry });
    this.subscription = server.observe('metrics', (event) => this.onEvent(event));
  }

  close(): void {
    this.subscription.unsubscribe();
  }

  /** A cluster node labels every series with its name and adds what it sees of the cluster. */
  private addClusterMetrics(cluster: ClusterView): void {
    this.registry.setDefaultLabels({ node: cluster.node });
    new Gauge({
      name: 'ntp_cluster_lease_held',
      help: 'Whether this node holds its etcd lease (1) or not (0: it serves no group and refuses logins)',
      registers: [this.registry],
      collect() {
        this.set(cluster.leaseHeld() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ntp_cluster_nodes',
      help: 'Nodes with a live lease in etcd',
      registers: [this.registry],
      collect() {
        this.set(cluster.nodes().length);
      },
    });
    new Gauge({
      name: 'ntp_cluster_groups_active',
      help: 'Groups active in the cluster, by the node serving them (as etcd says)',
      labelNames: ['serving_node'],
      registers: [this.registry],
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const activation of cluster.activations().values()) counts.set(activation.node, (counts.get(activation.node) ?? 0) + 1);
        for (const [node, count] of counts) this.set({ serving_node: node }, count);
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private registerGauges(cluster: ClusterView | undefined): void {
    const server = this.server;
    const registers = [this.registry];
    // Read from the server at each scrape, not from events$: it counts this class's own failures too.
    new Counter({
      name: 'ntp_internal_errors_total',
      help: 'Exceptions caught in an observer of the server events (where: metrics, admin-state, event-stream, lines, trace); the server kept serving',
      labelNames: ['where'],
      registers,
      collect() {
        this.reset();
        for (const [where, count] of server.internalErrors.byWhere()) this.inc({ where }, count);
      },
    });
    new Gauge({
      name: 'ntp_clients_connected',
      help: 'Groupclients logged in (one per group in inUseGroup)',
      registers,
      collect() {
        this.set(server.inUseGroup.size);
      },
    });
    new Gauge({
      name: 'ntp_groups',
      help: 'Groups by state: registered (readyGroup) or active (inUseGroup)',
      labelNames: ['state'],
      registers,
      collect() {
        this.set({ state: 'registered' }, server.readyGroup.size);
        this.set({ state: 'active' }, server.inUseGroup.size);
      },
    });
    // For alerts: one series per registered group and app, 0 as soon as it is down (a missing series alerts nobody).
    new Gauge({
      name: 'ntp_group_up',
      help: "1 while the group's client is logged in (in a cluster: on any node), 0 while it is away; one series per registered group",
      labelNames: ['group'],
      registers,
      collect() {
        this.reset();
        for (const name of server.readyGroup.keys()) this.set({ group: name }, server.inUseGroup.has(name) || cluster?.activation(name) !== undefined ? 1 : 0);
      },
    });
    // One series per registered app, each with the app this server serves now (if any): rebuilt
    // at each scrape from the registry, so a removed app's series goes with it.
    const registeredApps = function* () {
      for (const [group, spec] of server.readyGroup) {
        const served = server.inUseGroup.get(group)?.apps;
        for (const app of spec.apps) yield { group, app: app.name, live: served?.get(app.name) };
      }
    };
    new Gauge({
      name: 'ntp_app_up',
      help: "1 while the app's public port (or its vhost names) serve users on this server, 0 otherwise; one series per registered app",
      labelNames: ['group', 'app'],
      registers,
      collect() {
        this.reset();
        for (const { group, app, live } of registeredApps()) this.set({ group, app }, live !== undefined ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ntp_apps_listening',
      help: 'Apps whose public port is open',
      registers,
      collect() {
        let listening = 0;
        for (const group of server.inUseGroup.values()) listening += group.apps.size;
        this.set(listening);
      },
    });
    new Gauge({
      name: 'ntp_connections',
      help: 'Live relayed user connections, per registered app',
      labelNames: ['group', 'app'],
      registers,
      collect() {
        this.reset();
        for (const { group, app, live } of registeredApps()) this.set({ group, app }, live?.liveConnCount ?? 0);
      },
    });
    // Pools, like the series above: one per registered pooled app (and per pool its apps name),
    // read at each scrape; a member whose client is away reads unhealthy with no conns.
    const members = (): { pool: string; group: string; live: { healthy: boolean; liveConns: number } | undefined }[] => {
      const open = new Map(server.pools.views().map((pool) => [pool.name, new Map(pool.members.map((member) => [member.group, member]))]));
      return [...server.readyGroup].flatMap(([group, spec]) =>
        spec.apps.flatMap((app) => (app.pool === undefined ? [] : [{ pool: app.pool, group, live: open.get(app.pool)?.get(group) }])),
      );
    };
    new Gauge({
      name: 'ntp_pool_members',
      help: 'Members of each pool, by health: healthy (gets users) or unhealthy (failing its checks, or its client away)',
      labelNames: ['pool', 'health'],
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, { healthy: number; unhealthy: number }>();
        for (const { pool, live } of members()) {
          const count = counts.get(pool) ?? { healthy: 0, unhealthy: 0 };
          counts.set(pool, count);
          if (live?.healthy === true) count.healthy += 1;
          else count.unhealthy += 1;
        }
        for (const [pool, count] of counts) for (const health of ['healthy', 'unhealthy'] as const) this.set({ pool, health }, count[health]);
      },
    });
    new Gauge({
      name: 'ntp_pool_member_healthy',
      help: '1 while a pool member is live and passes its health checks, 0 while it gets no new users',
      labelNames: ['pool', 'group'],
      registers,
      collect() {
        this.reset();
        for (const { pool, group, live } of members()) this.set({ pool, group }, live?.healthy === true ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ntp_pool_member_connections',
      help: 'Live relayed user connections per pool member',
      labelNames: ['pool', 'group'],
      registers,
      collect() {
        this.reset();
        for (const { pool, group, live } of members()) this.set({ pool, group }, live?.liveConns ?? 0);
      },
    });
  }

  /** True while `group` (and `app`, if given) is in the registry: events of removed ones are late, and dropped. */
  private registered(group: string, app?: string): boolean {
    const spec = this.server.readyGroup.get(group);
    return spec !== undefined && (app === undefined || spec.apps.some((entry) => entry.name === app));
  }

  /** The pools some registered group's apps name: a pool's series live as long as it is named. */
  private namedPools(): Set<string> {
    const pools = new Set<string>();
    for (const spec of this.server.readyGroup.values()) for (const app of spec.apps) if (app.pool !== undefined) pools.add(app.pool);
    return pools;
  }

  /** Drops the series of pools no registered group names any more, and a group's in pools it left. */
  private forgetPools(group: string): void {
    const named = this.namedPools();
    for (const pool of [...this.refusedPools]) {
      if (named.has(pool)) continue;
      this.poolRefused.remove({ pool });
      this.refusedPools.delete(pool);
    }
    const mine = new Set(this.server.readyGroup.get(group)?.apps.flatMap((app) => (app.pool === undefined ? [] : [app.pool])));
    for (const key of [...this.memberPools]) {
      const [pool, of] = JSON.parse(key) as [string, string];
      if (of !== group || mine.has(pool)) continue;
      this.poolUsers.remove({ pool, group });
      this.memberPools.delete(key);
    }
  }

  private onEvent(event: ServerEvent): void {
    switch (event.type) {
      case 'group-deregistered':
        this.forgetPools(event.group);
        for (const key of this.routedNames.keys()) if (key.startsWith(`${event.group}/`)) this.unroute(key);
        return this.series.forget(event.group);
      case 'group-updated': {
        const spec = this.server.readyGroup.get(event.group);
        if (spec !== undefined) this.series.forget(event.group, new Set(spec.apps.map((app) => app.name)));
        return this.forgetPools(event.group);
      }
      case 'pool-user-refused':
        if (!this.namedPools().has(event.pool)) return;
        this.refusedPools.add(event.pool);
        return this.poolRefused.inc({ pool: event.pool });
      case 'login-rejected':
        return this.authFailures.inc({ code: event.code });
      case 'visitor-refused':
        return this.visitorsRefused.inc({ visitor_group: event.visitorGroup });
      case 'bad-peer':
        return this.badPeers.inc({ code: event.code });
      case 'vhost-refused':
        return this.vhostRefused.inc({ kind: event.kind, code: event.code });
      // The names of a live vhost app: gone with the app, its group's session or the group.
      case 'app-opened':
        if (event.domains === undefined) return;
        this.unroute(`${event.group}/${event.app}`);
        this.routedNames.set(`${event.group}/${event.app}`, event.domains);
        for (const domain of event.domains) this.vhostRoutes.set({ group: event.group, app: event.app, domain }, 1);
        return;
      case 'app-closed':
        return this.unroute(`${event.group}/${event.app}`);
      case 'group-deactivated':
        for (const key of this.routedNames.keys()) if (key.startsWith(`${event.group}/`)) this.unroute(key);
        return;
      default:
    }
    // A relay of a removed app or group may end after the removal: counting it would bring its series back.
    if (!('group' in event) || !this.registered(event.group, 'app' in event ? event.app : undefined)) return;
    switch (event.type) {
      case 'work-conn-joined': {
        const app = { group: event.group, app: event.app };
        this.series.count(this.connectionsTotal, app).inc();
        this.series.count(this.pairingSeconds, { group: event.group }).observe(event.waitedMs / 1000);
        return;
      }
      case 'traffic': {
        const app = { group: event.group, app: event.app };
        this.series.count(this.bytesIn, app).inc(event.bytesIn);
        this.series.count(this.bytesOut, app).inc(event.bytesOut);
        return;
      }
      case 'work-conn-failed':
        return this.series.count(this.pairingFailures, { group: event.group, app: event.app }).inc();
      case 'heartbeat-timeout':
        return this.series.count(this.heartbeatTimeouts, { group: event.group }).inc();
      case 'work-conn-pooled':
        return this.series.count(this.pooledWorkConns, { group: event.group }).inc();
      case 'udp-session-opened': {
        const app = { group: event.group, app: event.app };
        this.series.count(this.udpSessions, app).inc();
        this.series.count(this.udpSessionsTotal, app).inc();
        return;
      }
      case 'pool-user-routed':
        this.memberPools.add(JSON.stringify([event.pool, event.group]));
        return this.poolUsers.inc({ pool: event.pool, group: event.group });
      case 'udp-session-closed':
        return this.series.count(this.udpSessions, { group: event.group, app: event.app }).dec();
      case 'udp-dropped':
        for (const [reason, count] of Object.entries(event.dropped))
          this.series.count(this.udpDropped, { group: event.group, app: event.app, reason }).inc(count);
        return;
      default:
    }
  }

  private unroute(key: string): void {
    const [group, app] = key.split('/') as [string, string];
    for (const domain of this.routedNames.get(key) ?? []) this.vhostRoutes.remove({ group, app, domain });
    this.routedNames.delete(key);
  }
}
