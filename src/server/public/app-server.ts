import createDebug from 'debug';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { AppSpec } from '../../config/index.js';
import { MuxStream, peerOf, resetSocket, type ByteMeter, type RelayOptions } from '../../net/index.js';
import type { VhostTarget, VirtualConn } from '../../vhost/index.js';
import type { VisitorConn } from '../users/visitor-conn.js';
import { AppBandwidth } from './app-bandwidth.js';
import type { EmitServerEvent } from '../events.js';
import { AppAccessControl } from './policy.js';
import { TrafficSampler } from './traffic-sampler.js';

const debug = createDebug('ntp:server:public:app-server');

/**
 * A user of a TCP app: its own socket, the VirtualConn that carries an HTTP user's requests
 * for one vhost app, or a visitor's stream (a private app's user). Each offers the relay what
 * it uses (bytes counted, pause/resume, end, reset).
 */
export type UserConn = Socket | VirtualConn | VisitorConn;

/** What an AppServer needs from its AppGroup: each UserConn it admits is served there (`serveUser`). */
export interface UserConnSink {
  onUserConn(app: AppServer, userConn: UserConn): void;
}

/**
 * One app's public port. It admits each UserConn (paused, so nothing is read before it has a
 * channel to the client) and hands it to its AppGroup, which serves it (`serveUser`).
 * A pooled app does not listen itself: its pool hands it the users routed to it (`connect`),
 * and `close` takes it out of the pool.
 */
export class AppServer implements VhostTarget {
  private readonly server: Server;
  /**
   * Set while this app is a member of a pool: leaving it is part of closing; `reroute` offers a
   * user this member failed to another member (false if none takes it).
   */
  poolMembership: { leave(reason: string): void; reroute(userConn: Socket | VirtualConn, reason: string): boolean } | undefined;
  private readonly liveConns = new Set<UserConn>();
  /** Every UserConn from accept to close: held (waiting for a work conn) or relayed. */
  private readonly userConns = new Set<UserConn>();
  private access: AppAccessControl;
  /** Shared by every relay of this app, so that a reload's new rates reach live users too. */
  readonly bandwidth: AppBandwidth;
  private currentSpec: AppSpec;
  private closed = false;
  /** The port actually bound (differs from the spec when remotePort is 0). */
  port = 0;
  /**
   * Bytes relayed by this app, live: every relay adds to it as its bytes move (the ones still
   * flowing included), so it only grows, and a conn that ends takes nothing back.
   */
  readonly relayed: ByteMeter = { bytesIn: 0, bytesOut: 0 };
  private readonly traffic: TrafficSampler;

