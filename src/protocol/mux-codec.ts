import { ProtocolError } from './errors.js';
import { validateMessage, type StartWorkConn } from './messages.js';

/**
 * How users' streams share a session's mux conn (after its NewWorkConn): frames of a 9-byte
 * header, then `length` bytes of payload.
 *
 *   type (u8) | stream id (u32 BE) | length (u32 BE) | payload
 *
 * - OPEN (server → client only): a new stream; the payload is a StartWorkConn message as JSON,
 *   checked by the same schemas as every other message. Ids only grow.
 * - DATA: relayed bytes of the stream, at most the window the receiver granted.
 * - FIN: the sender's direction of the stream ended cleanly (a half-close); no payload.
 * - RST: the stream ended abnormally; the payload says why (UTF-8, at most 1 KiB). The
 *   receiver resets its own end: the program there sees ECONNRESET.
 * - WINDOW: the receiver took `increment` (u32 BE payload) more bytes of the stream: the
 *   sender may send that many more. Each direction of a stream starts with MUX_INITIAL_WINDOW
 *   of credit; a receiver may grant more than it was sent (a growing window), never so much
 *   that more than MUX_STREAM_WINDOW is outstanding.
 */
export const MUX_HEADER_BYTES = 9;
export const MuxFrameType = { open: 1, data: 2, fin: 3, reset: 4, window: 5 } as const;
export type MuxFrameTypeCode = (typeof MuxFrameType)[keyof typeof MuxFrameType];

/** A DATA frame carries at most this much (bigger writes are split); any other frame at most 64 KiB. */
export const MAX_MUX_DATA_BYTES = 256 * 1024;
const MAX_MUX_CONTROL_BYTES = 64 * 1024;
const MAX_RESET_REASON_BYTES = 1024;
/** Ids are u32; 0 is never used. */
export const MAX_MUX_STREAM_ID = 0xffffffff;

/**
 * What each side may send on a new stream before the receiver grants more: 128 KiB. It is all a
 * stream whose reader never reads (a slow user, a stalled app) holds at the receiver.
 */
export const MUX_INITIAL_WINDOW = 128 * 1024;
/**
 * The most a receiver may let a stream have outstanding: 1 MiB. A stream's window doubles from
 * the initial one each time its reader took half of it, while the session's budget has room, so
 * that a fast stream is not held to a round trip per 128 KiB (yamux, under frp's tcpMux, grows
 * from 256 KiB the same way); one whose reader stops keeps what it had grown to.
 */
export const MUX_STREAM_WINDOW = 1024 * 1024;

