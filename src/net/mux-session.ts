import createDebug from 'debug';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { MuxInbox } from './mux-inbox.js';
import {
  encodeMuxFrame,
  encodeMuxHeader,
  encodeMuxOpen,
  encodeMuxReset,
  encodeMuxWindow,
  MAX_MUX_DATA_BYTES,
  MAX_MUX_STREAM_ID,
  MUX_INITIAL_WINDOW,
  MUX_STREAM_WINDOW,
  MuxDecoder,
  MuxFrameType,
  ProtocolError,
  type MuxFrameHandler,
  type StartWorkConn,
} from '../protocol/index.js';

const debug = createDebug('ntp:net:mux');

/** What one mux conn may cost this process: the receiving side's bounds, chosen by each end for itself. */
export interface MuxLimits {
  /** Streams open at once; an OPEN beyond is refused with an RST (acceptor), a user beyond is reset (opener). */
  readonly maxStreams: number;
  /**
   * Bytes all the session's streams may have granted to the far end at once, hence hold unread:
   * each stream's initial window is set aside for `maxStreams` streams, windows grow from the rest.
   */
  readonly budgetBytes: number;
}

export const MUX_LIMITS_DEFAULTS: MuxLimits = Object.freeze({ maxStreams: 256, budgetBytes: 64 * 1024 * 1024 });

/** The smallest budget that leaves every stream up to `maxStreams` its initial window. */
export function minMuxBudgetBytes(maxStreams: number): number {
  return maxStreams * MUX_INITIAL_WINDOW;
}

/** Limits for `maxStreams`, with the default budget or, for more streams than it fits, the smallest that fits them. */
export function muxLimitsFor(maxStreams: number): MuxLimits {
  return Object.freeze({ maxStreams, budgetBytes: Math.max(MUX_LIMITS_DEFAULTS.budgetBytes, minMuxBudgetBytes(maxStreams)) });
}

/**
 * A sender waits for credit rather than send a piece smaller than this (unless it is all there
 * is to send): a peer granting one byte at a time would otherwise turn each 13-byte WINDOW frame
 * into a DATA frame queued on a conn it need not read. A receiver grants at least half a window.
 */
const MIN_DATA_PIECE_BYTES = 4 * 1024;
/**
 * Bytes the mux conn may hold queued in this process before a stream's write waits for it to
 * drain: enough to keep a fast stream's pipeline full (a write completes at once), small enough
 * that a slow path holds the senders back instead of this process's memory growing.
 */
const MUX_CONN_BACKLOG_BYTES = 1024 * 1024;
/** DATA payloads up to this size are copied behind their header (one buffer); bigger ones are written as two. */
const COPY_DATA_BELOW = 16 * 1024;

export interface MuxSessionHandlers {
  /** Acceptor only: the far end opened a stream for a user (`start` says which app and who). */
  onStream?(stream: MuxStream, start: StartWorkConn): void;
  /** The mux conn is gone (every stream was reset with it); once. */
  onClosed(reason: string, error?: ProtocolError): void;
  /** Acceptor only: an OPEN past `maxStreams` was refused with an RST (`refused` so far on this conn). */
  onRefused?(refused: number, maxStreams: number): void;
}

/** A stream ended by its far end's RST, or by the loss of the whole mux conn. */
export class MuxResetError extends Error {
  readonly code = 'ECONNRESET';
  constructor(
    message: string,
    /** Said by the far end (its RST), not concluded here. */
    readonly byPeer: boolean,
    /** The far end's own words, for an RST (the message adds who said them). */
    readonly peerReason?: string,
  ) {
    super(message);
  }
}

/**
 * Many users' streams over one work conn (frp's tcpMux): a user costs one OPEN frame on a conn
 * that is already up, instead of a work conn of its own (with TLS, a handshake on both ends
 * whenever the pool runs dry), and an idle user holds no TLS state. The server (`opener`) opens
 * every stream; the client (`acceptor`) answers each with its local app.
 *
 * Each stream keeps what a socket gives the relay: backpressure (a window per direction,
 * credited back as the receiver's reader takes bytes), half-close (FIN), and an abnormal end
 * (RST, which the far end turns into a reset of its own socket). The conn itself is never
 * paused: no stream can hold up another, since none may send past its window. A conn that
 * closes, or breaks the frame format, resets every stream on it.
 */
