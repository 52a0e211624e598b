import type { Socket } from 'node:net';
import { Subject, type Observable } from 'rxjs';
import { FrameDecoder, ProtocolError, type Message } from '../protocol/index.js';

/**
 * Reads frames off a socket and emits them one at a time, synchronously. Two ways to stop
 * between frames, both safe against several frames arriving in one chunk:
 * - `hold()`: frames stay buffered (and the socket paused) until `release()`; used between
 *   protocol phases, while the next phase's subscriber is not in place yet.
 * - `detach()`: hands the socket over as a raw stream (a work conn after NewWorkConn).
 * A malformed frame errors `messages$` with a ProtocolError; the owner decides what to do
 * (normally: report the peer and destroy the socket). A FIN completes it once the held frames
 * are out, or errors it (TRUNCATED_FRAME) when it cuts a frame short; a close completes it.
 */
export class FrameReader {
  private readonly decoder = new FrameDecoder();
  private readonly messages = new Subject<Message>();
  private attached = true;
  private held = false;
  private peerEnded = false;
  readonly messages$: Observable<Message> = this.messages.asObservable();

  constructor(private readonly socket: Socket) {
    socket.on('data', this.onSocketData);
    socket.on('end', this.onSocketEnd);
    socket.on('close', this.onSocketClose);
  }

  hold(): void {
    if (this.held || !this.attached) return;
    this.held = true;
    this.socket.pause();
  }

  release(): void {
    if (!this.held || !this.attached) return;
    this.held = false;
    this.drain();
    if (!this.attached || this.held) return;
    if (this.peerEnded) this.finish();
    else this.socket.resume();
  }

  /**
   * Stops reading frames: the socket is paused and any bytes already received after the last
   * frame are put back, so the next reader (a relay) sees the stream from exactly there.
   */
  detach(): void {
    if (!this.attached) return;
    this.stopListening();
    this.socket.pause();
    const rest = this.decoder.takeRemainder();
    if (rest.length > 0) this.socket.unshift(rest);
    this.messages.complete();
  }

  private drain(): void {
    try {
      while (this.attached && !this.held) {
        const message = this.decoder.next();
        if (message === undefined) return;
        this.messages.next(message);
      }
    } catch (error) {
      this.stopListening();
      this.messages.error(error);
    }
  }

  private stopListening(): void {
    this.attached = false;
    this.socket.off('data', this.onSocketData);
    this.socket.off('end', this.onSocketEnd);
    this.socket.off('close', this.onSocketClose);
  }

  /** After the peer's FIN, once every complete frame is out: what is left is a cut frame. */
  private finish(): void {
    if (!this.attached) return;
    this.stopListening();
    const left = this.decoder.bufferedBytes;
    if (left === 0) this.messages.complete();
    else this.messages.error(new ProtocolError('TRUNCATED_FRAME', `the peer closed in the middle of a frame (${left} bytes of it received)`));
  }

  private readonly onSocketData = (chunk: Buffer): void => {
    this.decoder.push(chunk);
    if (!this.held) this.drain();
  };

  private readonly onSocketEnd = (): void => {
    this.peerEnded = true;
    // Held frames still belong to the next phase: finish when they are released.
    if (!this.held) this.finish();
  };

  private readonly onSocketClose = (): void => {
    if (!this.attached) return;
    this.stopListening();
    this.messages.complete();
  };
}
