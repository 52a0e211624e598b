import { ProtocolError } from './errors.js';
import { validateMessage, type Message } from './messages.js';

/**
 * Wire format: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
 * The only module that touches frame bytes.
 */
export const FRAME_HEADER_BYTES = 4;
export const MAX_FRAME_BYTES = 64 * 1024;

export function encodeFrame(message: Message): Buffer {
  const json = JSON.stringify(message);
  const length = Buffer.byteLength(json, 'utf8');
  if (length > MAX_FRAME_BYTES) {
    throw new ProtocolError('FRAME_TOO_LARGE', `${message.type} frame of ${length} bytes exceeds ${MAX_FRAME_BYTES}`);
  }
  // One buffer, written in place: a pooled user costs a few frames.
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
  frame.writeUInt32BE(length, 0);
  frame.write(json, FRAME_HEADER_BYTES, 'utf8');
  return frame;
}

/**
 * Incremental decoder: feed it chunks as they arrive (a frame may be split across chunks,
 * or several frames may share one). The length is checked the moment the header is
 * complete, before anything is buffered for the body.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrameBytes = MAX_FRAME_BYTES) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The wire length (header included) of the frame `next()` returned last. */
  lastFrameBytes = 0;

  /** Bytes buffered but not yet decoded. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Bytes received after the last decoded frame (a work conn's first user bytes). */
  takeRemainder(): Buffer {
    const rest = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }

  /**
   * The next complete frame, or undefined until more bytes arrive; throws ProtocolError on a
   * bad frame. One at a time, because the caller may stop after a frame (a work conn's
   * NewWorkConn) and treat the rest as raw bytes.
   */
  next(): Message | undefined {
    if (this.buffered < FRAME_HEADER_BYTES) return undefined;
    const head = this.peek(FRAME_HEADER_BYTES);
    const length = head.readUInt32BE(0);
    if (length > this.maxFrameBytes) {
      throw new ProtocolError('FRAME_TOO_LARGE', `frame length ${length} exceeds the maximum of ${this.maxFrameBytes} bytes`);
    }
    if (length === 0) throw new ProtocolError('BAD_MESSAGE', 'empty frame');
    if (this.buffered < FRAME_HEADER_BYTES + length) return undefined;
    const frame = this.consume(FRAME_HEADER_BYTES + length);
    this.lastFrameBytes = frame.length;
    let parsed: unknown;
    try {
      parsed = JSON.parse(frame.toString('utf8', FRAME_HEADER_BYTES));
    } catch (error) {
      throw new ProtocolError('BAD_JSON', 'frame body is not valid JSON', { cause: error });
    }
    return validateMessage(parsed);
  }

  private peek(bytes: number): Buffer {
    if (this.chunks[0]!.length < bytes) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!;
  }

  private consume(bytes: number): Buffer {
    const whole = this.peek(bytes);
    const frame = whole.subarray(0, bytes);
    const rest = whole.subarray(bytes);
    if (rest.length > 0) this.chunks[0] = rest;
    else this.chunks.shift();
    this.buffered -= bytes;
    return frame;
  }
}
