/**
 * A piece is kept as a view (no copy) only from this size, and only when it is at least half of
 * the chunk it is a view into: a view keeps its whole chunk alive, so a 1-byte DATA frame kept as
 * a view cost the receiver a Buffer object (about 100 bytes) and a share of a chunk per byte.
 */
const VIEW_MIN_BYTES = 4 * 1024;
/** Smaller pieces are copied into a buffer of the stream's own, which grows by doubling up to this. */
const TAIL_MIN_BYTES = 256;
const TAIL_MAX_BYTES = 16 * 1024;

/**
 * What a mux stream received and its reader has not taken yet, held in real memory close to the
 * payload whatever the frame sizes (at most about twice it: a view at most doubles what it keeps
 * alive, a copy buffer is at least half full but for its newest), so that the stream's window
 * bounds its memory and not only its payload. Bulk pieces stay zero-copy; small ones are
 * coalesced, so the reader is also handed fewer, larger chunks.
 */
export class MuxInbox {
  /** Buffers ready for the reader, oldest first; the bytes of `tail` from `tailFrom` come after them. */
  private readonly parts: Buffer[] = [];
  private tail: Buffer | undefined;
  private tailFrom = 0;
  private tailFilled = 0;
  /** Payload bytes held. */
  length = 0;

  append(piece: Buffer): void {
    this.length += piece.length;
    if (piece.length >= VIEW_MIN_BYTES && piece.length * 2 >= piece.buffer.byteLength) {
      this.seal();
      this.parts.push(piece);
      return;
    }
    let tail = this.tail;
    if (tail === undefined || tail.length - this.tailFilled < piece.length) {
      this.seal();
      const grown = Math.min(TAIL_MAX_BYTES, Math.max(TAIL_MIN_BYTES, (tail?.length ?? 0) * 2));
      tail = this.tail = Buffer.allocUnsafeSlow(Math.max(grown, piece.length));
      this.tailFrom = this.tailFilled = 0;
    }
    piece.copy(tail, this.tailFilled);
    this.tailFilled += piece.length;
  }

  /** The oldest bytes held, as one buffer, or undefined when nothing is held. */
  take(): Buffer | undefined {
    this.seal();
    const next = this.parts.shift();
    if (next === undefined) return undefined;
    this.length -= next.length;
    if (this.length === 0 && this.tail !== undefined && this.tailFilled === this.tail.length) this.tail = undefined;
    return next;
  }

  /** Drops everything held (the stream was reset). */
  clear(): void {
    this.parts.length = 0;
    this.tail = undefined;
    this.tailFrom = this.tailFilled = 0;
    this.length = 0;
  }

  /** The tail's bytes so far become a part, so that a view after them keeps its place; the rest of the tail is reused. */
  private seal(): void {
    if (this.tail === undefined || this.tailFilled === this.tailFrom) return;
    this.parts.push(this.tail.subarray(this.tailFrom, this.tailFilled));
    this.tailFrom = this.tailFilled;
  }
}