export function encodeMuxHeader(type: MuxFrameTypeCode, streamId: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(MUX_HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(streamId, 1);
  header.writeUInt32BE(length, 5);
  return header;
}

/** A whole frame in one buffer: for the small ones (OPEN, FIN, RST, WINDOW) and short DATA. */
export function encodeMuxFrame(type: MuxFrameTypeCode, streamId: number, payload?: Uint8Array): Buffer {
  const length = payload?.length ?? 0;
  const frame = Buffer.allocUnsafe(MUX_HEADER_BYTES + length);
  frame.writeUInt8(type, 0);
  frame.writeUInt32BE(streamId, 1);
  frame.writeUInt32BE(length, 5);
  if (payload !== undefined) frame.set(payload, MUX_HEADER_BYTES);
  return frame;
}

export function encodeMuxOpen(streamId: number, start: StartWorkConn): Buffer {
  return encodeMuxFrame(MuxFrameType.open, streamId, Buffer.from(JSON.stringify(start), 'utf8'));
}

export function encodeMuxReset(streamId: number, reason: string): Buffer {
  let text = Buffer.from(reason, 'utf8');
  if (text.length > MAX_RESET_REASON_BYTES) text = text.subarray(0, MAX_RESET_REASON_BYTES);
  return encodeMuxFrame(MuxFrameType.reset, streamId, text);
}

export function encodeMuxWindow(streamId: number, increment: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(increment, 0);
  return encodeMuxFrame(MuxFrameType.window, streamId, payload);
}

/** What a decoded frame means; DATA may arrive in several pieces (each a view, no copy). */
export interface MuxFrameHandler {
  onOpen(streamId: number, start: StartWorkConn): void;
  /** `last`: the piece ends its frame (the frame's other pieces came before it). */
  onData(streamId: number, piece: Buffer, last: boolean): void;
  onFin(streamId: number): void;
  onReset(streamId: number, reason: string): void;
  onWindow(streamId: number, increment: number): void;
}

/**
 * Incremental decoder of a mux conn: chunks as TCP delivers them in, frames out. A DATA
 * payload is handed on piece by piece as it arrives, as views into the chunks read (never
 * buffered here); only the small control frames are gathered whole. A frame that breaks the
 * format (an unknown type, a length over the limit, a bad OPEN or WINDOW) throws a
 * ProtocolError: the caller closes the whole mux conn, since the frames after it cannot be
 * trusted to line up.
 */
export class MuxDecoder {
  private readonly header = Buffer.allocUnsafe(MUX_HEADER_BYTES);
  private headerFilled = 0;
  private type = 0;
  private streamId = 0;
  /** Payload bytes of the current frame still to come. */
  private remaining = 0;
  /** A control frame's payload, gathered until whole. */
  private control: Buffer | undefined;
  private controlFilled = 0;

  constructor(private readonly handler: MuxFrameHandler) {}

  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining === 0 && this.control === undefined) {
        const take = Math.min(MUX_HEADER_BYTES - this.headerFilled, chunk.length - offset);
        chunk.copy(this.header, this.headerFilled, offset, offset + take);
        this.headerFilled += take;
        offset += take;
        if (this.headerFilled < MUX_HEADER_BYTES) return;
        this.headerFilled = 0;
        this.startFrame();
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - offset);
      if (this.type === MuxFrameType.data) {
        this.remaining -= take;
        const piece = chunk.subarray(offset, offset + take);
        offset += take;
        this.handler.onData(this.streamId, piece, this.remaining === 0);
        continue;
      }
      chunk.copy(this.control!, this.controlFilled, offset, offset + take);
      this.controlFilled += take;
      this.remaining -= take;
      offset += take;
      if (this.remaining === 0) this.finishControl();
    }
  }

  private startFrame(): void {
    const type = this.header.readUInt8(0);
    const streamId = this.header.readUInt32BE(1);
    const length = this.header.readUInt32BE(5);
    this.type = type;
    this.streamId = streamId;
    if (streamId === 0) throw new ProtocolError('BAD_MESSAGE', 'mux frame for stream 0');
    switch (type) {
      case MuxFrameType.data:
        if (length > MAX_MUX_DATA_BYTES) throw new ProtocolError('FRAME_TOO_LARGE', `mux DATA frame of ${length} bytes exceeds ${MAX_MUX_DATA_BYTES}`);
        if (length === 0) throw new ProtocolError('BAD_MESSAGE', `empty mux DATA frame on stream ${streamId}`);
        this.remaining = length;
        return;
      case MuxFrameType.fin:
        if (length !== 0) throw new ProtocolError('BAD_MESSAGE', `mux FIN frame with a ${length}-byte payload`);
        this.handler.onFin(streamId);
        return;
      case MuxFrameType.window:
        if (length !== 4) throw new ProtocolError('BAD_MESSAGE', `mux WINDOW frame with a ${length}-byte payload (4 expected)`);
        break;
      case MuxFrameType.reset:
        if (length > MAX_RESET_REASON_BYTES) throw new ProtocolError('FRAME_TOO_LARGE', `mux RST reason of ${length} bytes exceeds ${MAX_RESET_REASON_BYTES}`);
        break;
      case MuxFrameType.open:
        if (length > MAX_MUX_CONTROL_BYTES) throw new ProtocolError('FRAME_TOO_LARGE', `mux OPEN frame of ${length} bytes exceeds ${MAX_MUX_CONTROL_BYTES}`);
        if (length === 0) throw new ProtocolError('BAD_MESSAGE', 'mux OPEN frame without its StartWorkConn');
        break;
      default:
        throw new ProtocolError('BAD_MESSAGE', `unknown mux frame type ${type}`);
    }
    if (length === 0) {
      this.control = Buffer.alloc(0);
      this.finishControl();
      return;
    }
    this.control = Buffer.allocUnsafe(length);
    this.controlFilled = 0;
    this.remaining = length;
  }

  private finishControl(): void {
    const payload = this.control!;
    this.control = undefined;
    this.controlFilled = 0;
    const { streamId } = this;
    switch (this.type) {
      case MuxFrameType.window: {
        const increment = payload.readUInt32BE(0);
        if (increment === 0) throw new ProtocolError('BAD_MESSAGE', `mux WINDOW frame of 0 bytes on stream ${streamId}`);
        return this.handler.onWindow(streamId, increment);
      }
      case MuxFrameType.reset:
        return this.handler.onReset(streamId, payload.toString('utf8'));
      case MuxFrameType.open:
        return this.handler.onOpen(streamId, decodeStart(payload, streamId));
    }
  }
}

function decodeStart(payload: Buffer, streamId: number): StartWorkConn {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch (error) {
    throw new ProtocolError('BAD_JSON', `mux OPEN frame of stream ${streamId} is not valid JSON`, { cause: error });
  }
  const message = validateMessage(parsed);
  if (message.type !== 'StartWorkConn')
    throw new ProtocolError('BAD_MESSAGE', `mux OPEN frame of stream ${streamId} carries ${message.type}, not StartWorkConn`);
  return message;
}