export class MuxSession {
  private readonly streams = new Map<number, MuxStream>();
  private readonly decoder: MuxDecoder;
  private lastId = 0;
  private closed = false;
  private corked = false;
  /** Streams whose last write waits for the conn to drain. */
  private readonly drainWaiters: Array<() => void> = [];
  /** Streams that received bytes in the chunk being decoded: handed to their readers once it is through. */
  private readonly filled = new Set<MuxStream>();
  /** What the open streams' receive windows add up to (the budget's use). */
  private windowsBytes = 0;
  /** OPENs refused at the stream cap, this mux conn. */
  private refused = 0;

  constructor(
    readonly conn: Socket,
    readonly role: 'opener' | 'acceptor',
    private readonly handlers: MuxSessionHandlers,
    readonly limits: MuxLimits = MUX_LIMITS_DEFAULTS,
  ) {
    if (limits.budgetBytes < minMuxBudgetBytes(limits.maxStreams)) {
      throw new RangeError(`a mux budget of ${limits.budgetBytes} bytes cannot give ${limits.maxStreams} streams their initial window`);
    }
    this.decoder = new MuxDecoder(this.frameHandler);
    conn.setNoDelay(true);
    conn.on('data', this.onConnData);
    conn.on('drain', this.onConnDrain);
    conn.once('end', () => this.close('the mux conn ended'));
    conn.on('error', (error: Error) => this.close(`the mux conn failed: ${error.message}`));
    conn.once('close', () => this.close('the mux conn closed'));
    conn.resume();
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Opener only: a stream for a user, announced to the far end with `start`. */
  open(start: StartWorkConn): MuxStream {
    if (this.role !== 'opener') throw new Error('only the opener opens mux streams');
    const full = this.streams.size >= this.limits.maxStreams;
    const id = this.lastId === MAX_MUX_STREAM_ID || full ? this.lastId : ++this.lastId;
    const stream = new MuxStream(this, id);
    if (this.closed || id === MAX_MUX_STREAM_ID || full) {
      const why = this.closed
        ? 'the mux conn is closed'
        : full
          ? `the mux conn carries ${this.limits.maxStreams} streams, its cap (limits.maxMuxStreams)`
          : 'the mux conn ran out of stream ids';
      // Handed back destroyed, its error due on the next tick: a caller that awaits anything
      // before it listens must not have the process end on an unheard 'error' (one user past
      // the cap did that to the server). The caller reads why from `errored`.
      stream.on('error', ignoreError);
      stream.abandon(new MuxResetError(why, false));
      return stream;
    }
    this.admit(stream);
    this.write(encodeMuxOpen(id, start));
    return stream;
  }

  /** Resets every stream and closes the conn (a TLS conn is destroyed: see `resetSocket`). Idempotent. */
  destroy(reason: string): void {
    this.close(reason);
  }

  /** @internal A frame for the conn, batched with the others written in this turn. */
  write(frame: Buffer, payload?: Buffer): boolean {
    if (this.closed) return false;
    if (!this.corked) {
      this.corked = true;
      this.conn.cork();
      process.nextTick(this.uncork);
    }
    this.conn.write(frame);
    return payload === undefined ? !this.conn.writableNeedDrain : this.conn.write(payload);
  }

  /** @internal Runs `resume` at once while the conn's backlog is small, else once it drained. */
  afterDrain(resume: () => void): void {
    if (this.conn.writableLength < MUX_CONN_BACKLOG_BYTES || !this.conn.writableNeedDrain || this.closed) return resume();
    this.drainWaiters.push(resume);
  }

  /** @internal The stream is through on both sides, or reset: its id is retired, its window back in the budget. */
  forget(stream: MuxStream): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.windowsBytes -= stream.window;
  }

