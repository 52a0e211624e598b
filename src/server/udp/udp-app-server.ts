import createDebug from 'debug';
import type { RemoteInfo, Socket as UdpSocket } from 'node:dgram';
import { interval, type Subscription } from 'rxjs';
import { formatDuration, UDP_DEFAULTS, type AppSpec, type UdpSettings } from '../../config/index.js';
import { createUdpSocket, MAX_QUEUED_DATAGRAM_SENDS } from '../../net/index.js';
import type { EmitServerEvent } from '../events.js';
import { AppAccessControl } from '../public/policy.js';
import { TrafficSampler } from '../public/traffic-sampler.js';
import { UdpUserSession, type UdpSessionOwner } from './udp-user-session.js';

const debug = createDebug('ntp:server:udp:udp-app-server');

/** Why a datagram was not relayed. */
export type UdpDropReason = 'oversize' | 'sessionCap' | 'notAllowed' | 'backlog';
export const UDP_DROP_REASONS: readonly UdpDropReason[] = ['oversize', 'sessionCap', 'notAllowed', 'backlog'];

export interface UdpCounters {
  sessions: number;
  sessionsTotal: number;
  datagramsIn: number;
  datagramsOut: number;
  dropped: Record<UdpDropReason, number>;
}

/** What a UdpAppServer needs from its AppGroup: a work conn for each new session. */
export interface UdpSessionSink {
  onUdpSession(app: UdpAppServer, session: UdpUserSession): void;
  onUdpSessionClosed(session: UdpUserSession): void;
}

/**
 * A UDP app's public port. Each user address is a session with its own work conn; datagrams
 * from a new address beyond `maxSessions`, from an address outside `allow`, or larger than
 * `maxDatagramBytes` are dropped and counted, as are those a full backlog cannot take.
 */
export class UdpAppServer implements UdpSessionOwner {
  private readonly socket: UdpSocket;
  private readonly sessions = new Map<string, UdpUserSession>();
  private access: AppAccessControl;
  private currentSpec: AppSpec;
  private sweep: Subscription | undefined;
  private closed = false;
  port = 0;
  private sessionsTotal = 0;
  private closedIn = { datagrams: 0, bytes: 0 };
  private closedOut = { datagrams: 0, bytes: 0 };
  private readonly drops: Record<UdpDropReason, number> = { oversize: 0, sessionCap: 0, notAllowed: 0, backlog: 0 };
  private readonly reportedDrops: Record<UdpDropReason, number> = { oversize: 0, sessionCap: 0, notAllowed: 0, backlog: 0 };
  private readonly traffic: TrafficSampler;

  constructor(
    readonly group: string,
    spec: AppSpec,
    private readonly bindHost: string,
    private readonly sink: UdpSessionSink,
    private readonly emit: EmitServerEvent,
  ) {
    this.currentSpec = spec;
    this.access = new AppAccessControl(spec);
    this.traffic = new TrafficSampler(group, emit);
    this.socket = createUdpSocket(bindHost);
    this.socket.on('message', this.onDatagram);
    // An ICMP error or a failed send must not take the process down; the port keeps serving.
    this.socket.on('error', (error) => debug('%s/%s: %s', group, spec.name, error.message));
  }

  get name(): string {
    return this.currentSpec.name;
  }

  get spec(): AppSpec {
    return this.currentSpec;
  }

  private get settings(): UdpSettings {
    return this.currentSpec.udp ?? UDP_DEFAULTS;
  }

  /** Sessions open now (the admin API's and dashboard's "live conns" of a UDP app). */
  get liveConnCount(): number {
    return this.sessions.size;
  }

