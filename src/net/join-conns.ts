import type { Socket } from 'node:net';
import { resetSocket } from './reset.js';
import { probeForReset, SideThrottle } from './side-throttle.js';
import type { TokenBucket } from './token-bucket.js';
import type { WorkConnTracker } from './work-conn-state.js';

export interface RelayResult {
  /** Bytes read from the outer socket (and so sent towards the inner one). */
  bytesIn: number;
  /**
   * Bytes that left through the outer socket by the time the relay settled (see ByteMeter:
   * written then discarded is not out). A released relay's last bytes may leave later: its
   * meter counts them then.
   */
  bytesOut: number;
  /** The first error on either side, if the relay ended in one. */
  error?: Error;
  /**
   * Reusable relays only: both streams ended cleanly and the work conn outlived the relay,
   * paused and free of this relay's listeners, ready for the next user.
   */
  released?: boolean;
}

/** A relay whose work conn is kept: ends are signalled beside it, by byte count. */
export interface ReusableRelay {
  readonly done: Promise<RelayResult>;
  /**
   * The far end's stream ended after `bytes` bytes on the work conn (its WorkConnEnd): once
   * that many have reached the outer socket, the outer socket is ended.
   */
  peerEnded(bytes: number): void;
  /** Tears the relay down as a fault: both sockets are reset. Idempotent. */
  reset(reason: string): void;
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
  /**
   * Written to `outer` before any relayed byte (a PROXY protocol header for the local app).
   * Not counted in `bytesOut`, nor in the byte count the far end's WorkConnEnd is checked against.
   */
  outerPreamble?: Uint8Array;
  /** Shapes what is read from `outer` (shared with other relays of the same app). */
  outerLimit?: TokenBucket;
  /** Shapes what is read from `inner`. */
  innerLimit?: TokenBucket;
  /** Also counts this relay's bytes, live (an app's totals). */
  meter?: ByteMeter;
}

/**
 * Relays bytes both ways between `outer` (a plain TCP socket: the user conn, or the local
 * app conn) and `inner` (a single-use conn). With `joinReusable`, the only places in the
 * project that splice sockets.
 *
 * - Backpressure: a write the destination cannot take at once pauses the source until the
 *   destination drains (what `pipe` does, per chunk nothing more).
 * - Half-close: a FIN on one side becomes `end()` on the other; the reverse direction keeps
 *   flowing. Both sockets must be created with `allowHalfOpen: true`.
 * - An error, or a close that leaves data undeliverable, resets both: the programs at either
 *   end see ECONNRESET, never a clean end of a stream that lost bytes.
 * Bytes are counted where they really moved (see ByteMeter), with one shared callback per
 * relay rather than a closure per chunk.
 *
 * Not `pipe`: two pipes cost ~3.4 KB of heap per relayed conn in listener closures and pipe
 * state, in each process (10,000 conns: 34 MB). The listeners below are shared by every relay;
 * each socket points at one small record of its relay.
 */
export function joinConns(outer: Socket, inner: Socket, options: RelayOptions = {}): Promise<RelayResult> {
  return new Promise((resolve) => start(new RelayState(outer, inner, resolve, undefined, options)));
}

/**
 * The relay of a work conn (the project's only kind): the work conn survives a clean end, so
 * that it can carry the next user, and a FIN is never sent on it. The outer side's FIN is
 * reported through `onOuterEnd` with the number of bytes it sent (the caller tells the far
 * end, beside the work conn), and the far end's end arrives the same way, through
 * `peerEnded`. Byte counts, not markers in the stream, so the relay still forwards chunks
 * untouched. `tracker` (idle when joined) follows the conn through its states; once both ends
 * are through, the work conn is handed back (`released`). Anything else (an error, a reset, a
 * bare FIN on the work conn, which only a crash or a dropped conn can send) resets both.
 */
export function joinReusable(
  outer: Socket,
  inner: Socket,
  tracker: WorkConnTracker,
  onOuterEnd: (bytes: number) => void,
  options: RelayOptions = {},
): ReusableRelay {
  let state!: RelayState;
  const done = new Promise<RelayResult>((resolve) => {
    state = new RelayState(outer, inner, resolve, { tracker, onOuterEnd }, options);
    start(state);
  });
  return { done, peerEnded: (bytes) => state.peerEnded(bytes), reset: (reason) => state.fail(new Error(reason)) };
}

