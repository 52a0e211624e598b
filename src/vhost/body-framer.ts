import { HeadError, type BodyLength } from '../net/http-head.js';

/** Longest chunk-size line or trailer line accepted (extensions included). */
const MAX_LINE = 4096;
const MAX_TRAILER_BYTES = 64 * 1024;

type ChunkedState = 'size' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer' | 'trailer-lf';

/**
 * Follows one message body through the bytes that carry it, without changing them: it only
 * says how much of each chunk of bytes still belongs to the body, and when the body is over.
 * Chunked coding is followed byte by byte (sizes, CRLFs, trailers), so that the next message
 * on a keep-alive conn starts exactly where it should.
 */
export class BodyFramer {
  private remaining = 0;
  private state: ChunkedState = 'size';
  private line = '';
  private trailerBytes = 0;
  private finished: boolean;

  constructor(
    private readonly length: BodyLength,
    private readonly bad: 400 | 502,
  ) {
    this.finished = length.kind === 'none';
    if (length.kind === 'length') this.remaining = length.bytes;
  }

  get done(): boolean {
    return this.finished;
  }

  /** The body runs until the sender closes: the conn cannot carry another message. */
  get untilClose(): boolean {
    return this.length.kind === 'until-close';
  }

  /** How many leading bytes of `chunk` belong to the body (all of them until it is done). */
  take(chunk: Buffer): number {
    if (this.finished) return 0;
    switch (this.length.kind) {
      case 'until-close':
        return chunk.length;
      case 'length': {
        const taken = Math.min(this.remaining, chunk.length);
        this.remaining -= taken;
        if (this.remaining === 0) this.finished = true;
        return taken;
      }
      case 'chunked':
        return this.takeChunked(chunk);
      default:
        return 0;
    }
  }

  private takeChunked(chunk: Buffer): number {
    let i = 0;
    while (i < chunk.length && !this.finished) {
      if (this.state === 'data') {
        const taken = Math.min(this.remaining, chunk.length - i);
        i += taken;
        this.remaining -= taken;
        if (this.remaining === 0) this.state = 'data-cr';
        continue;
      }
      const byte = chunk[i++]!;
      switch (this.state) {
        case 'size':
        case 'trailer':
          if (byte === 0x0d) {
            this.state = this.state === 'size' ? 'size-lf' : 'trailer-lf';
          } else {
            if (byte === 0x0a) throw new HeadError(this.bad, 'bare LF in chunked coding');
            this.line += String.fromCharCode(byte);
            if (this.line.length > MAX_LINE) throw new HeadError(this.bad, 'chunk line too long');
          }
          if (this.state === 'trailer' && ++this.trailerBytes > MAX_TRAILER_BYTES) throw new HeadError(this.bad, 'trailers too long');
          break;
        case 'size-lf':
          this.expectLf(byte);
          this.onSizeLine();
          break;
        case 'data-cr':
          if (byte !== 0x0d) throw new HeadError(this.bad, 'chunk data longer than its size');
          this.state = 'data-lf';
          break;
        case 'data-lf':
          this.expectLf(byte);
          this.state = 'size';
          break;
        case 'trailer-lf':
          this.expectLf(byte);
          if (this.line === '') this.finished = true;
          this.line = '';
          this.state = 'trailer';
          break;
      }
    }
    return i;
  }

  private expectLf(byte: number): void {
    if (byte !== 0x0a) throw new HeadError(this.bad, 'CR without LF in chunked coding');
  }

  private onSizeLine(): void {
    const match = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(this.line);
    if (!match) throw new HeadError(this.bad, 'invalid chunk size');
    this.remaining = parseInt(match[1]!, 16);
    this.line = '';
    this.state = this.remaining === 0 ? 'trailer' : 'data';
  }
}
