import createDebug from 'debug';
import type { Socket } from 'node:net';
import { firstValueFrom, fromEvent, tap, type Observable } from 'rxjs';
import { ProtocolError, type GoodbyeCode, type Message } from '../protocol/index.js';
import { deadline } from './deadline.js';
import { FrameReader } from './frame-reader.js';
import { writeFrame } from './frame-trace.js';
import { peerOf } from './peer.js';
import { resetSocket } from './reset.js';

const debug = createDebug('ntp:net:control-channel');

/** How long a conn's last message (a Goodbye) gets to reach the peer before the socket is destroyed anyway. */
const GOODBYE_GRACE_MS = 1000;

/**
 * The most that may wait in our process for a peer that does not read its control conn
 * (beyond what the kernel's socket buffers hold). Above a quarter of it, the peer's frames
 * are no longer read until everything queued has gone out, so a peer that sends requests
 * and never reads the answers is slowed down by TCP itself; above all of it (what we send
 * on our own accord, not in answer), the peer is cut off as a slow peer.
 */
export const DEFAULT_MAX_CONTROL_QUEUE_BYTES = 4 * 1024 * 1024;

/**
 * A control conn: frames in (`messages$`), frames out (`send`). Who subscribes when is part of
 * the protocol: each side subscribes for the next phase before sending the message that lets
 * the peer speak, so nothing is emitted while nobody listens.
 */
export class ControlChannel {
  readonly messages$: Observable<Message>;
  readonly peer: string;
  private readonly highWaterBytes: number;
  private throttled = false;

  constructor(
    readonly socket: Socket,
    private readonly reader: FrameReader = new FrameReader(socket),
    private readonly maxQueueBytes: number = DEFAULT_MAX_CONTROL_QUEUE_BYTES,
  ) {
    this.messages$ = reader.messages$;
    this.peer = peerOf(socket);
    // 'drain' (which ends the throttle) only follows a write that went over the socket's own mark.
    this.highWaterBytes = Math.max(Math.floor(maxQueueBytes / 4), socket.writableHighWaterMark);
  }

  get open(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }

  /**
   * Bytes queued for a peer that is not reading them, while its own frames are left unread
   * because of it; undefined when the peer keeps up. A session whose heartbeat deadline
   * passes in this state names the peer slow (SLOW_PEER), not silent: it stopped reading, we
   * stopped listening.
   */
  get stalledBytes(): number | undefined {
    return this.throttled ? this.socket.writableLength : undefined;
  }

  /**
   * Frames sent while the event loop handles one batch of I/O leave in one write (and with
   * TLS one record): every write wakes the peer. The flush waits for the check phase, not
   * the next tick, so that sends after an `await` (a relay's end, then its WorkConnIdle) and
   * sends for several conns whose events arrived together share it.
   */
  send(message: Message): void {
    if (!this.open) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.flush);
    }
    writeFrame(this.socket, message);
    if (this.socket.writableLength > this.highWaterBytes) this.onQueueHigh();
  }

  private onQueueHigh(): void {
    const queued = this.socket.writableLength;
    if (queued > this.maxQueueBytes) {
      debug('%s: %d bytes queued, cutting it off', this.peer, queued);
      // Reset first: subscribers handle the error at once, and a Goodbye would queue behind
      // everything the peer is not reading.
      resetSocket(this.socket);
      this.reader.fail(new ProtocolError('SLOW_PEER', `the peer read none of the ${queued} bytes queued for it (more than ${this.maxQueueBytes})`));
      return;
    }
    if (this.throttled) return;
    debug('%s: %d bytes queued, not reading it until they are out', this.peer, queued);
    this.throttled = true;
    this.reader.throttle();
    this.socket.once('drain', this.onDrain);
  }

  private readonly onDrain = (): void => {
    this.throttled = false;
    this.reader.unthrottle();
  };

  private corked = false;
  private readonly flush = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  /**
   * The next message, which must be of one of `types`: anything else, or a close, rejects with
   * a ProtocolError. Frames after it are held until the next phase calls `next` or `release`.
   */
  async next<T extends Message['type']>(...types: [T, ...T[]]): Promise<Extract<Message, { type: T }>> {
    const type = types.join(' or ');
    let message: Message;
    try {
      const received = firstValueFrom(this.messages$.pipe(tap(() => this.reader.hold())));
      this.reader.release();
      message = await received;
    } catch (error) {
      if (error instanceof ProtocolError) throw error;
      throw new ProtocolError('CONNECTION_CLOSED', `connection closed while waiting for ${type}`, { cause: error });
    }
    if (message.type === 'Goodbye' && !types.includes('Goodbye' as T)) {
      throw new ProtocolError('CONNECTION_CLOSED', `peer said goodbye (${message.code}): ${message.reason}`);
    }
    if (!types.includes(message.type as T)) {
      throw new ProtocolError('UNEXPECTED_MESSAGE', `expected ${type}, got ${message.type}`);
    }
    return message as Extract<Message, { type: T }>;
  }

  /** Stops emitting after the current frame; later frames wait for `release`. */
  hold(): void {
    this.reader.hold();
  }

  /** Lets held frames through: call once the subscriber for them is in place. */
  release(): void {
    this.reader.release();
  }

  /** Says why, then closes (see `sendLast`); idempotent. */
  goodbye(code: GoodbyeCode, reason: string): void {
    this.sendLast({ type: 'Goodbye', code, reason });
  }

  /**
   * Sends the conn's last message (a Goodbye, a refused LoginResp), then closes: our FIN once it
   * is out, and the socket destroyed GOODBYE_GRACE_MS later at most, not left to wait for the
   * peer's FIN. Nothing reads the conn any more, so a peer that sent anything after its last
   * frame read would never be seen to end: its conn would stay open, owned by no one. A peer that
   * reads nothing would get the message only after everything queued before it, if ever: it is
   * reset instead. Idempotent.
   */
  sendLast(last: Message): void {
    if (!this.open) {
      this.socket.destroy();
      return;
    }
    if (this.throttled) {
      resetSocket(this.socket);
      return;
    }
    this.send(last);
    this.socket.end();
    deadline(GOODBYE_GRACE_MS, fromEvent(this.socket, 'close')).subscribe(() => this.socket.destroy());
  }

  destroy(): void {
    if (this.throttled) return resetSocket(this.socket);
    if (this.corked) this.flush();
    this.socket.destroy();
  }
}