const RELAY = Symbol('relay');
interface RelaySocket extends Socket {
  [RELAY]?: RelayState;
}

interface Reuse {
  tracker: WorkConnTracker;
  onOuterEnd: (bytes: number) => void;
}

class RelayState {
  private firstError: Error | undefined;
  private open = 2;
  private settled = false;
  /** Reusable: the far end's byte count, once it said its stream ended. */
  private expected = -1;
  /** Bytes written to `outer` that are not relayed bytes (the preamble). */
  readonly outerExtra: number;
  /** Set only when that side is shaped. */
  readonly outerThrottle: SideThrottle | undefined;
  readonly innerThrottle: SideThrottle | undefined;
  /** Bytes read from `outer` and passed on, and bytes whose write to `outer` completed. */
  private bytesIn = 0;
  private bytesOut = 0;
  /** Lengths of the writes to `outer` not completed yet, in order (Node completes them in order). */
  private readonly outerWrites: number[] = [];
  private outerWritesHead = 0;

  constructor(
    readonly outer: Socket,
    readonly inner: Socket,
    private readonly resolve: (result: RelayResult) => void,
    /** Set for a work conn's relay: its state machine and where its outer end is reported. */
    readonly reuse: Reuse | undefined,
    readonly options: RelayOptions = {},
  ) {
    reuse?.tracker.fire({ type: 'start' });
    this.outerExtra = options.outerPreamble?.length ?? 0;
    this.outerThrottle = options.outerLimit && new SideThrottle(this, outer, options.outerLimit);
    this.innerThrottle = options.innerLimit && new SideThrottle(this, inner, options.innerLimit);
  }

  /** A chunk read from `outer` is on its way to `inner`. */
  countIn(bytes: number): void {
    this.bytesIn += bytes;
    if (this.options.meter !== undefined) this.options.meter.bytesIn += bytes;
  }