  constructor(
    readonly group: string,
    spec: AppSpec,
    private readonly bindHost: string,
    private readonly sink: UserConnSink,
    private readonly emit: EmitServerEvent,
    private readonly maxPendingUsers = Number.POSITIVE_INFINITY,
  ) {
    this.currentSpec = spec;
    this.access = new AppAccessControl(spec);
    this.traffic = new TrafficSampler(group, emit);
    this.bandwidth = new AppBandwidth(spec.bandwidth);
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, this.onUserConn);
    // Accept errors (EMFILE and the like) must not take the process down; the server keeps listening.
    this.server.on('error', (error) => debug('%s/%s accept error: %s', group, spec.name, error.message));
  }

  get name(): string {
    return this.currentSpec.name;
  }

  get spec(): AppSpec {
    return this.currentSpec;
  }

  get label(): string {
    return `${this.group}/${this.name}`;
  }

  /** Private apps have no port at all: their users are visitors (`connect`). */
  get isPrivate(): boolean {
    return this.currentSpec.visibility === 'private';
  }

  /** Vhost apps have no port of their own: their users come from the shared vhost ports. */
  get isVhost(): boolean {
    return this.currentSpec.vhost !== undefined;
  }

  /**
   * An edited app with the same public port: its `allow` and `maxConnections` apply from the
   * next UserConn on; conns already accepted keep flowing, at the new `bandwidth` from now on.
   */
  applySpec(spec: AppSpec): void {
    this.currentSpec = spec;
    this.access = new AppAccessControl(spec);
    this.bandwidth.apply(spec.bandwidth);
  }

  get liveConnCount(): number {
    return this.liveConns.size;
  }

  /** UserConns accepted and not closed: waiting for a work conn or relayed. */
  get openConnCount(): number {
    return this.userConns.size;
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        this.server.off('listening', onListening);
        reject(error);
      };
      const onListening = (): void => {
        this.server.off('error', onError);
        this.port = (this.server.address() as AddressInfo).port;
        // Closed while binding (the group deactivated, the app removed): close() could not stop
        // a server that was not listening yet, so the port is released here.
        if (this.closed) this.server.close();
        debug('%s/%s listening on %s:%d', this.group, this.name, this.bindHost, this.port);
        resolve(this.port);
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ host: this.bindHost, port: this.spec.remotePort, exclusive: true });
    });
  }

  /**
   * Stops accepting and resets every UserConn still open, held or relayed: a forced end must
   * never look like a complete answer to the user. Idempotent.
   */
  close(reason = 'closed'): void {
    if (!this.closed) {
      this.closed = true;
      if (this.server.listening) this.server.close();
      this.poolMembership?.leave(reason);
      this.poolMembership = undefined;
    }
    for (const conn of this.userConns) resetSocket(conn);
    this.bandwidth.close();
  }

  /** A held UserConn costs memory until its work conn comes: their number is capped. */
  private pendingRefusal(): string | undefined {
    const held = this.userConns.size - this.liveConns.size;
    return held >= this.maxPendingUsers ? `${held} users already wait for a work conn (the maximum)` : undefined;
  }

  /** Bytes relayed so far by this AppServer, counting the live conns' progress too. */
  bytesSoFar(): { bytesIn: number; bytesOut: number } {
    return { ...this.relayed };
  }

  /** Emits a `traffic` sample with the bytes since the previous one, if any moved. */
  sampleTraffic(): void {
    this.traffic.sample(this.name, this.relayed.bytesIn, this.relayed.bytesOut, this.liveConns.size);
  }

  /** Every relay of this app: shaped by its bandwidth, counted into its totals as the bytes move. */
  relayOptions(): RelayOptions {
    return { ...this.bandwidth.relayOptions(), meter: this.relayed };
  }

  /** A UserConn's relay began: its bytes count in this app's traffic from now on. */
  relayStarted(userConn: UserConn): void {
    this.liveConns.add(userConn);
  }

  /** A UserConn's relay is over (its bytes are in `relayed` already): a last sample makes the totals exact. */
  relayEnded(userConn: UserConn): void {
    this.liveConns.delete(userConn);
    // Its streams are through: it no longer counts as open (least_conn compares this), even
    // if its socket is still flushing its last bytes.
    this.userConns.delete(userConn);
    this.sampleTraffic();
  }

  /**
   * Offers a UserConn this app could not serve, and of which nothing was read, to another member
   * of its pool. True when one took it: it is no longer this app's.
   */
  handOver(userConn: UserConn, reason: string): boolean {
    // A visitor's user is never pooled: a private app is in no pool.
    if (userConn instanceof MuxStream || this.poolMembership?.reroute(userConn, reason) !== true) return false;
    this.userConns.delete(userConn);
    return true;
  }

  /** Why this app would refuse a user from `remoteAddress` now (its allow list, its caps), or undefined. */
  refusalFor(remoteAddress: string | undefined): string | undefined {
    if (this.closed) return 'the app is closed';
    return this.access.refusal(remoteAddress, this.userConns.size) ?? this.pendingRefusal();
  }

  private readonly onUserConn = (userConn: Socket): void => {
    userConn.on('error', (error) => debug('%s/%s user conn %s: %s', this.group, this.name, peerOf(userConn), error.message));
    userConn.setKeepAlive(true, 30_000);
    this.admit(userConn);
  };

  /** Whether `address` passes the app's `allow` list (the vhost asks before it routes). */
  admits(address: string | undefined): boolean {
    return this.access.refusal(address, 0) === undefined;
  }

  /** A user routed here by the vhost ports, by this app's pool, or a visitor: served like one of its own port. */
  connect(conn: UserConn): string | undefined {
    return this.admit(conn);
  }

  /** Hands a user to its AppGroup, or closes it with why (the same checks for every kind of app). */
  private admit(userConn: UserConn): string | undefined {
    // Refused at accept, before any byte either way: closed, as frp does (nothing was cut short).
    if (this.closed) {
      userConn.destroy();
      return 'the app is closed';
    }
    const refusal = this.refusalFor(userConn.remoteAddress);
    if (refusal !== undefined) {
      userConn.destroy();
      this.emit({ type: 'user-conn-refused', group: this.group, app: this.name, remote: peerOf(userConn), reason: refusal });
      return refusal;
    }
    this.userConns.add(userConn);
    userConn.once('close', () => this.userConns.delete(userConn));
    this.sink.onUserConn(this, userConn);
    return undefined;
  }
}
