import createDebug from 'debug';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import {
  encodeMuxFrame,
  encodeMuxHeader,
  encodeMuxOpen,
  encodeMuxReset,
  encodeMuxWindow,
  MAX_MUX_DATA_BYTES,
  MAX_MUX_STREAM_ID,
  MuxDecoder,
  MuxFrameType,
  ProtocolError,
  type MuxFrameHandler,
  type StartWorkConn,
} from '../protocol/index.js';

const debug = createDebug('ntp:net:mux');

/**
 * What each side may send on a stream before the receiver grants more: 1 MiB. It bounds what
 * one stream may hold queued at the receiver (a slow user, a slow app); at loopback round trips
 * it does not limit a single stream's rate (yamux, under frp's tcpMux, starts at 256 KiB).
 */
export const MUX_STREAM_WINDOW = 1024 * 1024;
/** Credit goes back once this much was taken: one WINDOW frame per 512 KiB relayed. */
const WINDOW_UPDATE_AT = MUX_STREAM_WINDOW / 2;
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

  constructor(
    readonly conn: Socket,
    readonly role: 'opener' | 'acceptor',
    private readonly handlers: MuxSessionHandlers,
  ) {
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
    const id = this.lastId === MAX_MUX_STREAM_ID ? MAX_MUX_STREAM_ID : ++this.lastId;
    const stream = new MuxStream(this, id);
    if (this.closed || id === MAX_MUX_STREAM_ID) {
      stream.destroy(new MuxResetError(this.closed ? 'the mux conn is closed' : 'the mux conn ran out of stream ids', false));
      return stream;
    }
    this.streams.set(id, stream);
    this.write(encodeMuxOpen(id, start));
    return stream;
  }

  /** Resets every stream and closes the conn (a TLS conn is destroyed: see `resetSocket`). Idempotent. */
  destroy(reason: string): void {
    this.close(reason);
    this.conn.destroy();
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

  /** @internal The stream is through on both sides, or reset: its id is retired. */
  forget(stream: MuxStream): void {
    if (this.streams.get(stream.id) === stream) this.streams.delete(stream.id);
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
      this.conn.destroy();
    }
  };

  private readonly onConnDrain = (): void => {
    const waiters = this.drainWaiters.splice(0);
    for (const resume of waiters) resume();
  };

  private close(reason: string, error?: ProtocolError): void {
    if (this.closed) return;
    this.closed = true;
    debug('%s mux conn closed (%d streams): %s', this.role, this.streams.size, reason);
    for (const stream of [...this.streams.values()]) stream.destroy(new MuxResetError(reason, false));
    this.streams.clear();
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
      const stream = new MuxStream(this, id);
      this.streams.set(id, stream);
      this.handlers.onStream?.(stream, start);
    },
    // A frame for a stream already reset here is late, not wrong: its sender had not yet seen our RST.
    onData: (id, piece) => this.known(id)?.receive(piece),
    onFin: (id) => this.known(id)?.receiveFin(),
    onReset: (id, reason) => this.known(id)?.receiveReset(reason),
    onWindow: (id, increment) => this.known(id)?.grant(increment),
  };

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
  private credit = MUX_STREAM_WINDOW;
  /** A write waiting for credit. */
  private blocked: { chunk: Buffer; callback: (error?: Error | null) => void } | undefined;
  /** Bytes received, and how many of them were credited back. */
  private received = 0;
  private credited = 0;
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

  /** @internal */
  receive(piece: Buffer): void {
    if (this.destroyed) return;
    if (this.finReceived) return this.protocolReset('DATA after FIN');
    this.received += piece.length;
    if (this.received - this.credited > MUX_STREAM_WINDOW) return this.protocolReset(`more than the ${MUX_STREAM_WINDOW}-byte window was sent`);
    this.bytesRead += piece.length;
    this.push(piece);
    this.creditTaken();
  }

  /** @internal */
  receiveFin(): void {
    if (this.destroyed || this.finReceived) return;
    this.finReceived = true;
    this.push(null);
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
    // Credit comes back only for bytes sent: more than the window outstanding is a lie.
    if (this.credit > MUX_STREAM_WINDOW) return this.protocolReset('the far end granted more than it was sent');
    const blocked = this.blocked;
    if (blocked === undefined) return;
    this.blocked = undefined;
    this.send(blocked.chunk, blocked.callback);
  }

  override _read(): void {
    this.creditTaken();
  }

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
      if (size === 0) {
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

  /** Credits back what the reader took, in halves of the window. */
  private creditTaken(): void {
    if (this.silenced || this.finReceived) return;
    const taken = this.received - this.readableLength - this.credited;
    if (taken < WINDOW_UPDATE_AT) return;
    this.credited += taken;
    this.session.write(encodeMuxWindow(this.id, taken));
  }

  /** The far end broke this stream's rules: the stream is reset, the conn carries on. */
  private protocolReset(why: string): void {
    debug('mux stream %d reset: %s', this.id, why);
    this.destroy(new MuxResetError(`protocol error on mux stream ${this.id}: ${why}`, false));
  }
}
