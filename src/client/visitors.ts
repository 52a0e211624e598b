import createDebug from 'debug';
import type { Socket as UdpSocket, RemoteInfo } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import { asyncScheduler, Subject, type SchedulerLike, type Subscription } from 'rxjs';
import { formatHostPort, type VisitorSpec } from '../config/index.js';
import { createUdpSocket, DatagramLink, heartbeatWatchdog, joinConns, MAX_QUEUED_DATAGRAM_SENDS, peerOf, resetSocket, type MuxStream } from '../net/index.js';
import type { EmitClientEvent } from './events.js';
import { VisitFailed } from './visits.js';

const debug = createDebug('ntp:client:visitors');

/** A local UDP user with no datagram either way for this long is let go (its stream ended). */
export const VISITOR_UDP_IDLE_MS = 60_000;
/** Datagrams (and bytes) a new UDP user may send before its stream is there; more are dropped. */
const MAX_HELD_DATAGRAMS = 64;
const MAX_HELD_BYTES = 256 * 1024;

/** Where a visitor's user asks for its stream: the live session, if any. */
export type VisitOpener = (visitor: VisitorSpec) => Promise<MuxStream>;

/**
 * This host's visitors (`visitors:` in its file): a local port each, listening for the whole
 * life of the groupclient (across reconnects). Each TCP user there, or each new source address
 * of a UDP one, asks the server for the visitor's app (a Visit) and is relayed on the stream
 * the server opens; refused, it is reset and the line says why.
 */
export class ClientVisitors {
  private readonly listeners: Array<Server | UdpSocket> = [];
  private readonly users = new Set<Socket>();
  private readonly udpUsers = new Set<UdpVisitorUser>();
  private closed = false;

  constructor(
    private readonly visitors: readonly VisitorSpec[],
    private readonly open: VisitOpener,
    private readonly emit: EmitClientEvent,
    /** The UDP users' idle clock: real time by default, virtual in a test. */
    private readonly scheduler: SchedulerLike = asyncScheduler,
  ) {}

  /** Binds every visitor's port; one that cannot bind fails alone (an error line), the others serve. */
  async listen(): Promise<void> {
    await Promise.all(this.visitors.map((visitor) => this.listenFor(visitor)));
  }

  /** Stops listening and resets every user (their streams end with the session anyway). Idempotent. */
  close(): void {
    this.closed = true;
    for (const listener of this.listeners.splice(0)) listener.close();
    for (const user of this.users) resetSocket(user);
    for (const user of this.udpUsers) user.close(false);
  }

  private async listenFor(visitor: VisitorSpec): Promise<void> {
    const bind = formatHostPort(visitor.bind);
    const target = `${visitor.group}/${visitor.app}`;
    try {
      if (visitor.type === 'udp') await this.listenUdp(visitor);
      else await this.listenTcp(visitor);
      this.emit({ type: 'visitor-listening', visitor: visitor.name, target, bind, protocol: visitor.type });
    } catch (error) {
      this.emit({ type: 'visitor-failed', visitor: visitor.name, bind, reason: (error as Error).message });
    }
  }

