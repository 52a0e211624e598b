import createDebug from 'debug';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { appDomains, type AppSpec, type Balance } from '../../config/index.js';
import { peerOf, resetSocket } from '../../net/index.js';
import type { VhostTarget, VirtualConn } from '../../vhost/index.js';
import type { AppServer } from '../public/app-server.js';
import type { EmitServerEvent } from '../events.js';
import { MemberPicker } from './member-picker.js';

const debug = createDebug('ntp:server:shared-ports:shared-port');

/** One group's app in a pool, from its activation until its session or app ends. */
export interface PoolMember {
  readonly group: string;
  readonly app: AppServer;
  healthy: boolean;
  /** The last HealthReport's words (or why the member is trusted). */
  healthReason: string;
  /** Users routed to this member since it joined. */
  usersRouted: number;
}

/** A pool as the admin API and dashboard show it. */
export interface PoolView {
  name: string;
  /** The pool's public port; 0 for a vhost pool (its users come by name on the vhost ports). */
  port: number;
  /** A vhost pool's names (its first member's, which every member shares); absent for a port pool. */
  domains?: string[];
  balance: Balance;
  /** Users reset at once because no member could take them. */
  usersRefused: number;
  members: { group: string; app: string; healthy: boolean; reason: string; liveConns: number; openConns: number; usersRouted: number }[];
}

/** A user conn a pool may route: a socket of its own, or an HTTP user's VirtualConn to the pool's names. */
type PoolUser = Socket | VirtualConn;

/**
 * A shared pool: several groups' AppServers (its members) serve one public port, or one set of
 * names on the vhost ports. Each user is routed to one live, healthy member (MemberPicker), and
 * is then that member's UserConn like any other: paired with its group's work conn, counted in
 * its metrics. A user no member can take is reset (or answered 503 on the vhost) at once:
 * holding it until the pairing deadline would only make it wait to fail.
 */
export class SharedPort implements VhostTarget {
  private server: Server | undefined;
  private readonly members: PoolMember[] = [];
  private readonly picker: MemberPicker;
  private usersRefused = 0;
  /** Users already retried once: a second failure resets them. */
  private readonly retried = new WeakSet<PoolUser>();
  port = 0;

  constructor(
    readonly name: string,
    readonly balance: Balance,
    private readonly emit: EmitServerEvent,
  ) {
    this.picker = new MemberPicker(balance);
  }

  get size(): number {
    return this.members.length;
  }

  /** `pool NAME`: what the vhost router attaches this pool under. */
  get label(): string {
    return `pool ${this.name}`;
  }

  /**
   * The app as the vhost reads it for a request (auth, rewrite, locations): the first member's,
   * which every member agrees with (the registry refuses a member whose vhost fields differ).
   */
  get spec(): AppSpec {
    return this.members[0]!.app.spec;
  }

