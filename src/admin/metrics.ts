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
  private readonly udpSessions = new Gauge({ name: 'ntp_udp_sessions', help: 'Open sessions of UDP apps (one per user address)', labelNames: ['group', 'app'], registers: [this.registry] });
  private readonly udpSessionsTotal = new Counter({ name: 'ntp_udp_sessions_total', help: 'Sessions opened by UDP apps', labelNames: ['group', 'app'], registers: [this.registry] });
  private readonly udpDropped = new Counter({
    name: 'ntp_udp_dropped_total',
    help: 'Datagrams a UDP app dropped: oversize, sessionCap (new peers over maxSessions), notAllowed (outside allow), backlog (more queued than the path carries)',
    labelNames: ['group', 'app', 'reason'],
    registers: [this.registry],
  });
  private readonly authFailures = new Counter({ name: 'ntp_auth_failures_total', help: 'Rejected logins', labelNames: ['code'], registers: [this.registry] });
  private readonly heartbeatTimeouts = new Counter({ name: 'ntp_heartbeat_timeouts_total', help: 'Sessions ended by a heartbeat timeout', labelNames: ['group'], registers: [this.registry] });
  private readonly badPeers = new Counter({ name: 'ntp_bad_peers_total', help: 'Connections closed for a protocol or handshake fault', labelNames: ['code'], registers: [this.registry] });

  constructor(server: CommonServer) {
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
      case 'udp-session-opened':
        this.udpSessions.inc({ group: event.group, app: event.app });
        this.udpSessionsTotal.inc({ group: event.group, app: event.app });
        break;
      case 'udp-session-closed':
        this.udpSessions.dec({ group: event.group, app: event.app });
        break;
      case 'udp-dropped':
        for (const [reason, count] of Object.entries(event.dropped)) this.udpDropped.inc({ group: event.group, app: event.app, reason }, count);
        break;
      case 'work-conn-pooled':
        this.pooledWorkConns.inc({ group: event.group, how: event.reused ? 'reused' : 'new' });
        break;
      default:
        return;
    }
    this.updateGauges();
  }

  private updateGauges(): void {
    this.groups.set({ state: 'registered' }, this.registered.size);
    this.groups.set({ state: 'active' }, this.active.size);
    this.clientsConnected.set(this.active.size);
    this.apps.set(this.listeningApps.size);
  }
}
