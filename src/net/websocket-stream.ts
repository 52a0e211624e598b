import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { resetSocket } from './reset.js';

/*
 * A byte stream carried in WebSocket binary messages (RFC 6455), so that our TLS conn can pass
 * a reverse proxy that only forwards WebSocket upgrades. Only what that needs: binary and
 * continuation frames carry bytes, ping is answered, a text frame, reserved bits or an
 * oversized frame are errors. Written here rather than taken from the `ws` package: this is
 * ~200 lines with no options to get wrong, and it keeps half-close, which `ws`'s stream
 * helper folds into a full close (a Close frame here ends one direction, like a TCP FIN,
 * and the socket's FIN follows once both sides sent theirs).
 */

/** The largest frame payload read from a peer; a peer announcing more is cut off before it is buffered. */
export const MAX_WEBSOCKET_FRAME_BYTES = 256 * 1024;
/** Writes are cut into frames of at most this. */
const MAX_SENT_FRAME_BYTES = 64 * 1024;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** client: masks what it sends and wants unmasked frames; server: the reverse (RFC 6455 5.1). */
export type WebSocketRole = 'client' | 'server';

export const WEBSOCKET_ERROR_CODES = ['WEBSOCKET_PROTOCOL'] as const;

export class WebSocketError extends Error {
  override readonly name = 'WebSocketError';
  readonly code: (typeof WEBSOCKET_ERROR_CODES)[number] = 'WEBSOCKET_PROTOCOL';
}

/** One frame's bytes: header, then the payload (masked when `mask`). */
export function encodeFrame(opcode: number, payload: Buffer, mask: boolean): Buffer {
  const length = payload.length;
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const header = Buffer.alloc(2 + extended + (mask ? 4 : 0));
  header[0] = 0x80 | opcode;
  header[1] = (mask ? 0x80 : 0) | (extended === 0 ? length : extended === 2 ? 126 : 127);
  if (extended === 2) header.writeUInt16BE(length, 2);
  else if (extended === 8) header.writeBigUInt64BE(BigInt(length), 2);
  if (!mask) return Buffer.concat([header, payload]);
  const key = randomBytes(4);
  key.copy(header, 2 + extended);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([header, body]);
}

/**
 * The socket's bytes as frames. Takes the socket over (its `data`, `end`, `error`, `close`):
 * destroying this stream destroys the socket, and the socket failing destroys this stream.
 */
export class WebSocketStream extends Duplex {
  private buffered: Buffer = Buffer.alloc(0);
  private sentClose = false;
  private receivedClose = false;

  constructor(
    readonly socket: Socket,
    private readonly role: WebSocketRole,
  ) {
    super({ allowHalfOpen: true });
    socket.on('data', this.onSocketData);
    socket.on('end', this.onSocketEnd);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    socket.resume();
  }

  private readonly onSocketData = (chunk: Buffer): void => {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    try {
      while (this.readFrame());
    } catch (error) {
      this.destroy(error as Error);
    }
  };

  /** Consumes one whole frame from `buffered`; false when more bytes are needed. */
  private readFrame(): boolean {
    const data = this.buffered;
    if (data.length < 2) return false;
    const first = data[0]!;
    const second = data[1]!;
    if ((first & 0x70) !== 0) throw new WebSocketError('a frame with reserved bits set (no extension was agreed)');
    const opcode = first & 0x0f;
    const masked = (second & 0x80) !== 0;
    if (masked !== (this.role === 'server'))
      throw new WebSocketError(this.role === 'server' ? 'an unmasked frame from the client' : 'a masked frame from the server');
    let length = second & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (data.length < 4) return false;
      length = data.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (data.length < 10) return false;
      const long = data.readBigUInt64BE(2);
      if (long > BigInt(MAX_WEBSOCKET_FRAME_BYTES)) throw new WebSocketError(`a frame of ${long} bytes (at most ${MAX_WEBSOCKET_FRAME_BYTES})`);
      length = Number(long);
      offset = 10;
    }
    // Checked as soon as the length is known, before waiting for (and buffering) the payload.
    if (length > MAX_WEBSOCKET_FRAME_BYTES) throw new WebSocketError(`a frame of ${length} bytes (at most ${MAX_WEBSOCKET_FRAME_BYTES})`);
    const keyAt = offset;
    if (masked) offset += 4;
    if (data.length < offset + length) return false;
    const payload = Buffer.from(data.subarray(offset, offset + length));
    if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= data[keyAt + (i & 3)]!;
    this.buffered = data.subarray(offset + length);
    this.onFrame(opcode, payload);
    return true;
  }

  private onFrame(opcode: number, payload: Buffer): void {
    switch (opcode) {
      case OP_BINARY:
      case OP_CONTINUATION:
        if (this.receivedClose) throw new WebSocketError('data after the Close frame');
        if (payload.length > 0 && !this.push(payload)) this.socket.pause();
        return;
      case OP_PING:
        if (!this.sentClose) this.socket.write(encodeFrame(OP_PONG, payload, this.role === 'client'));
        return;
      case OP_PONG:
        return;
      case OP_CLOSE:
        if (this.receivedClose) return;
        this.receivedClose = true;
        this.push(null);
        if (this.sentClose) this.socket.end();
        return;
      case OP_TEXT:
        throw new WebSocketError('a text frame (this link carries binary frames only)');
      default:
        throw new WebSocketError(`a frame with unknown opcode ${opcode}`);
    }
  }

  // The socket ended without a Close frame: the peer (or a proxy between) failed, not a clean end.
  private readonly onSocketEnd = (): void => {
    if (!this.receivedClose) this.destroy(new WebSocketError('the connection ended without a Close frame'));
  };

  private readonly onSocketError = (error: Error): void => {
    this.destroy(error);
  };

  private readonly onSocketClose = (): void => {
    if (!this.receivedClose || !this.sentClose) this.destroy(new WebSocketError('the connection closed without a Close frame'));
    else this.destroy();
  };

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let flushed = true;
    for (let at = 0; at < chunk.length; at += MAX_SENT_FRAME_BYTES) {
      flushed = this.socket.write(encodeFrame(OP_BINARY, chunk.subarray(at, at + MAX_SENT_FRAME_BYTES), this.role === 'client'));
    }
    if (flushed) callback();
    else this.socket.once('drain', () => callback());
  }

  // Our side is done: a Close frame says so (a FIN inside the WebSocket); the TCP FIN waits for the peer's.
  override _final(callback: (error?: Error | null) => void): void {
    this.sentClose = true;
    const status = Buffer.alloc(2);
    status.writeUInt16BE(1000);
    this.socket.write(encodeFrame(OP_CLOSE, status, this.role === 'client'));
    if (this.receivedClose) this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.off('data', this.onSocketData);
    this.socket.off('end', this.onSocketEnd);
    this.socket.off('close', this.onSocketClose);
    // The 'error' listener stays: an error the socket reports while it is torn down must not be
    // unhandled. Unless both Close frames crossed, the peer must see a failure, never an end.
    if (this.sentClose && this.receivedClose) this.socket.destroy();
    else resetSocket(this.socket);
    callback(error);
  }
}
