import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Subscription } from 'rxjs';
import type { CommonServer, ServerEvent } from '../server/index.js';

/**
 * The server's Prometheus metrics, derived only from `events$`: the relay code never calls a
 * metric. A registry per server (not prom-client's global one), so several servers can share
 * a process, as they do in tests.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly subscription: Subscription;
  private readonly registered = new Set<string>();
  private readonly active = new Set<string>();
  private readonly listeningApps = new Set<string>();

  private readonly clientsConnected = new Gauge({ name: 'ntp_clients_connected', help: 'Groupclients logged in (one per group in inUseGroup)', registers: [this.registry] });
  private readonly groups = new Gauge({ name: 'ntp_groups', help: 'Groups by state: registered (readyGroup) or active (inUseGroup)', labelNames: ['state'], registers: [this.registry] });
  private readonly apps = new Gauge({ name: 'ntp_apps_listening', help: 'Apps whose public port is open', registers: [this.registry] });
  private readonly connections = new Gauge({ name: 'ntp_connections', help: 'Live relayed user connections', labelNames: ['group', 'app'], registers: [this.registry] });
  private readonly connectionsTotal = new Counter({ name: 'ntp_connections_total', help: 'User connections paired with a work conn', labelNames: ['group', 'app'], registers: [this.registry] });
  private readonly bytesIn = new Counter({ name: 'ntp_bytes_in_total', help: 'Bytes from users towards the apps', labelNames: ['group', 'app'], registers: [this.registry] });
  private readonly bytesOut = new Counter({ name: 'ntp_bytes_out_total', help: 'Bytes from the apps towards users', labelNames: ['group', 'app'], registers: [this.registry] });
  private readonly pairingSeconds = new Histogram({
    name: 'ntp_pairing_seconds',
    help: 'Time from a user connection to its joined work conn',
    labelNames: ['group'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly pairingFailures = new Counter({ name: 'ntp_pairing_failures_total', help: 'User connections closed without a work conn', labelNames: ['group', 'app'], registers: [this.registry] });
  private readonly pooledWorkConns = new Counter({
    name: 'ntp_work_conns_pooled_total',
    help: 'Work conns put in a pool: newly opened, or reused (handed back after a user)',
    labelNames: ['group', 'how'],
    registers: [this.registry],
  });
  private readonly authFailures = new Counter({ name: 'ntp_auth_failures_total', help: 'Rejected logins', labelNames: ['code'], registers: [this.registry] });
  private readonly heartbeatTimeouts = new Counter({ name: 'ntp_heartbeat_timeouts_total', help: 'Sessions ended by a heartbeat timeout', labelNames: ['group'], registers: [this.registry] });
  private readonly badPeers = new Counter({ name: 'ntp_bad_peers_total', help: 'Connections closed for a protocol or handshake fault', labelNames: ['code'], registers: [this.registry] });

  // Pools: gauges read the pools at scrape time, so a member or pool that is gone has no series.
  // Registered before the two gauges below: its collect() fills them before they are read.
  private readonly poolMembers = new Gauge({
    name: 'ntp_pool_members',
    help: 'Members of each open pool, by health',
    labelNames: ['pool', 'health'],
    registers: [this.registry],
    collect: () => this.collectPools(),
  });
  private readonly poolMemberHealthy = new Gauge({ name: 'ntp_pool_member_healthy', help: '1 while a pool member passes its health checks, 0 while it gets no new users', labelNames: ['pool', 'group'], registers: [this.registry] });
  private readonly poolMemberConnections = new Gauge({ name: 'ntp_pool_member_connections', help: 'Live relayed user connections per pool member', labelNames: ['pool', 'group'], registers: [this.registry] });
  private readonly poolUsers = new Counter({ name: 'ntp_pool_users_total', help: 'Users routed to each pool member (since it joined)', labelNames: ['pool', 'group'], registers: [this.registry] });
  private readonly poolRefused = new Counter({ name: 'ntp_pool_users_refused_total', help: 'Users of a pool reset at once: no live, healthy member', labelNames: ['pool'], registers: [this.registry] });

  constructor(private readonly server: CommonServer) {
    // Start from the server's state (it may have registered groups already); events keep it current.
    for (const name of server.readyGroup.keys()) this.registered.add(name);
    for (const [name, group] of server.inUseGroup) {
      this.active.add(name);
      for (const app of group.apps.keys()) this.listeningApps.add(`${name}/${app}`);
    }
    this.updateGauges();
    this.subscription = server.events$.subscribe((event) => this.onEvent(event));
  }

  close(): void {
    this.subscription.unsubscribe();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private onEvent(event: ServerEvent): void {
    switch (event.type) {
      case 'group-registered':
        this.registered.add(event.group);
        break;
      case 'group-deregistered':
        this.registered.delete(event.group);
        break;
      case 'group-activated':
        this.active.add(event.group);
        break;
      case 'group-deactivated':
        this.active.delete(event.group);
        for (const key of this.listeningApps) if (key.startsWith(`${event.group}/`)) this.listeningApps.delete(key);
        break;
      case 'app-opened':
        this.listeningApps.add(`${event.group}/${event.app}`);
        break;
      case 'app-closed':
        this.listeningApps.delete(`${event.group}/${event.app}`);
        break;
      case 'work-conn-joined':
        this.connections.inc({ group: event.group, app: event.app });
        this.connectionsTotal.inc({ group: event.group, app: event.app });
        this.pairingSeconds.observe({ group: event.group }, event.waitedMs / 1000);
        break;
      case 'conn-closed':
        this.connections.dec({ group: event.group, app: event.app });
        break;
      case 'traffic':
        this.bytesIn.inc({ group: event.group, app: event.app }, event.bytesIn);
        this.bytesOut.inc({ group: event.group, app: event.app }, event.bytesOut);
        break;
      case 'work-conn-failed':
        this.pairingFailures.inc({ group: event.group, app: event.app });
        break;
      case 'login-rejected':
        this.authFailures.inc({ code: event.code });
        break;
      case 'heartbeat-timeout':
        this.heartbeatTimeouts.inc({ group: event.group });
        break;
      case 'bad-peer':
        this.badPeers.inc({ code: event.code });
        break;
      case 'work-conn-pooled':
        this.pooledWorkConns.inc({ group: event.group, how: event.reused ? 'reused' : 'new' });
        break;
      case 'pool-user-routed':
        this.poolUsers.inc({ pool: event.pool, group: event.group });
        break;
      case 'pool-user-refused':
        this.poolRefused.inc({ pool: event.pool });
        break;
      case 'pool-member-left':
        this.poolUsers.remove({ pool: event.pool, group: event.group });
        break;
      case 'pool-closed':
        this.poolRefused.remove({ pool: event.pool });
        break;
      default:
        return;
    }
    this.updateGauges();
  }

  private collectPools(): void {
    this.poolMembers.reset();
    this.poolMemberHealthy.reset();
    this.poolMemberConnections.reset();
    for (const pool of this.server.pools.views()) {
      const healthy = pool.members.filter((member) => member.healthy).length;
      this.poolMembers.set({ pool: pool.name, health: 'healthy' }, healthy);
      this.poolMembers.set({ pool: pool.name, health: 'unhealthy' }, pool.members.length - healthy);
      for (const member of pool.members) {
        this.poolMemberHealthy.set({ pool: pool.name, group: member.group }, member.healthy ? 1 : 0);
        this.poolMemberConnections.set({ pool: pool.name, group: member.group }, member.liveConns);
      }
    }
  }

  private updateGauges(): void {
    this.groups.set({ state: 'registered' }, this.registered.size);
    this.groups.set({ state: 'active' }, this.active.size);
    this.clientsConnected.set(this.active.size);
    this.apps.set(this.listeningApps.size);
  }
}
