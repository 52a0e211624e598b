import type { Socket } from 'node:net';
import { firstValueFrom, tap, type Observable } from 'rxjs';
import { encodeFrame, ProtocolError, type GoodbyeCode, type Message } from '../protocol/index.js';
import { FrameReader } from './frame-reader.js';

/** How long a Goodbye gets to reach the peer before the socket is destroyed anyway. */
const GOODBYE_GRACE_MS = 1000;

/**
 * A control conn: frames in (`messages$`), frames out (`send`). Who subscribes when is part of
 * the protocol: each side subscribes for the next phase before sending the message that lets
 * the peer speak, so nothing is emitted while nobody listens.
 */
export class ControlChannel {
  readonly messages$: Observable<Message>;
  readonly peer: string;

  constructor(
    readonly socket: Socket,
    private readonly reader: FrameReader = new FrameReader(socket),
  ) {
    this.messages$ = reader.messages$;
    this.peer = peerOf(socket);
  }

  get open(): boolean {
    return !this.socket.destroyed && this.socket.writable;
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
    this.socket.write(encodeFrame(message));
  }

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

  /** Says why, then closes; idempotent. */
  goodbye(code: GoodbyeCode, reason: string): void {
    if (!this.open) {
      this.socket.destroy();
      return;
    }
    this.send({ type: 'Goodbye', code, reason });
    this.socket.end();
    setTimeout(() => this.socket.destroy(), GOODBYE_GRACE_MS).unref();
  }

  destroy(): void {
    if (this.corked) this.flush();
    this.socket.destroy();
  }
}

export function peerOf(socket: Socket): string {
  const { remoteAddress, remotePort } = socket;
  if (remoteAddress === undefined) return 'unknown peer';
  return remoteAddress.includes(':') ? `[${remoteAddress}]:${remotePort}` : `${remoteAddress}:${remotePort}`;
}
