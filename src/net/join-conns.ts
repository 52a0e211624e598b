import { resetSocket, type ResettableConn } from './reset.js';
import { probeForReset, SideThrottle } from './side-throttle.js';
import type { TokenBucket } from './token-bucket.js';

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
  /** Bytes that left through the outer conn by the time the relay settled (see ByteMeter: written then discarded is not out). */
  bytesOut: number;
  /** The first error on either side, if the relay ended in one. */
  error?: Error;
}

/**
 * Where relays add the bytes they move, as they move (shared by every relay of an app). Both
 * are counted at the outer socket: `bytesIn` when a chunk read from it is passed on, `bytesOut`
 * when a write to it completed, that is when the kernel took it. Node's `bytesWritten` counts
 * a write as soon as it is queued, and forgets what a destroyed socket still queued: a sum of
 * it went backwards whenever a conn ended with bytes queued. Only ever incremented.
 *
 * One bound on honesty: Node reports the write that is with libuv when the socket is destroyed
 * as done, so up to one relayed chunk per abrupt end is counted that never left (a socket
 * reads 64 KiB at most, a mux stream gets up to a DATA frame's 256 KiB).
 */
export interface ByteMeter {
  bytesIn: number;
  bytesOut: number;
}

/** What a relay does besides moving bytes: a header first, a rate per direction, where to count. */
export interface RelayOptions {
  /** Written to `outer` before any relayed byte (a PROXY protocol header for the local app); not counted in `bytesOut`. */
  outerPreamble?: Uint8Array;
  /** Shapes what is read from `outer` (shared with other relays of the same app). */
  outerLimit?: TokenBucket;
  /** Shapes what is read from `inner`. */
  innerLimit?: TokenBucket;
  /** Also counts this relay's bytes, live (an app's totals). */
  meter?: ByteMeter;
}

/**
 * What `outer` may hold queued, within a turn, before its source pauses: a 64 KiB frame that
 * came in 16 KiB reads goes out whole (a socket's own high-water mark, 16 KiB, would cut it in
 * two). At most this plus one chunk (64 KiB) is queued per relay.
 */