  /** Writes a relayed chunk to `outer`; it is counted once the kernel took it. */
  writeOuter(chunk: Buffer): boolean {
    this.outerWrites.push(chunk.length);
    return this.outer.write(chunk, this.onOuterWritten);
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

  /**
   * Relayed bytes written to `outer` so far, queued ones included (as Node counts them): what
   * the far end's WorkConnEnd count is checked against, never a count of traffic.
   */
  get outerWritten(): number | undefined {
    const written = this.outer.bytesWritten;
    return written === undefined ? undefined : written - this.outerExtra;
  }

  throttleOf(socket: Socket): SideThrottle | undefined {
    return socket === this.outer ? this.outerThrottle : this.innerThrottle;
  }

  /** Whether `source` may be read again: not held by its destination, its bucket, or its end. */
  mayRead(source: Socket): boolean {
    if (this.settled || this.throttleOf(source)?.holding === true || this.peerOf(source).writableNeedDrain) return false;
    // A work conn whose far end is through stays paused: it has no reader of ours any more.
    return !(source === this.inner && this.reuse?.tracker.state.received === 'ended');
  }

  peerOf(socket: Socket): Socket {
    return socket === this.outer ? this.inner : this.outer;
  }

  resumePeerOf(socket: Socket): void {
    const source = this.peerOf(socket);
    if (this.mayRead(source)) source.resume();
  }

  /** Writes bytes read from `source` (and paid for, if shaped) to its peer; backpressure pauses `source`. */
  /** Forwards a chunk read from `source` (paid for, when that side is shaped), counted where it moves. */
  pass(source: Socket, chunk: Buffer): void {
    let accepted: boolean;
    if (source === this.outer) {
      this.countIn(chunk.length);
      accepted = this.inner.write(chunk);
    } else accepted = this.writeOuter(chunk);
    if (!accepted) source.pause();
  }

  /** Bytes `source`'s bucket held back went on: the far end's stream may be through now, or the source readable again. */
  passedHeld(source: Socket, throttle: SideThrottle): void {
    if (source === this.inner && this.expected >= 0 && this.checkDelivered()) return;
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
    this.reuse?.tracker.fire({ type: 'fault', reason: error.message });
    resetSocket(this.outer);
    resetSocket(this.inner);
  }

  onEnd(socket: Socket): void {
    if (this.reuse !== undefined && socket === this.inner) {
      // Ends travel as WorkConnEnd: a FIN on the work conn itself is a crash or a dropped conn.
      this.fail(new Error('the work conn ended without its WorkConnEnd (the far end crashed or dropped it)'));
      return;
    }
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

  private passOnEnd(socket: Socket): void {
    if (this.settled) return;
    if (this.reuse === undefined) {
      this.peerOf(socket).end();
      return;
    }
    if (this.reuse.tracker.fire({ type: 'outer-ended' }).phase === 'reset') return this.fail(new Error(this.reuse.tracker.state.reason));
    this.reuse.onOuterEnd(this.outer.bytesRead);
    this.releaseIfDone();
  }

  peerEnded(bytes: number): void {
    if (this.reuse === undefined || this.expected >= 0 || this.settled) return;
    this.expected = bytes;
    if (!this.checkDelivered()) this.inner.on('data', watchForPeerEnd);
  }

  /** Whether the far end's stream is through; ends the outer socket when it is. */
  checkDelivered(): boolean {
    const written = this.outerWritten;
    if (this.reuse === undefined || written === undefined || written < this.expected) return false;
    this.inner.off('data', watchForPeerEnd);
    if (written > this.expected) {
      this.fail(new Error(`the work conn carried ${written - this.expected} bytes past the far end's stream end`));
      return true;
    }
    this.inner.off('data', forward);
    this.innerThrottle?.forget();
    this.inner.pause();
    if (this.reuse.tracker.fire({ type: 'peer-ended' }).phase === 'reset') {
      this.fail(new Error(this.reuse.tracker.state.reason));
      return true;
    }
    this.outer.end();
    this.releaseIfDone();
    return true;
  }

  private releaseIfDone(): void {
    const phase = this.reuse?.tracker.state.phase;
    if ((phase !== 'released' && phase !== 'idle') || this.settled) return;
    const { outer, inner } = this;
    for (const socket of [outer, inner]) {
      socket.off('data', forward);
      socket.off('drain', resumePeer);
      socket.off('end', endPeer);
      socket.off('error', relayError);
      socket.off('close', relayClosed);
      delete (socket as RelaySocket)[RELAY];
    }
    // The user or app socket still flushes its last bytes and closes by itself; the work
    // conn waits, paused, for its next owner. Neither may crash the process with a late error.
    if (outer.listenerCount('error') === 0) outer.on('error', ignore);
    if (inner.listenerCount('error') === 0) inner.on('error', ignore);
    inner.pause();
    this.finish(true);
  }

  onClose(closed: Socket): void {
    const other = this.peerOf(closed);
    // Once both read sides saw EOF, `other` only has to flush what it already holds;
    // otherwise there is data that can no longer be delivered: a fault.
    if (!closed.readableEnded || !other.readableEnded || this.reuse !== undefined) {
      this.firstError ??= new Error(`the ${closed === this.outer ? 'outer' : 'work'} conn closed before its streams ended`);
      this.reuse?.tracker.fire({ type: 'fault', reason: this.firstError.message });
      resetSocket(other);
    }
    if (--this.open === 0) {
      for (const socket of [this.outer, this.inner]) {
        socket.off('error', relayError);
        // Keep a listener: a late error on a closed socket must not crash the process.
        socket.on('error', ignore);
      }
      this.finish(false);
    }
  }

  private finish(released: boolean): void {
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
        ...(released ? { released } : {}),
      }),
    );
  }
}

function start(state: RelayState): void {
  const { outer, inner } = state;
  const refused =
    outer.destroyed || inner.destroyed
      ? 'a side closed before the relay began'
      : state.reuse?.tracker.state.phase === 'reset'
        ? state.reuse.tracker.state.reason
        : undefined;
  if (refused !== undefined) {
    state.fail(new Error(refused));
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

// One set of listeners for every relay (`this` is the socket that fired): no closures per conn.
// A socket's record may be gone (a released work conn): then the event is not the relay's.

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

/** Installed on a reusable work conn only while its far end's last bytes are on their way. */
function watchForPeerEnd(this: RelaySocket): void {
  this[RELAY]?.checkDelivered();
}
