/**
 * Reads the server name (SNI) from the first bytes a TLS client sends, without terminating
 * TLS: the ClientHello is plaintext. Those bytes are only read here; they are relayed to the
 * app unchanged. Robust to a ClientHello split over several TCP segments (call again with
 * more bytes) and over several TLS records (the handshake message is reassembled).
 */

/** A ClientHello larger than this is refused (real ones are a few KB, post-quantum ones ~2 KB). */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

const RECORD_HEADER = 5;
const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const SERVER_NAME_EXTENSION = 0x0000;
const HOST_NAME = 0x00;
/** TLSPlaintext.length may not exceed 2^14 (RFC 8446 5.1). */
const MAX_RECORD = 16384;

export type ClientHelloResult =
  { readonly kind: 'incomplete' } | { readonly kind: 'hello'; readonly serverName: string | undefined } | { readonly kind: 'invalid'; readonly reason: string };

const INCOMPLETE: ClientHelloResult = { kind: 'incomplete' };

class Invalid extends Error {}

/** Parses what has arrived so far of a connection's first bytes. */
export function readClientHello(data: Buffer): ClientHelloResult {
  try {
    const message = reassemble(data);
    if (message === undefined) {
      if (data.length >= MAX_CLIENT_HELLO_BYTES) return { kind: 'invalid', reason: `no complete ClientHello in ${MAX_CLIENT_HELLO_BYTES} bytes` };
      return INCOMPLETE;
    }
    return { kind: 'hello', serverName: serverNameOf(message) };
  } catch (error) {
    if (error instanceof Invalid) return { kind: 'invalid', reason: error.message };
    throw error;
  }
}

/** The ClientHello's body once its records carried all of it, else undefined. */
function reassemble(data: Buffer): Buffer | undefined {
  const fragments: Buffer[] = [];
  let gathered = 0;
  let needed: number | undefined;
  let offset = 0;
  while (offset + RECORD_HEADER <= data.length) {
    if (data[offset] !== HANDSHAKE) throw new Invalid('not a TLS handshake record');
    if (data[offset + 1] !== 0x03) throw new Invalid('not a TLS record version');
    const length = data.readUInt16BE(offset + 3);
    if (length === 0 || length > MAX_RECORD) throw new Invalid(`TLS record of ${length} bytes`);
    const end = offset + RECORD_HEADER + length;
    const fragment = data.subarray(offset + RECORD_HEADER, Math.min(end, data.length));
    fragments.push(fragment);
    gathered += fragment.length;
    if (needed === undefined && gathered >= 4) {
      const head = Buffer.concat(fragments);
      if (head[0] !== CLIENT_HELLO) throw new Invalid('the first handshake message is not a ClientHello');
      needed = 4 + head.readUIntBE(1, 3);
      if (needed > MAX_CLIENT_HELLO_BYTES) throw new Invalid(`ClientHello of ${needed} bytes`);
    }
    if (needed !== undefined && gathered >= needed) return Buffer.concat(fragments).subarray(4, needed);
    if (end > data.length) return undefined;
    offset = end;
  }
  return undefined;
}

/** A bounds-checked reader over the ClientHello body. */
class Cursor {
  constructor(
    private readonly data: Buffer,
    private offset = 0,
    private readonly end = data.length,
  ) {}

  take(bytes: number): Buffer {
    if (this.offset + bytes > this.end) throw new Invalid('ClientHello truncated inside a field');
    const slice = this.data.subarray(this.offset, this.offset + bytes);
    this.offset += bytes;
    return slice;
  }

  uint(bytes: 1 | 2): number {
    return this.take(bytes).readUIntBE(0, bytes);
  }

  /** A length-prefixed field, as a cursor of its own. */
  vector(lengthBytes: 1 | 2): Cursor {
    const body = this.take(this.uint(lengthBytes));
    return new Cursor(body);
  }

  rest(): Buffer {
    return this.take(this.remaining);
  }

  get remaining(): number {
    return this.end - this.offset;
  }
}

function serverNameOf(body: Buffer): string | undefined {
  const hello = new Cursor(body);
  hello.take(2 + 32); // legacy_version, random
  hello.vector(1); // legacy_session_id
  hello.vector(2); // cipher_suites
  hello.vector(1); // legacy_compression_methods
  if (hello.remaining === 0) return undefined; // no extensions at all (old clients)
  const extensions = hello.vector(2);
  while (extensions.remaining > 0) {
    const type = extensions.uint(2);
    const data = extensions.vector(2);
    if (type !== SERVER_NAME_EXTENSION) continue;
    const names = data.vector(2);
    while (names.remaining > 0) {
      const nameType = names.uint(1);
      const name = names.vector(2).rest();
      if (nameType !== HOST_NAME) continue;
      // RFC 6066 3: a DNS host name in ASCII, without a trailing dot.
      const text = name.toString('latin1').toLowerCase();
      if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(text) || text.length > 253) throw new Invalid('the server name is not a host name');
      return text;
    }
  }
  return undefined;
}
