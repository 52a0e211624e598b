import { Socket } from 'node:net';
import { resetSocket, type ResettableConn } from './reset.js';
import type { ThrottledReader, TokenBucket } from './token-bucket.js';

/**
 * What the relay needs of each of its two ends: a TCP or TLS socket, a stream of the mux conn,
 * or the vhost's VirtualConn (an HTTP user's requests for one app). Byte counts as a socket
 * keeps them; `resetAndDestroy` ends it as a fault (a TCP reset, a mux RST, a 502).
 */
export interface RelayConn extends ResettableConn {
  readonly bytesRead: number;
  readonly bytesWritten: number;
  setNoDelay(noDelay?: boolean): this;
}

export interface RelayResult {
  /** Bytes read from the outer conn (and so sent towards the inner one). */
  bytesIn: number;
  /** Bytes written to the outer conn. */
  bytesOut: number;
  /** The first error on either side, if the relay ended in one. */
  error?: Error;
}

/** What a relay does besides moving bytes: a header first, a rate per direction. */
export interface RelayOptions {
  /** Written to `outer` before any relayed byte (a PROXY protocol header for the local app); not counted in `bytesOut`. */
  outerPreamble?: Uint8Array;
  /** Shapes what is read from `outer` (shared with other relays of the same app). */
  outerLimit?: TokenBucket;
  /** Shapes what is read from `inner`. */
  innerLimit?: TokenBucket;
}

/**
 * Relays bytes both ways between `outer` (the user conn, or the local app conn) and `inner`
 * (the user's mux stream, or its single-use work conn). The only place in the project that
 * splices conns.
 *
 * - Backpressure: a write the destination cannot take at once pauses the source until the
 *   destination drains (what `pipe` does, per chunk nothing more).
 * - Half-close: a FIN on one side becomes `end()` on the other; the reverse direction keeps
 *   flowing. Sockets must be created with `allowHalfOpen: true`.
 * - An error, or a close that leaves data undeliverable, resets both: the programs at either
 *   end see ECONNRESET, never a clean end of a stream that lost bytes.
 * Byte counts come from the outer conn's own counters: nothing runs per chunk.
 *
 * Not `pipe`: two pipes cost ~3.4 KB of heap per relayed conn in listener closures and pipe
 * state, in each process (10,000 conns: 34 MB). The listeners below are shared by every relay;
 * each conn points at one small record of its relay.
 */
export function joinConns(outer: RelayConn, inner: RelayConn, options: RelayOptions = {}): Promise<RelayResult> {
  return new Promise((resolve) => start(new RelayState(outer, inner, resolve, options)));
}

const RELAY = Symbol('relay');
type RelaySocket = RelayConn & { [RELAY]?: RelayState };

class RelayState {
  private firstError: Error | undefined;
  private open = 2;
  private settled = false;
  /** Bytes written to `outer` that are not relayed bytes (the preamble). */
  readonly outerExtra: number;
  /** Set only when that side is shaped. */
  readonly outerThrottle: SideThrottle | undefined;
  readonly innerThrottle: SideThrottle | undefined;

  constructor(
    readonly outer: RelayConn,
    readonly inner: RelayConn,
    private readonly resolve: (result: RelayResult) => void,
    readonly options: RelayOptions = {},
  ) {
    this.outerExtra = options.outerPreamble?.length ?? 0;
    this.outerThrottle = options.outerLimit && new SideThrottle(this, outer, options.outerLimit);
    this.innerThrottle = options.innerLimit && new SideThrottle(this, inner, options.innerLimit);
  }

  /** Relayed bytes written to `outer` so far (queued ones included, as Node counts them). */
  get outerWritten(): number {
    return (this.outer.bytesWritten ?? 0) - this.outerExtra;
  }

  throttleOf(conn: RelayConn): SideThrottle | undefined {
    return conn === this.outer ? this.outerThrottle : this.innerThrottle;
  }

  /** Whether `source` may be read again: not held by its destination or its bucket. */
  mayRead(source: RelayConn): boolean {
    return !this.settled && this.throttleOf(source)?.paused !== true && !this.peerOf(source).writableNeedDrain;
  }

  peerOf(conn: RelayConn): RelayConn {
    return conn === this.outer ? this.inner : this.outer;
  }

  resumePeerOf(conn: RelayConn): void {
    const source = this.peerOf(conn);
    if (this.mayRead(source)) source.resume();
  }

  fail(error: Error): void {
    if (this.settled) return;
    this.firstError ??= error;
    resetSocket(this.outer);
    resetSocket(this.inner);
  }

