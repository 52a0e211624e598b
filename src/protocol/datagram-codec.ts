/**
 * How a UDP session's datagrams travel on its work conn, after StartWorkConn (or NewWorkConn
 * for a conn asked for): each datagram in one frame, a 2-byte big-endian length then the
 * payload, never split across frames nor merged with another. TCP keeps them in order; the
 * length keeps their boundaries. No session id: a work conn carries exactly one session, so
 * one slow user never holds up another's datagrams behind it on a shared stream.
 *
 * Lengths above MAX_DATAGRAM_FRAME_PAYLOAD never occur: a UDP payload is at most 65,507 bytes.
 */
export const DATAGRAM_HEADER_BYTES = 2;
export const MAX_DATAGRAM_FRAME_PAYLOAD = 0xffff;

export function encodeDatagram(payload: Uint8Array): Buffer {
  if (payload.length > MAX_DATAGRAM_FRAME_PAYLOAD) throw new RangeError(`a datagram of ${payload.length} bytes cannot be framed`);
  // One buffer per datagram: one write, one TLS record at most, no partial header on the wire.
  const frame = Buffer.allocUnsafe(DATAGRAM_HEADER_BYTES + payload.length);
  frame.writeUInt16BE(payload.length, 0);
  frame.set(payload, DATAGRAM_HEADER_BYTES);
  return frame;
}

/**
 * Incremental decoder for a work conn's datagram frames: chunks as TCP delivers them (a frame
 * split across chunks, or many in one) in, whole datagrams out. A datagram inside one chunk is
 * handed on as a view of it, without a copy; only one that straddles chunks is copied. At most
 * one frame (64 KiB) is ever held.
 */
export class DatagramDecoder {
  /** The frame being completed across chunks: its header bytes, then its body. */
  private partial: Buffer | undefined;
  private partialFilled = 0;
  private header = Buffer.alloc(DATAGRAM_HEADER_BYTES);
  private headerFilled = 0;

  /** Bytes held of an incomplete frame (0 between frames). */
  get bufferedBytes(): number {
    return this.headerFilled + this.partialFilled;
  }

  push(chunk: Buffer, onDatagram: (payload: Buffer) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.partial !== undefined) {
        const take = Math.min(this.partial.length - this.partialFilled, chunk.length - offset);
        chunk.copy(this.partial, this.partialFilled, offset, offset + take);
        this.partialFilled += take;
        offset += take;
        if (this.partialFilled < this.partial.length) return;
        const whole = this.partial;
        this.partial = undefined;
        this.partialFilled = 0;
        onDatagram(whole);
        continue;
      }
      let length: number;
      if (this.headerFilled > 0 || chunk.length - offset < DATAGRAM_HEADER_BYTES) {
        this.header[this.headerFilled++] = chunk[offset++]!;
        if (this.headerFilled < DATAGRAM_HEADER_BYTES) continue;
        length = this.header.readUInt16BE(0);
        this.headerFilled = 0;
      } else {
        length = chunk.readUInt16BE(offset);
        offset += DATAGRAM_HEADER_BYTES;
      }
      if (chunk.length - offset >= length) {
        onDatagram(chunk.subarray(offset, offset + length));
        offset += length;
      } else {
        this.partial = Buffer.allocUnsafe(length);
      }
    }
  }
}