const OUTER_BURST_BYTES = 64 * 1024;

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
 * Bytes are counted where they really moved (see ByteMeter), with one shared callback per
 * relay rather than a closure per chunk.
 *
 * Not `pipe`: two pipes cost ~3.4 KB of heap per relayed conn in listener closures and pipe
 * state, in each process (10,000 conns: 34 MB). The listeners below are shared by every relay;
 * each socket points at one small record of its relay.
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
  /** Set only when that side is shaped. */
  readonly outerThrottle: SideThrottle | undefined;
  readonly innerThrottle: SideThrottle | undefined;
  /** Bytes read from `outer` and passed on, and bytes whose write to `outer` completed. */
  private bytesIn = 0;
  private bytesOut = 0;
  /** Lengths of the writes to `outer` not completed yet, in order (Node completes them in order). */
  private readonly outerWrites: number[] = [];
  private outerWritesHead = 0;
  /** `outer` is corked until the end of this turn (see `writeOuter`). */
  private outerCorked = false;

  constructor(
    readonly outer: RelayConn,
    readonly inner: RelayConn,
    private readonly resolve: (result: RelayResult) => void,
    readonly options: RelayOptions = {},
  ) {
    this.outerThrottle = options.outerLimit && new SideThrottle(this, outer, options.outerLimit);
    this.innerThrottle = options.innerLimit && new SideThrottle(this, inner, options.innerLimit);
  }

  /** A chunk read from `outer` is on its way to `inner`. */
  countIn(bytes: number): void {
    this.bytesIn += bytes;
    if (this.options.meter !== undefined) this.options.meter.bytesIn += bytes;
  }

  /**
   * Writes a relayed chunk to `outer`; it is counted once the kernel took it. The chunks passed
   * in one turn go out as one write: a mux stream hands on a DATA frame that came in several
   * reads (a TLS record holds 16 KiB) as a burst, and one `writev` of it costs the outer socket
   * a fifth of the syscalls and of its reader's wake-ups. `outer` is corked till the turn ends,
   * so its queue holds the burst: it may take up to OUTER_BURST_BYTES before its source pauses.
   */
  writeOuter(chunk: Buffer): boolean {
    this.outerWrites.push(chunk.length);
    if (!this.outerCorked) {
      this.outerCorked = true;
      this.outer.cork();
      process.nextTick(uncorkOuter, this);
    }
    return this.outer.write(chunk, this.onOuterWritten);
  }

  uncorkOuter(): void {
    this.outerCorked = false;
    this.outer.uncork();
  }

  private readonly onOuterWritten = (error?: Error | null): void => {
    const bytes = this.outerWrites[this.outerWritesHead++] ?? 0;
    if (this.outerWritesHead === this.outerWrites.length) {
      this.outerWrites.length = 0;
      this.outerWritesHead = 0;
    }
    if (error !== null && error !== undefined) return;
    this.bytesOut += bytes;
    if (this.options.meter !== undefined) this.options.meter.bytesOut += bytes;
  };

  throttleOf(conn: RelayConn): SideThrottle | undefined {
    return conn === this.outer ? this.outerThrottle : this.innerThrottle;
  }

  /** Whether `source` may be read again: not held by its destination or its bucket. */
  mayRead(source: RelayConn): boolean {
    return !this.settled && this.throttleOf(source)?.holding !== true && !this.peerOf(source).writableNeedDrain;
  }

  peerOf(conn: RelayConn): RelayConn {
    return conn === this.outer ? this.inner : this.outer;
  }

  resumePeerOf(conn: RelayConn): void {
    const source = this.peerOf(conn);
    if (this.mayRead(source)) source.resume();
  }

  /** Writes bytes read from `source` (and paid for, if shaped) to its peer; backpressure pauses `source`. */
  /** Forwards a chunk read from `source` (paid for, when that side is shaped), counted where it moves. */
  pass(source: RelayConn, chunk: Buffer): void {
    let accepted: boolean;
    if (source === this.outer) {
      this.countIn(chunk.length);
      accepted = this.inner.write(chunk);
    } else accepted = this.writeOuter(chunk) || this.outer.writableLength <= OUTER_BURST_BYTES;
    if (!accepted) source.pause();
  }

  /** Bytes `source`'s bucket held back went on: its end may be passed on now, or the source read again. */
  passedHeld(source: RelayConn, throttle: SideThrottle): void {
    if (throttle.holding) return;
    if (throttle.takeHeldEnd()) this.onEnd(source);
    else if (this.mayRead(source)) source.resume();
  }

  fail(error: Error): void {
    if (this.settled) return;
    this.firstError ??= error;
    // Its claims on the buckets go now, not when the sockets have closed.
    this.outerThrottle?.forget();
    this.innerThrottle?.forget();
    resetSocket(this.outer);
    resetSocket(this.inner);
  }

  onEnd(socket: RelayConn): void {
    // A stream emits 'end' once its last byte was read, paused or not: the bytes its bucket
    // still holds back go first (`passedHeld` passes the end on after them).
    if (this.throttleOf(socket)?.holdEnd() === true) return;
    // Linux reads a reset that meets unread bytes as an end of stream: only an end the probe
    // finds no reset behind is passed on as one (a reset fails the relay through 'error'). Where
    // it cannot probe, the end is taken as read (a reset then fails the queued write).
    const probing = probeForReset(socket, (reset) => {
      if (!reset) this.passOnEnd(socket);
    });
    if (!probing) this.passOnEnd(socket);
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
      for (const socket of [this.outer, this.inner]) {
        socket.off('error', relayError);
        // Keep a listener: a late error on a closed socket must not crash the process.
        socket.on('error', ignore);
      }
      this.finish();
    }
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.outerThrottle?.forget();
    this.innerThrottle?.forget();
    // A write Node completed at once reports it on the next tick: the result waits for those.
    process.nextTick(() =>
      this.resolve({
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        ...(this.firstError ? { error: this.firstError } : {}),
      }),
    );
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

function uncorkOuter(state: RelayState): void {
  state.uncorkOuter();
}

// One set of listeners for every relay (`this` is the socket that fired): no closures per conn.

function forward(this: RelaySocket, chunk: Buffer): void {
  const state = this[RELAY];
  if (state === undefined) return;
  const throttle = state.throttleOf(this);
  if (throttle === undefined || throttle.admit(chunk)) state.pass(this, chunk);
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