  onEnd(conn: RelayConn): void {
    // Linux reads a reset that meets unread bytes as an end of stream. The reset leaves its
    // error pending on the socket: an empty write meets it (and 'error' fails the relay), where
    // after a real FIN it succeeds. Only then is the end passed on as one. A socket we already
    // ended cannot be written, and behind queued bytes the answer could wait on a reader that
    // waits for this end: those ends are taken as they read (a reset then fails the queued write).
    if (isPlainSocket(conn) && !conn.writableEnded && conn.writableLength === 0) {
      conn.write(EMPTY, (error) => {
        if (error === null || error === undefined) this.passOnEnd(conn);
      });
      return;
    }
    this.passOnEnd(conn);
  }

  private passOnEnd(conn: RelayConn): void {
    if (!this.settled) this.peerOf(conn).end();
  }

  onClose(closed: RelayConn): void {
    const other = this.peerOf(closed);
    // Once both read sides saw EOF, `other` only has to flush what it already holds;
    // otherwise there is data that can no longer be delivered: a fault.
    if (!closed.readableEnded || !other.readableEnded) {
      this.firstError ??= new Error(`the ${closed === this.outer ? 'outer' : 'inner'} conn closed before its streams ended`);
      resetSocket(other);
    }
    if (--this.open === 0) {
      for (const conn of [this.outer, this.inner]) {
        conn.off('error', relayError);
        // Keep a listener: a late error on a closed conn must not crash the process.
        conn.on('error', ignore);
      }
      this.finish();
    }
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.outerThrottle?.forget();
    this.innerThrottle?.forget();
    this.resolve({
      bytesIn: this.outer.bytesRead,
      bytesOut: Math.max(0, this.outerWritten),
      ...(this.firstError ? { error: this.firstError } : {}),
    });
  }
}

function start(state: RelayState): void {
  const { outer, inner } = state;
  if (outer.destroyed || inner.destroyed) {
    state.fail(new Error('a side closed before the relay began'));
    state.onClose(outer);
    state.onClose(inner);
    return;
  }
  outer.setNoDelay(true);
  inner.setNoDelay(true);
  for (const socket of [outer, inner] as RelaySocket[]) {
    socket[RELAY] = state;
    socket.on('error', relayError);
    socket.on('close', relayClosed);
    socket.on('data', forward);
    socket.on('drain', resumePeer);
    socket.on('end', endPeer);
  }
  // Queued in the socket before the first relayed byte (a socket still connecting keeps the order).
  if (state.options.outerPreamble !== undefined) outer.write(state.options.outerPreamble);
  outer.resume();
  inner.resume();
  // A side whose FIN was already read before the join (a local app that answered and closed
  // while its work conn was still being opened) emits no 'end' again: take it as read now.
  if (outer.readableEnded) process.nextTick(endIfJoined, outer);
  if (inner.readableEnded) process.nextTick(endIfJoined, inner);
}

function endIfJoined(socket: RelaySocket): void {
  socket[RELAY]?.onEnd(socket);
}

function ignore(): void {}

const EMPTY = Buffer.alloc(0);

/** A TCP socket of its own (not a TLS socket, not a vhost's VirtualConn): one the kernel can reset. */
function isPlainSocket(socket: RelayConn): socket is Socket {
  return socket instanceof Socket && (socket as Socket & { encrypted?: boolean }).encrypted !== true;
}

// One set of listeners for every relay (`this` is the socket that fired): no closures per conn.

function forward(this: RelaySocket, chunk: Buffer): void {
  const state = this[RELAY];
  if (state === undefined) return;
  if (!state.peerOf(this).write(chunk)) this.pause();
  // Charged after forwarding: the chunk is already read, holding it back would only buffer it.
  state.throttleOf(this)?.charge(chunk.length);
}

/**
 * One shaped side of a relay: pauses its socket when the app's bucket runs dry and resumes it
 * when the bucket says, unless the destination still holds it up (then 'drain' resumes it).
 */
class SideThrottle implements ThrottledReader {
  paused = false;

  constructor(
    private readonly state: RelayState,
    private readonly socket: RelayConn,
    private readonly bucket: TokenBucket,
  ) {}

  charge(bytes: number): void {
    if (this.bucket.take(bytes, this)) return;
    this.paused = true;
    this.socket.pause();
  }

  resumeAfterThrottle(): void {
    this.paused = false;
    if (this.state.mayRead(this.socket)) this.socket.resume();
  }

  forget(): void {
    this.paused = false;
    this.bucket.forget(this);
  }
}

/** The peer's writes were held up by this socket; they may go on. */
function resumePeer(this: RelaySocket): void {
  this[RELAY]?.resumePeerOf(this);
}

function endPeer(this: RelaySocket): void {
  this[RELAY]?.onEnd(this);
}

function relayError(this: RelaySocket, error: Error): void {
  this[RELAY]?.fail(error);
}

function relayClosed(this: RelaySocket): void {
  this[RELAY]?.onClose(this);
}