  /** @internal The stream received bytes: they reach its reader once the chunk they came in is decoded. */
  filledBy(stream: MuxStream): void {
    this.filled.add(stream);
  }

  /**
   * @internal The window `window` may grow to (doubled, up to MUX_STREAM_WINDOW), or `window`
   * itself when the budget has no room once every stream not yet open is left its initial window.
   */
  grow(window: number): number {
    const next = Math.min(MUX_STREAM_WINDOW, window * 2);
    const setAside = (this.limits.maxStreams - this.streams.size) * MUX_INITIAL_WINDOW;
    if (next <= window || this.windowsBytes + next - window + setAside > this.limits.budgetBytes) return window;
    this.windowsBytes += next - window;
    return next;
  }

  private admit(stream: MuxStream): void {
    this.streams.set(stream.id, stream);
    this.windowsBytes += stream.window;
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.conn.uncork();
  };

  private readonly onConnData = (chunk: Buffer): void => {
    if (this.closed) return;
    try {
      this.decoder.push(chunk);
    } catch (error) {
      const protocolError = error instanceof ProtocolError ? error : new ProtocolError('BAD_MESSAGE', (error as Error).message);
      this.close(`protocol error on the mux conn: ${protocolError.message}`, protocolError);
    }
    // Once per chunk, not per frame: a chunk of 1-byte frames reaches each reader as one buffer.
    for (const stream of this.filled) stream.deliver();
    this.filled.clear();
  };

  private readonly onConnDrain = (): void => {
    const waiters = this.drainWaiters.splice(0);
    for (const resume of waiters) resume();
  };

  /**
   * Our end is closed whichever way the conn ended (our destroy, a broken frame, an error, or
   * the far end's FIN alone): the conn allows half-open, so after a FIN ours would stay open,
   * unread and owned by no one, a descriptor in CLOSE-WAIT per lost mux conn.
   */
  private close(reason: string, error?: ProtocolError): void {
    if (this.closed) return;
    this.closed = true;
    debug('%s mux conn closed (%d streams): %s', this.role, this.streams.size, reason);
    for (const stream of [...this.streams.values()]) stream.destroy(new MuxResetError(reason, false));
    this.streams.clear();
    this.conn.destroy();
    this.onConnDrain();
    this.handlers.onClosed(reason, error);
  }

  private fault(message: string): never {
    throw new ProtocolError('BAD_MESSAGE', message);
  }

  private readonly frameHandler: MuxFrameHandler = {
    onOpen: (id, start) => {
      if (this.role !== 'acceptor') this.fault(`the client opened mux stream ${id}; only the server opens streams`);
      if (id <= this.lastId) this.fault(`mux stream ${id} opened after stream ${this.lastId}: ids only grow`);
      this.lastId = id;
      // Refused without a stream: its later frames are late ones for a retired id, and cost nothing.
      if (this.streams.size >= this.limits.maxStreams) return this.refuse(id);
      const stream = new MuxStream(this, id);
      this.admit(stream);
      this.handlers.onStream?.(stream, start);
    },
    // A frame for a stream already reset here is late, not wrong: its sender had not yet seen our RST.
    onData: (id, piece, last) => this.known(id)?.receive(piece, last),
    onFin: (id) => this.known(id)?.receiveFin(),
    onReset: (id, reason) => this.known(id)?.receiveReset(reason),
    onWindow: (id, increment) => this.known(id)?.grant(increment),
  };

  private refuse(id: number): void {
    this.refused++;
    this.write(encodeMuxReset(id, `refused: ${this.limits.maxStreams} streams are open on this mux conn, the client's cap`));
    this.handlers.onRefused?.(this.refused, this.limits.maxStreams);
  }

  private known(id: number): MuxStream | undefined {
    if (this.closed) return undefined;
    if (id > this.lastId) this.fault(`a frame for mux stream ${id}, never opened`);
    return this.streams.get(id);
  }
}