  /** Opens the pool's public port (a vhost pool has none: the vhost ports route to it by name). */
  listen(host: string, port: number): Promise<number> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, this.onUserConn);
    server.on('error', (error) => debug('pool %s accept error: %s', this.name, error.message));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, () => {
        server.off('error', reject);
        this.port = (server.address() as AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  /** A member is trusted from its login until a failed HealthReport: its client checks at once. */
  add(group: string, app: AppServer): void {
    this.members.push({ group, app, healthy: true, healthReason: 'joined (healthy until a check fails)', usersRouted: 0 });
    app.port = this.port;
    this.emit({ type: 'pool-member-joined', pool: this.name, group, app: app.name });
  }

  /** Takes a member out at once: it gets no new user (its own users are its AppServer's to close). */
  remove(app: AppServer, reason: string): boolean {
    const index = this.members.findIndex((member) => member.app === app);
    if (index < 0) return false;
    const [member] = this.members.splice(index, 1);
    this.emit({ type: 'pool-member-left', pool: this.name, group: member!.group, app: app.name, reason });
    return true;
  }

  setHealth(group: string, healthy: boolean, reason: string): boolean {
    const member = this.members.find((candidate) => candidate.group === group);
    if (member === undefined) return false;
    const changed = member.healthy !== healthy;
    member.healthy = healthy;
    member.healthReason = reason;
    if (changed) this.emit({ type: 'pool-member-health', pool: this.name, group, app: member.app.name, healthy, reason });
    return true;
  }

  close(): void {
    if (this.server?.listening === true) this.server.close();
  }

  /** The pool as the admin API shows it; `subdomainHost` completes a vhost pool's `subdomain`. */
  view(subdomainHost?: string): PoolView {
    const first = this.members[0]?.app.spec;
    return {
      name: this.name,
      port: this.port,
      ...(first?.vhost === undefined ? {} : { domains: appDomains(first, 0, subdomainHost).map(({ domain }) => domain) }),
      balance: this.balance,
      usersRefused: this.usersRefused,
      members: this.members.map((member) => ({
        group: member.group,
        app: member.app.name,
        healthy: member.healthy,
        reason: member.healthReason,
        liveConns: member.app.liveConnCount,
        openConns: member.app.openConnCount,
        usersRouted: member.usersRouted,
      })),
    };
  }

  /**
   * A user that `from` could not serve before anything was read from it (its client failed the
   * local dial or the work conn): tried once on another live, healthy member. Safe because no
   * byte of it reached any app. False when it was retried already or no other member takes it.
   */
  reroute(userConn: PoolUser, from: AppServer, reason: string): boolean {
    if (this.retried.has(userConn) || userConn.destroyed) return false;
    const failed = this.members.find((member) => member.app === from);
    const member = this.pick(userConn, (candidate) => candidate !== failed, false).member;
    if (member === undefined) return false;
    this.retried.add(userConn);
    this.route(userConn, member, { group: failed?.group ?? from.group, reason });
    return true;
  }

  private readonly onUserConn = (userConn: Socket): void => {
    userConn.on('error', (error) => debug('pool %s user conn %s: %s', this.name, peerOf(userConn), error.message));
    userConn.setKeepAlive(true, 30_000);
    const refusal = this.connect(userConn);
    if (refusal !== undefined) resetSocket(userConn);
  };

  /**
   * Routes one user (paused, nothing read, an 'error' listener on it) to a live, healthy member:
   * undefined once a member holds it, else why none could (the caller resets it, or the vhost
   * answers 503). The pool's own port and the vhost routes of its names both come here.
   */
  connect(userConn: PoolUser): string | undefined {
    const { member, refusal } = this.pick(userConn, () => true, true);
    if (member === undefined) {
      this.usersRefused += 1;
      const reason = refusal ?? (this.members.length === 0 ? 'the pool has no member' : `none of its ${this.members.length} members is healthy`);
      this.emit({ type: 'pool-user-refused', pool: this.name, remote: peerOf(userConn as Socket), reason });
      return reason;
    }
    this.route(userConn, member);
    return undefined;
  }

  /** Whether any member's `allow` list lets `address` in (each member still checks its own when picked). */
  admits(address: string | undefined): boolean {
    return this.members.some((member) => member.app.admits(address));
  }

  /** The member for this user among the healthy ones `allowed` keeps, or the first refusal met. */
  private pick(userConn: PoolUser, allowed: (member: PoolMember) => boolean, advance: boolean): { member?: PoolMember; refusal?: string } {
    let refusal: string | undefined;
    const picked = this.picker.pick(
      this.members.map((candidate) => ({ candidate, openConns: candidate.app.openConnCount })),
      ({ candidate }) => {
        if (!candidate.healthy || !allowed(candidate)) return false;
        const why = candidate.app.refusalFor(userConn.remoteAddress);
        refusal ??= why;
        return why === undefined;
      },
      { advance },
    );
    return picked === undefined ? (refusal === undefined ? {} : { refusal }) : { member: picked.candidate };
  }

  private route(userConn: PoolUser, member: PoolMember, retry?: { group: string; reason: string }): void {
    member.usersRouted += 1;
    this.emit({
      type: 'pool-user-routed',
      pool: this.name,
      group: member.group,
      app: member.app.name,
      remote: peerOf(userConn as Socket),
      ...(retry ? { retriedFrom: retry.group, reason: retry.reason } : {}),
    });
    member.app.connect(userConn);
  }
}
