import createDebug from 'debug';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Balance } from '../config/index.js';
import { peerOf, resetSocket } from '../net/index.js';
import type { AppServer } from './app-server.js';
import type { EmitServerEvent } from './events.js';
import { MemberPicker } from './member-picker.js';

const debug = createDebug('ntp:server:app-pool');

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
  port: number;
  balance: Balance;
  /** Users reset at once because no member could take them. */
  usersRefused: number;
  members: { group: string; app: string; healthy: boolean; reason: string; liveConns: number; openConns: number; usersRouted: number }[];
}

/**
 * A shared pool's public port: several groups' AppServers (its members) serve it. Each user is
 * routed to one live, healthy member (MemberPicker), and is then that member's UserConn like
 * any other: paired with its group's work conn, counted in its metrics. A user no member can
 * take is reset at once: holding it until the pairing deadline would only make it wait to fail.
 */
export class AppPool {
  private readonly server: Server;
  private readonly members: PoolMember[] = [];
  private readonly picker: MemberPicker;
  private usersRefused = 0;
  /** Users already retried once: a second failure resets them. */
  private readonly retried = new WeakSet<Socket>();
  port = 0;

  constructor(
    readonly name: string,
    readonly balance: Balance,
    private readonly emit: EmitServerEvent,
  ) {
    this.picker = new MemberPicker(balance);
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, this.onUserConn);
    this.server.on('error', (error) => debug('pool %s accept error: %s', name, error.message));
  }

  get size(): number {
    return this.members.length;
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, exclusive: true }, () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
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
    if (this.server.listening) this.server.close();
  }

  view(): PoolView {
    return {
      name: this.name,
      port: this.port,
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
  reroute(userConn: Socket, from: AppServer, reason: string): boolean {
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
    this.routeUser(userConn);
  };

  /**
   * Routes one user (paused, nothing read, an 'error' listener on it) to a live, healthy member,
   * or resets it. Public so that another front (a virtual host's route) can hand its users
   * to a pool as this pool's own port does.
   */
  routeUser(userConn: Socket): void {
    const { member, refusal } = this.pick(userConn, () => true, true);
    if (member === undefined) {
      this.usersRefused += 1;
      const reason = refusal ?? (this.members.length === 0 ? 'the pool has no member' : `none of its ${this.members.length} members is healthy`);
      resetSocket(userConn);
      this.emit({ type: 'pool-user-refused', pool: this.name, remote: peerOf(userConn), reason });
      return;
    }
    this.route(userConn, member);
  }

  /** The member for this user among the healthy ones `allowed` keeps, or the first refusal met. */
  private pick(userConn: Socket, allowed: (member: PoolMember) => boolean, advance: boolean): { member?: PoolMember; refusal?: string } {
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

  private route(userConn: Socket, member: PoolMember, retry?: { group: string; reason: string }): void {
    member.usersRouted += 1;
    this.emit({ type: 'pool-user-routed', pool: this.name, group: member.group, app: member.app.name, remote: peerOf(userConn), ...(retry ? { retriedFrom: retry.group, reason: retry.reason } : {}) });
    member.app.acceptUserConn(userConn);
  }
}