  private listenTcp(visitor: VisitorSpec): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (user) => void this.serveTcpUser(visitor, user));
    return this.bound(visitor, server, (done) => server.listen({ host: visitor.bind.host, port: visitor.bind.port, exclusive: true }, done));
  }

  /**
   * Resolves once `bind` bound `listener`, rejects with its bind error. Later errors (EMFILE on
   * accept, a UDP send failing) must not end the process: the port keeps serving.
   */
  private bound(visitor: VisitorSpec, listener: Server | UdpSocket, bind: (done: () => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      listener.once('error', reject);
      bind(() => {
        listener.off('error', reject);
        listener.on('error', (error: Error) => debug('visitor %s: %s', visitor.name, error.message));
        if (this.closed) listener.close();
        else this.listeners.push(listener);
        resolve();
      });
    });
  }

  /** One local user of a TCP visitor, from its Visit to its record. */
  private async serveTcpUser(visitor: VisitorSpec, user: Socket): Promise<void> {
    user.on('error', (error) => debug('visitor %s user %s: %s', visitor.name, peerOf(user), error.message));
    this.users.add(user);
    user.once('close', () => this.users.delete(user));
    let stream: MuxStream;
    try {
      stream = await this.open(visitor);
    } catch (error) {
      // A reset, not a FIN: the local program must not take a refusal for an empty answer.
      resetSocket(user);
      return this.refused(visitor, error);
    }
    if (user.destroyed) return void stream.resetAndDestroy('the visitor left before its stream came');
    const started = Date.now();
    const { bytesIn, bytesOut, error } = await joinConns(user, stream);
    this.emit({
      type: 'visitor-conn-closed',
      visitor: visitor.name,
      bytesIn,
      bytesOut,
      durationMs: Date.now() - started,
      ...(error ? { error: error.message } : {}),
    });
  }

  private refused(visitor: VisitorSpec, error: unknown): void {
    const byServer = error instanceof VisitFailed && error.byServer;
    this.emit({ type: 'visitor-refused', visitor: visitor.name, group: visitor.group, app: visitor.app, reason: (error as Error).message, byServer });
  }

  private listenUdp(visitor: VisitorSpec): Promise<void> {
    const socket = createUdpSocket(visitor.bind.host);
    const users = new Map<string, UdpVisitorUser>();
    socket.on('message', (payload, from) => {
      const key = `${from.address}:${from.port}`;
      let user = users.get(key);
      if (user === undefined) {
        user = new UdpVisitorUser(socket, from, this.scheduler, () => {
          users.delete(key);
          this.udpUsers.delete(user!);
        });
        users.set(key, user);
        this.udpUsers.add(user);
        void this.serveUdpUser(visitor, user);
      }
      user.fromLocal(payload);
    });
    return this.bound(visitor, socket, (done) => socket.bind({ address: visitor.bind.host, port: visitor.bind.port, exclusive: true }, done));
  }

  private async serveUdpUser(visitor: VisitorSpec, user: UdpVisitorUser): Promise<void> {
    try {
      user.attach(await this.open(visitor));
    } catch (error) {
      user.close(false);
      this.refused(visitor, error);
    }
  }
}

/**
 * One source address on a UDP visitor's port: its datagrams go as frames on the stream the
 * server opens for its Visit (`datagram-codec.ts`, as a UDP app's session), the app's come back
 * to that address. Ends when idle, when its stream ends, or with the visitors.
 */
class UdpVisitorUser {
  private link: DatagramLink | undefined;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private closed = false;
  /** A datagram either way: each one restarts the idle clock. */
  private readonly active$ = new Subject<void>();
  private readonly idle: Subscription;

  constructor(
    private readonly socket: UdpSocket,
    private readonly from: RemoteInfo,
    scheduler: SchedulerLike,
    private readonly onClosed: () => void,
  ) {
    // The watchdog notes a datagram's time and keeps one timer per idle period, not one per datagram.
    this.idle = this.active$.pipe(heartbeatWatchdog(VISITOR_UDP_IDLE_MS, scheduler)).subscribe(() => this.close(true));
  }

  fromLocal(payload: Buffer): void {
    if (this.closed) return;
    this.active$.next();
    if (this.link !== undefined) return void this.link.send(payload);
    if (this.held.length >= MAX_HELD_DATAGRAMS || this.heldBytes + payload.length > MAX_HELD_BYTES) return;
    this.held.push(payload);
    this.heldBytes += payload.length;
  }

  attach(stream: MuxStream): void {
    if (this.closed) return void stream.resetAndDestroy('the visitor was let go before its stream came');
    this.link = new DatagramLink(stream, {
      onDatagram: (payload) => {
        this.active$.next();
        // A datagram is dropped, not queued without bound, when the kernel's buffer is full.
        if (this.socket.getSendQueueCount() >= MAX_QUEUED_DATAGRAM_SENDS) return;
        this.socket.send(Buffer.from(payload), this.from.port, this.from.address);
      },
      onClosed: () => this.close(false),
    });
    for (const payload of this.held) this.link.send(payload);
    this.held = [];
    this.heldBytes = 0;
  }

  /** `clean` (idle): a FIN once the queued datagrams are out; otherwise torn down. Idempotent. */
  close(clean: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.idle.unsubscribe();
    this.held = [];
    this.link?.close(clean);
    this.onClosed();
  }
}
