import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ThrottledReader, TokenBucket } from './token-bucket.js';

/** What a shaped side needs of its relay. */
export interface ShapedRelay {
  /** Writes bytes read from `source`, paid for, to its peer. */
  pass(source: Duplex, chunk: Buffer): void;
  /** Held bytes went on: the relay may pass on an end, or read `source` again. */
  passedHeld(source: Duplex, throttle: SideThrottle): void;
}

/**
 * One shaped side of a relay. A chunk is forwarded only once the app's bucket has paid for it:
 * until then the chunk is held here (one socket read at most: the socket is paused at once, so
 * TCP holds the rest at the sender) and goes on in the pieces the bucket grants. A conn that
 * goes away while held back drops its chunk and its place in the queue, leaving nothing owed.
 */
export class SideThrottle implements ThrottledReader {
  /** Read, not yet forwarded. */
  private held: Buffer | undefined;
  /** Granted by the bucket, waiting for the probe before it is forwarded. */
  private paid = 0;
  private probing = false;
  /** The socket's 'end' came while bytes were held: passed on after them. */
  private heldEnd = false;

  constructor(
    private readonly state: ShapedRelay,
    private readonly socket: Duplex,
    private readonly bucket: TokenBucket,
  ) {}

  get holding(): boolean {
    return this.held !== undefined;
  }

  /** True: `chunk` is paid for, forward it. False: it is held, and the socket paused. */
  admit(chunk: Buffer): boolean {
    if (this.bucket.request(this, chunk.length)) return true;
    // A chunk read before the pause took effect joins the held one, in order.
    this.held = this.held === undefined ? chunk : Buffer.concat([this.held, chunk]);
    this.socket.pause();
    return false;
  }

  granted(bytes: number): void {
    this.paid += bytes;
    if (this.probing) return;
    // A paused socket does not see its peer's reset (nor one after its FIN), so a user who is
    // gone gives its turn back (its relay fails, the bucket is refunded) instead of spending the
    // others' rate on bytes for an app that answers nobody.
    this.probing = probeForReset(this.socket, (reset) => {
      this.probing = false;
      if (reset) this.refundPaid();
      else this.forwardPaid();
    });
    if (!this.probing) this.forwardPaid();
  }

  /** Whether the socket's end must wait for held bytes (then it is remembered). */
  holdEnd(): boolean {
    if (this.held === undefined) return false;
    this.heldEnd = true;
    return true;
  }

  takeHeldEnd(): boolean {
    const ended = this.heldEnd;
    this.heldEnd = false;
    return ended;
  }

  /** The relay is over: the held bytes are dropped, and the bucket owes this side nothing. */
  forget(): void {
    this.held = undefined;
    this.heldEnd = false;
    this.bucket.forget(this);
  }

  private forwardPaid(): void {
    const { held, paid } = this;
    // Forgotten while the probe was out: nothing to forward, the tokens go back.
    if (held === undefined) return this.refundPaid();
    this.paid = 0;
    const whole = paid >= held.length;
    this.held = whole ? undefined : held.subarray(paid);
    this.state.pass(this.socket, whole ? held : held.subarray(0, paid));
    this.state.passedHeld(this.socket, this);
  }

  private refundPaid(): void {
    this.bucket.refund(this.paid);
    this.paid = 0;
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Whether `socket`'s peer reset it, asked of the kernel. A reset that a socket did not read (it
 * was paused, or past its end of stream, which Linux also reports for a reset that met unread
 * bytes) stays pending for the next write: an empty write meets it (and 'error' follows), where
 * after a live peer it succeeds. False when it cannot ask: not a plain TCP socket, already ended,
 * or behind queued bytes (the answer would wait on the peer's reading); `then` is not called.
 */
export function probeForReset(socket: Duplex, then: (reset: boolean) => void): boolean {
  if (!isPlainSocket(socket) || socket.writableEnded || socket.writableLength > 0) return false;
  socket.write(EMPTY, (error) => then(error !== null && error !== undefined));
  return true;
}

/** A TCP socket of its own (not a TLS socket, not a vhost's VirtualConn): one the kernel can reset. */
function isPlainSocket(socket: Duplex): socket is Socket {
  return socket instanceof Socket && (socket as Socket & { encrypted?: boolean }).encrypted !== true;
}
