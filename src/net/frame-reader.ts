import type { Socket } from 'node:net';
import { Subject, type Observable } from 'rxjs';
import { FrameDecoder, ProtocolError, type Message } from '../protocol/index.js';
import { traceFrameIn } from './frame-trace.js';

/**
 * Frames emitted for one peer before the reader lets the event loop turn: libuv reads up to
 * 32 chunks of 64 KiB from one socket per poll, about 70,000 Pings, and every other conn would
 * wait for all of them. A legitimate peer sends a few frames per turn.
 */
export const FRAMES_PER_TURN = 256;

/**
 * Reads frames off a socket and emits them one at a time, synchronously. Ways to stop
 * between frames, all safe against several frames arriving in one chunk:
 * - `hold()`: frames stay buffered (and the socket paused) until `release()`; used between
 *   protocol phases, while the next phase's subscriber is not in place yet.
 * - `throttle()`: the same, until `unthrottle()`; used while the peer does not read what we
 *   send it (backpressure), so that TCP slows the peer down instead of our memory growing.
 * - after FRAMES_PER_TURN frames the reader pauses itself until the next turn of the loop.
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
  private throttled = false;
  private yielding = false;
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
    this.flow();
  }

  throttle(): void {
    if (this.throttled || !this.attached) return;
    this.throttled = true;
    this.socket.pause();
  }

  unthrottle(): void {
    if (!this.throttled || !this.attached) return;
    this.throttled = false;
    this.flow();
  }

  /**
   * Stops reading and errors `messages$` with `error` (unless already detached or closed):
   * the owner's error handler decides what the peer gets, as for a malformed frame.
   */
  fail(error: Error): void {
    if (!this.attached) return;
    this.stopListening();
    this.messages.error(error);
  }

  private get stopped(): boolean {
    return this.held || this.throttled || this.yielding;
  }

  /** Emits what is buffered, then reads on (or finishes after the peer's FIN) unless stopped. */
  private flow(): void {
    this.drain();
    if (!this.attached || this.stopped) return;
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
    let budget = FRAMES_PER_TURN;
    try {
      while (this.attached && !this.stopped) {
        if (budget-- === 0) return this.yieldTurn();
        const message = this.decoder.next();
        if (message === undefined) return;
        traceFrameIn(this.socket, message, this.decoder.lastFrameBytes);
        this.messages.next(message);
      }
    } catch (error) {
      this.stopListening();
      this.messages.error(error);
    }
  }

  private yieldTurn(): void {
    this.yielding = true;
    this.socket.pause();
    setImmediate(this.onNextTurn);
  }

  private readonly onNextTurn = (): void => {
    this.yielding = false;
    this.flow();
  };

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
    if (!this.stopped) this.drain();
  };

  private readonly onSocketEnd = (): void => {
    this.peerEnded = true;
    // Held frames still belong to the next phase (or the next turn): finish once they are out.
    if (!this.stopped) this.finish();
  };

  private readonly onSocketClose = (): void => {
    if (!this.attached) return;
    this.stopListening();
    this.messages.complete();
  };
}
