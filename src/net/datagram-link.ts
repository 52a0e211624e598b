import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv6, Socket } from 'node:net';
import { DatagramDecoder, encodeDatagram } from '../protocol/index.js';
import { resetSocket, type ResettableConn } from './reset.js';

/**
 * Bytes a work conn may hold queued in this process (beyond the kernel's own buffers) before
 * a UDP session's datagrams are dropped instead of queued. UDP may lose a datagram when the
 * path cannot carry the rate; it must not queue without bound. 512 KiB is about 4 ms at
 * 1 Gbit/s: enough to ride out a turn of the event loop, far too little to grow a process.
 */
export const MAX_DATAGRAM_BACKLOG_BYTES = 512 * 1024;

/**
 * Datagrams a UDP socket may hold queued in libuv (the kernel's send buffer full) before more
 * are dropped: the same bound as the backlog above, in datagrams.
 */
export const MAX_QUEUED_DATAGRAM_SENDS = 1024;

/** Asked of the kernel for each UDP socket of a session or app (capped by net.core.rmem_max / wmem_max). */
const UDP_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * A UDP socket for `host`'s family with large kernel buffers: a burst that arrives while the
 * event loop is busy waits there instead of being dropped by the kernel.
 */
export function createUdpSocket(host: string): UdpSocket {
  return createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', recvBufferSize: UDP_SOCKET_BUFFER_BYTES, sendBufferSize: UDP_SOCKET_BUFFER_BYTES });
}

export interface DatagramLinkHandlers {
  /** A whole datagram from the far end (a view into the read buffer: use it before returning). */
  onDatagram(payload: Buffer): void;
  /** The work conn is gone: `end` when the far end closed it, `error` on a reset or a failure. */
  onClosed(how: 'end' | 'error', reason: string): void;
}

/** What carries one UDP session's datagrams: a stream of the mux conn, or a single-use work conn. */
export type DatagramConn = ResettableConn & { setNoDelay(noDelay?: boolean): unknown };

/**
 * One UDP session's channel (a mux stream or a work conn), as both ends use it: datagrams in
 * and out as frames (`datagram-codec.ts`), a bounded backlog, and one report of its end. The
 * conn keeps its own 'error' listener for its whole life.
 */
export class DatagramLink {
  private readonly decoder = new DatagramDecoder();
  private closed = false;
  private corked = false;

  constructor(
    readonly workConn: DatagramConn,
    private readonly handlers: DatagramLinkHandlers,
  ) {
    workConn.on('data', this.onData);
    workConn.once('end', this.onEnd);
    workConn.on('error', this.onError);
    workConn.once('close', this.onClose);
    workConn.setNoDelay(true);
    workConn.resume();
  }

  /** Bytes queued on the work conn in this process. */
  get backlogBytes(): number {
    return this.workConn.writableLength;
  }

  /** Frames and queues one datagram; false (nothing written) when the backlog is full or the conn gone. */
  send(payload: Uint8Array): boolean {
    if (this.closed || !this.workConn.writable || this.workConn.writableLength >= MAX_DATAGRAM_BACKLOG_BYTES) return false;
    // The datagrams read in one turn of the event loop (libuv reads a burst of them per
    // wakeup) leave in one write: one syscall and a few TLS records instead of one each.
    if (!this.corked) {
      this.corked = true;
      this.workConn.cork();
      setImmediate(this.uncork);
    }
    this.workConn.write(encodeDatagram(payload));
    return true;
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.workConn.uncork();
  };

  /**
   * Ends the session from this side. `clean` (an idle timeout, a stop): a FIN once what is
   * queued is out. Otherwise (a fault, a forced teardown) the conn is torn down at once.
   */
  close(clean: boolean): void {
    if (this.closed) return;
    this.closed = true;
    if (clean) endSoon(this.workConn);
    else resetSocket(this.workConn);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.decoder.push(chunk, this.handlers.onDatagram);
  };

  private readonly onEnd = (): void => this.finish('end', 'the far end closed the session');

  private readonly onError = (error: NodeJS.ErrnoException): void => this.finish('error', error.code ?? error.message);

  private readonly onClose = (): void => this.finish('error', 'the work conn closed');

  private finish(how: 'end' | 'error', reason: string): void {
    const first = !this.closed;
    this.closed = true;
    if (how === 'end') endSoon(this.workConn);
    else this.workConn.destroy();
    this.workConn.off('data', this.onData);
    // Reported once, and only when the far end (not this side's close) ended it.
    if (first) this.handlers.onClosed(how, reason);
  }
}

/**
 * Ends a session's channel once what is queued is out. A socket is closed as soon as its FIN
 * is out; a mux stream ends (FIN) and retires itself once the far end's FIN came too (a
 * destroy before that would be an RST, a fault, to the far end).
 */
function endSoon(conn: DatagramConn): void {
  if (conn instanceof Socket) conn.destroySoon();
  else conn.end();
}
