import { DatagramLink, type DatagramConn } from '../../net/index.js';
import { randomId } from '../../protocol/index.js';

/** Datagrams (and bytes) a session holds while its work conn is on its way; more are dropped. */
const MAX_PENDING_DATAGRAMS = 64;
const MAX_PENDING_BYTES = 256 * 1024;

/** What a session needs from its UDP app: a way back to the user, and where to count. */
export interface UdpSessionOwner {
  /** False when the datagram was dropped. */
  sendToUser(session: UdpUserSession, payload: Buffer): boolean;
  dropped(reason: 'backlog'): void;
  sessionClosed(session: UdpUserSession, reason: string): void;
}

/**
 * One user address of a UDP app (its UdpSession on the server): datagrams from that address
 * go to the client on the session's own work conn, and the client's come back to it. Lives
 * from the user's first datagram until it is idle for the app's idleTimeout, its work conn
 * ends, or the app or group closes.
 */
export class UdpUserSession {
  /** Names the session on the wire (ReqWorkConn / StartWorkConn) and in events. */
  readonly pairingId = randomId();
  readonly since = Date.now();
  lastActivityAt = Date.now();
  datagramsIn = 0;
  datagramsOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  private link: DatagramLink | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private closed = false;

  constructor(
    readonly address: string,
    readonly port: number,
    /** `address:port`, or `[v6]:port`: the session's key in its app. */
    readonly peer: string,
    private readonly owner: UdpSessionOwner,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Relaying on its work conn (not waiting for one: the pairing deadline covers that wait). */
  get isAttached(): boolean {
    return this.link !== undefined;
  }

  /** A datagram from the user: on the work conn, or held (bounded) until it comes. */
  fromUser(payload: Buffer): void {
    if (this.closed) return;
    this.lastActivityAt = Date.now();
    if (this.link === undefined) {
      if (this.pending.length >= MAX_PENDING_DATAGRAMS || this.pendingBytes + payload.length > MAX_PENDING_BYTES) return this.owner.dropped('backlog');
      // dgram hands each message its own buffer: holding it keeps nothing else alive.
      this.pending.push(payload);
      this.pendingBytes += payload.length;
      return;
    }
    if (!this.link.send(payload)) return this.owner.dropped('backlog');
    this.count(payload, 'in');
  }

  /** The session's channel came (a mux stream, a pooled work conn, or one asked for): what was held goes first. */
  attach(workConn: DatagramConn): void {
    if (this.closed) return void workConn.destroy();
    this.link = new DatagramLink(workConn, {
      onDatagram: (payload) => {
        this.lastActivityAt = Date.now();
        // Counted once handed to the UDP socket: a datagram dropped on the way is not out.
        if (this.owner.sendToUser(this, payload)) this.count(payload, 'out');
      },
      onClosed: (how, reason) => this.end(how === 'end' ? 'the client ended the session' : `the work conn failed: ${reason}`),
    });
    workConn.cork();
    for (const payload of this.pending) this.fromUser(payload);
    workConn.uncork();
    this.pending = [];
    this.pendingBytes = 0;
  }

  /**
   * Ends the session from the server's side: `clean` (idle, app removed) with a FIN once the
   * queued datagrams are out; otherwise torn down at once. Idempotent.
   */
  close(clean: boolean, reason: string): void {
    if (this.closed) return;
    this.link?.close(clean);
    this.end(reason);
  }

  private end(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.owner.sessionClosed(this, reason);
  }

  private count(payload: Buffer, direction: 'in' | 'out'): void {
    if (direction === 'in') {
      this.datagramsIn++;
      this.bytesIn += payload.length;
    } else {
      this.datagramsOut++;
      this.bytesOut += payload.length;
    }
  }
}