/**
 * One user's stream on a mux conn, as a Duplex the relay treats like a socket: `write` honours
 * the far end's window, `end()` sends FIN, a destroy before both FINs sends RST, and an RST
 * from the far end destroys it with ECONNRESET.
 */
export class MuxStream extends Duplex {
  /** Bytes the far end may still receive before it grants more. */
  private credit = MUX_INITIAL_WINDOW;
  /** A write waiting for credit. */
  private blocked: { chunk: Buffer; callback: (error?: Error | null) => void } | undefined;
  /** What may be outstanding towards this end: received and not yet taken by the reader, or still to come. */
  window = MUX_INITIAL_WINDOW;
  /** Bytes received, and the far end's credit so far (the initial window and every WINDOW sent). */
  private received = 0;
  private granted = MUX_INITIAL_WINDOW;
  /** Received bytes not yet pushed to the reader. */
  private readonly inbox = new MuxInbox();
  private endPushed = false;
  /** The inbox ends with part of a DATA frame: nothing is handed on until the frame is whole (see `receive`). */
  private midFrame = false;
  private creditQueued = false;
  private finSent = false;
  private finReceived = false;
  /** No frame is to be sent for this stream any more (an RST went or came, or the conn is gone). */
  private silenced = false;
  /** Why `resetAndDestroy` ended it. */
  private resetReason: string | undefined;
  bytesRead = 0;
  bytesWritten = 0;

  constructor(
    private readonly session: MuxSession,
    readonly id: number,
  ) {
    super({ allowHalfOpen: true, writableHighWaterMark: 64 * 1024, readableHighWaterMark: 64 * 1024 });
  }

  /** The relay calls it on every socket; a stream has no Nagle to turn off. */
  setNoDelay(): this {
    return this;
  }

  /**
   * Ends the stream abnormally, as `Socket.resetAndDestroy` does: the far end resets its socket
   * (the RST says `reason`), and no error is raised here.
   */
  resetAndDestroy(reason = 'reset'): this {
    this.resetReason = reason;
    this.destroy();
    return this;
  }

  /** @internal Ends a stream the far end never heard of: no RST goes out for its id. */
  abandon(error: MuxResetError): void {
    this.silenced = true;
    this.destroy(error);
  }

  /**
   * @internal A piece of a DATA frame. The reader gets a frame's bytes once the frame is whole:
   * its sender wrote the frame at once, so the rest is already on its way (never a wait on the
   * sender), and a frame split across the conn's reads (a TLS record holds 16 KiB, a 64 KiB
   * frame takes five) reaches the reader in one burst, which the relay writes out in one go.
   */
  receive(piece: Buffer, last: boolean): void {
    if (this.destroyed) return;
    if (this.finReceived) return this.protocolReset('DATA after FIN');
    this.received += piece.length;
    if (this.received > this.granted) return this.protocolReset(`more than its window was sent (${this.granted} bytes granted so far)`);
    this.bytesRead += piece.length;
    this.inbox.append(piece);
    this.midFrame = !last;
    if (last) this.session.filledBy(this);
  }

  /** @internal Hands the reader what it has room for; the rest waits, coalesced, for `_read`. */
  deliver(): void {
    if (this.destroyed || this.midFrame) return;
    for (let next = this.inbox.take(); next !== undefined; next = this.inbox.take()) {
      if (!this.push(next)) break;
    }
    if (this.finReceived && this.inbox.length === 0 && !this.endPushed) {
      this.endPushed = true;
      this.push(null);
    }
    this.creditTaken();
  }

  /** @internal */
  receiveFin(): void {
    if (this.destroyed || this.finReceived) return;
    this.finReceived = true;
    this.deliver();
  }

  /** @internal */
  receiveReset(reason: string): void {
    this.silenced = true;
    this.destroy(new MuxResetError(`reset by the far end: ${reason}`, true, reason));
  }