  /** `allow`, `maxSessions`, `maxDatagramBytes` and `idleTimeout` apply from now on. */
  applySpec(spec: AppSpec): void {
    const idleChanged = spec.udp?.idleTimeoutMs !== this.settings.idleTimeoutMs;
    this.currentSpec = spec;
    this.access = new AppAccessControl(spec);
    if (idleChanged && this.sweep !== undefined) this.startSweep();
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        // A socket whose bind failed is of no further use (a retry makes a new UdpAppServer).
        this.close();
        reject(error);
      };
      this.socket.once('error', onError);
      this.socket.bind({ address: this.bindHost, port: this.currentSpec.remotePort, exclusive: true }, () => {
        this.socket.off('error', onError);
        this.port = this.socket.address().port;
        if (this.closed) this.socket.close();
        else this.startSweep();
        debug('%s/%s listening on %s:%d/udp', this.group, this.name, this.bindHost, this.port);
        resolve(this.port);
      });
    });
  }

  /** Stops receiving and ends every session, their work conns torn down. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sweep?.unsubscribe();
    try {
      this.socket.close();
    } catch {
      // Never bound (its bind failed): nothing to release.
    }
    for (const session of [...this.sessions.values()]) session.close(false, 'the app closed');
  }

  counters(): UdpCounters {
    const { datagramsIn, datagramsOut } = this.totals();
    return { sessions: this.sessions.size, sessionsTotal: this.sessionsTotal, datagramsIn, datagramsOut, dropped: { ...this.drops } };
  }

  /** Bytes relayed so far, the live sessions' included. */
  bytesSoFar(): { bytesIn: number; bytesOut: number } {
    const { bytesIn, bytesOut } = this.totals();
    return { bytesIn, bytesOut };
  }

  /** Emits `traffic` and `udp-dropped` samples with what changed since the previous ones. */
  sampleTraffic(): void {
    const { bytesIn, bytesOut } = this.totals();
    this.traffic.sample(this.name, bytesIn, bytesOut, this.sessions.size);
    const since: Partial<Record<UdpDropReason, number>> = {};
    for (const reason of UDP_DROP_REASONS) {
      const delta = this.drops[reason] - this.reportedDrops[reason];
      if (delta > 0) since[reason] = delta;
      this.reportedDrops[reason] = this.drops[reason];
    }
    if (Object.keys(since).length > 0) this.emit({ type: 'udp-dropped', group: this.group, app: this.name, dropped: since });
  }

  /** False when the datagram was dropped (too big, or the socket's queue is full): it is not out. */
  sendToUser(session: UdpUserSession, payload: Buffer): boolean {
    if (payload.length > this.settings.maxDatagramBytes) return this.drop('oversize');
    if (this.closed || this.socket.getSendQueueCount() >= MAX_QUEUED_DATAGRAM_SENDS) return this.drop('backlog');
    this.socket.send(payload, session.port, session.address);
    return true;
  }

  private drop(reason: UdpDropReason): false {
    this.dropped(reason);
    return false;
  }

  dropped(reason: UdpDropReason): void {
    this.drops[reason]++;
  }

  sessionClosed(session: UdpUserSession, reason: string): void {
    if (this.sessions.get(session.peer) === session) this.sessions.delete(session.peer);
    this.sink.onUdpSessionClosed(session);
    this.closedIn.datagrams += session.datagramsIn;
    this.closedIn.bytes += session.bytesIn;
    this.closedOut.datagrams += session.datagramsOut;
    this.closedOut.bytes += session.bytesOut;
    this.emit({
      type: 'udp-session-closed',
      group: this.group,
      app: this.name,
      peer: session.peer,
      pairingId: session.pairingId,
      reason,
      datagramsIn: session.datagramsIn,
      datagramsOut: session.datagramsOut,
      bytesIn: session.bytesIn,
      bytesOut: session.bytesOut,
      durationMs: Date.now() - session.since,
    });
  }

  private totals(): { datagramsIn: number; datagramsOut: number; bytesIn: number; bytesOut: number } {
    let datagramsIn = this.closedIn.datagrams;
    let datagramsOut = this.closedOut.datagrams;
    let bytesIn = this.closedIn.bytes;
    let bytesOut = this.closedOut.bytes;
    for (const session of this.sessions.values()) {
      datagramsIn += session.datagramsIn;
      datagramsOut += session.datagramsOut;
      bytesIn += session.bytesIn;
      bytesOut += session.bytesOut;
    }
    return { datagramsIn, datagramsOut, bytesIn, bytesOut };
  }

  private readonly onDatagram = (payload: Buffer, from: RemoteInfo): void => {
    if (this.closed) return;
    if (payload.length > this.settings.maxDatagramBytes) return this.dropped('oversize');
    const peer = from.family === 'IPv6' ? `[${from.address}]:${from.port}` : `${from.address}:${from.port}`;
    let session = this.sessions.get(peer);
    if (session === undefined) {
      // A datagram has no connection to refuse: one from a peer that may not start a session is dropped.
      if (this.access.refusal(from.address, 0) !== undefined) return this.dropped('notAllowed');
      if (this.sessions.size >= this.settings.maxSessions) return this.dropped('sessionCap');
      session = new UdpUserSession(from.address, from.port, peer, this);
      this.sessions.set(peer, session);
      this.sessionsTotal++;
      this.sink.onUdpSession(this, session);
      if (session.isClosed) return;
    }
    session.fromUser(payload);
  };

  /**
   * Closes the sessions idle for idleTimeout, checked a few times per timeout (not per
   * datagram). A session still waiting for its work conn is left to the pairing deadline:
   * its user is waiting for an answer, not idle.
   */
  private startSweep(): void {
    this.sweep?.unsubscribe();
    const idleMs = this.settings.idleTimeoutMs;
    this.sweep = interval(Math.max(25, Math.min(1000, Math.floor(idleMs / 4)))).subscribe(() => {
      const now = Date.now();
      for (const session of [...this.sessions.values()]) {
        if (session.isAttached && now - session.lastActivityAt >= this.settings.idleTimeoutMs)
          session.close(true, `idle for ${formatDuration(this.settings.idleTimeoutMs)}`);
      }
    });
  }
}