  /** @internal */
  grant(increment: number): void {
    if (this.destroyed) return;
    this.credit += increment;
    // No receiver may let more than the largest window be outstanding: past it, credit is a lie.
    if (this.credit > MUX_STREAM_WINDOW) return this.protocolReset(`the far end granted more than the ${MUX_STREAM_WINDOW}-byte window`);
    const blocked = this.blocked;
    if (blocked === undefined) return;
    this.blocked = undefined;
    this.send(blocked.chunk, blocked.callback);
  }

  override _read(): void {
    this.deliver();
    this.queueCredit();
  }

  /**
   * Every chunk the reader takes out of the buffer is credited (batched per tick). `_read` alone
   * is not enough: `read()` asks for more before it takes its chunk out, and once `_read` pushed
   * nothing it is not asked again until a push; a reader paused mid-buffer (a bandwidth limit)
   * that later emptied it would leave the far end without credit, both ends waiting.
   */
  override read(size?: number): ReturnType<Duplex['read']> {
    const chunk: unknown = super.read(size);
    if (chunk !== null) this.queueCredit();
    return chunk;
  }

  private queueCredit(): void {
    if (this.creditQueued) return;
    this.creditQueued = true;
    process.nextTick(this.creditAfterRead);
  }

  private readonly creditAfterRead = (): void => {
    this.creditQueued = false;
    this.creditTaken();
  };

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.send(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.session.isClosed) return callback(new MuxResetError('the mux conn is closed', false));
    this.finSent = true;
    // Once both FINs crossed and the reader has the end, Duplex's autoDestroy retires the stream.
    this.session.write(encodeMuxFrame(MuxFrameType.fin, this.id));
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const clean = this.finSent && this.finReceived && error === null && this.resetReason === undefined;
    if (!clean && !this.silenced && !this.session.isClosed) {
      this.session.write(encodeMuxReset(this.id, this.resetReason ?? error?.message ?? 'closed before its streams ended'));
    }
    this.silenced = true;
    this.inbox.clear();
    const blocked = this.blocked;
    this.blocked = undefined;
    blocked?.callback(error ?? new MuxResetError('the stream was closed', false));
    this.session.forget(this);
    callback(error);
  }

  /** Sends as much of `chunk` as the window allows; the rest waits for WINDOW. */
  private send(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (this.session.isClosed) return callback(new MuxResetError('the mux conn is closed', false));
    let rest = chunk;
    while (rest.length > 0) {
      const size = Math.min(rest.length, this.credit, MAX_MUX_DATA_BYTES);
      if (size < Math.min(rest.length, MIN_DATA_PIECE_BYTES)) {
        this.blocked = { chunk: rest, callback };
        return;
      }
      const piece = rest.subarray(0, size);
      if (size < COPY_DATA_BELOW) this.session.write(encodeMuxFrame(MuxFrameType.data, this.id, piece));
      else this.session.write(encodeMuxHeader(MuxFrameType.data, this.id, size), piece);
      this.credit -= size;
      this.bytesWritten += size;
      rest = rest.subarray(size);
    }
    // The conn is shared: past its backlog, a stream's write completes only once the conn drained,
    // so that a fast sender is held back by the conn's own backpressure, not queued in this process.
    this.session.afterDrain(callback);
  }

  /**
   * Credits back what the reader took, in halves of the window, and grows the window while the
   * session's budget has room: what the far end may have outstanding stays within `window`.
   */
  private creditTaken(): void {
    if (this.silenced || this.finReceived) return;
    const taken = this.received - this.inbox.length - this.readableLength;
    let increment = taken + this.window - this.granted;
    if (increment < this.window / 2) return;
    const grown = this.session.grow(this.window);
    increment += grown - this.window;
    this.window = grown;
    this.granted += increment;
    this.session.write(encodeMuxWindow(this.id, increment));
  }

  /** The far end broke this stream's rules: the stream is reset, the conn carries on. */
  private protocolReset(why: string): void {
    debug('mux stream %d reset: %s', this.id, why);
    this.destroy(new MuxResetError(`protocol error on mux stream ${this.id}: ${why}`, false));
  }
}

function ignoreError(): void {}
