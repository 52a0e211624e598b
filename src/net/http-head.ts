/**
 * The one strict, bounded reader of HTTP/1.x message heads: the vhost router's requests and
 * its apps' responses, and the handshakes read off a socket before another layer takes it
 * over (a proxy's answer to CONNECT, a WebSocket upgrade: head-reader.ts). Only what routing,
 * framing and those handshakes need is interpreted; the vhost relays the bytes as they came
 * (requests get headers added). Anything ambiguous (a bare LF, a folded line, two
 * Content-Lengths that differ, a Transfer-Encoding beside a Content-Length) is refused:
 * ambiguity between us and the app is how requests are smuggled past a proxy.
 */

/** A vhost's heads past this get 431 (requests) or fail the conn (responses). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Header lines in one head, past which it is refused (431), whatever its size. */
export const MAX_HEADERS = 256;

export type Header = readonly [name: string, value: string];

export interface RequestHead {
  readonly method: string;
  readonly target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: 0 | 1;
  readonly headers: readonly Header[];
}

export interface ResponseHead {
  readonly status: number;
  /** The reason phrase as sent (possibly empty): a refusal's line names it ("403 Access violation"). */
  readonly reason: string;
  readonly minor: 0 | 1;
  readonly headers: readonly Header[];
}

/** How the body after a head is delimited. */
export type BodyLength = { kind: 'none' } | { kind: 'length'; bytes: number } | { kind: 'chunked' } | { kind: 'until-close' };

export class HeadError extends Error {
  override readonly name = 'HeadError';
  constructor(
    readonly status: 400 | 431 | 501 | 502,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const CRLF_CRLF = Buffer.from('\r\n\r\n');

/**
 * Where the head in `buffer` ends (the index just past its blank line), undefined while it is
 * incomplete; throws 431 once the head is longer than `max`, so that a slow sender cannot
 * make us hold more than that, and `bad` (400 for requests, 502 for responses) at the first
 * bare LF or bare CR: a head written with bare LFs never has the CRLF CRLF that ends it, and
 * waiting for one would hold the sender until the deadline instead of answering it.
 */
export function headEnd(buffer: Buffer, bad: 400 | 502, max = MAX_HEAD_BYTES): number | undefined {
  const at = buffer.indexOf(CRLF_CRLF);
  const end = at < 0 ? undefined : at + 4;
  checkLineEnds(buffer.subarray(0, Math.min(end ?? buffer.length, max)), bad);
  if (end !== undefined && end <= max) return end;
  if (end !== undefined || buffer.length > max) throw new HeadError(431, `an HTTP head longer than ${max} bytes`);
  return undefined;
}

/** Every LF in `head` follows a CR and every CR is followed by an LF (a CR at its very end may still get its LF). */
function checkLineEnds(head: Buffer, bad: 400 | 502): void {
  for (let at = head.indexOf(0x0a); at >= 0; at = head.indexOf(0x0a, at + 1)) {
    if (at === 0 || head[at - 1] !== 0x0d) throw new HeadError(bad, 'bare LF in the head');
  }
  for (let at = head.indexOf(0x0d); at >= 0 && at < head.length - 1; at = head.indexOf(0x0d, at + 1)) {
    if (head[at + 1] !== 0x0a) throw new HeadError(bad, 'bare CR in the head');
  }
}

export function parseRequestHead(head: Buffer): RequestHead {
  const [line, headers] = splitHead(head, 400);
  const match = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e\x80-\xff]+) HTTP\/1\.([01])$/.exec(line);
  if (!match) throw new HeadError(400, 'malformed request line');
  return { method: match[1]!, target: match[2]!, minor: match[3] === '1' ? 1 : 0, headers };
}

export function parseResponseHead(head: Buffer): ResponseHead {
  const [line, headers] = splitHead(head, 502);
  const match = /^HTTP\/1\.([01]) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(line);
  if (!match) throw new HeadError(502, 'malformed status line');
  return { status: Number(match[2]), reason: match[3] ?? '', minor: match[1] === '1' ? 1 : 0, headers };
}

function splitHead(head: Buffer, status: 400 | 502): [string, Header[]] {
  // latin1 maps each byte to one char: lengths and offsets stay those of the bytes.
  const lines = head.toString('latin1').slice(0, -4).split('\r\n');
  const first = lines.shift() ?? '';
  if (lines.length > MAX_HEADERS) throw new HeadError(431, `more than ${MAX_HEADERS} header lines`);
  const headers: Header[] = [];
  for (const line of lines) {
    if (line.includes('\n') || line.includes('\r')) throw new HeadError(status, 'bare CR or LF in the head');
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    // A space before the colon, or a folded line (starting with whitespace), is refused (RFC 9112 5.1, 5.2).
    if (!TOKEN.test(name)) throw new HeadError(status, `malformed header line`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) throw new HeadError(status, `bad character in header ${name}`);
    headers.push([name, value]);
  }
  if (first.includes('\n')) throw new HeadError(status, 'bare LF in the head');
  return [first, headers];
}

/** Every value of header `name` (case-insensitive). */
export function headerValues(headers: readonly Header[], name: string): string[] {
  const lower = name.toLowerCase();
  return headers.filter(([key]) => key.toLowerCase() === lower).map(([, value]) => value);
}

/** The value of header `name` when the head has exactly one, else undefined (absent, or repeated: which one counts would be ambiguous). */
export function singleHeader(headers: readonly Header[], name: string): string | undefined {
  const values = headerValues(headers, name);
  return values.length === 1 ? values[0] : undefined;
}

/** Whether a comma-separated header (Connection, Upgrade...) lists `token`. */
export function hasToken(headers: readonly Header[], name: string, token: string): boolean {
  return headerValues(headers, name).some((value) => value.split(',').some((item) => item.trim().toLowerCase() === token));
}

/**
 * The body framing of a message (RFC 9112 6.3). Requests without Content-Length or chunked
 * coding have no body; responses to HEAD, 1xx, 204 and 304 have none; other responses
 * without framing run until the app closes.
 */
export function bodyLength(headers: readonly Header[], kind: 'request' | { status: number; requestMethod: string }): BodyLength {
  const bad = kind === 'request' ? 400 : 502;
  if (kind !== 'request' && (kind.requestMethod === 'HEAD' || kind.status < 200 || kind.status === 204 || kind.status === 304)) return { kind: 'none' };
  const encodings = headerValues(headers, 'transfer-encoding')
    .flatMap((value) => value.split(',').map((item) => item.trim().toLowerCase()))
    .filter((item) => item !== '');
  const lengths = headerValues(headers, 'content-length').flatMap((value) => value.split(',').map((item) => item.trim()));
  if (encodings.length > 0) {
    if (lengths.length > 0) throw new HeadError(bad, 'both Transfer-Encoding and Content-Length');
    if (encodings[encodings.length - 1] === 'chunked' && encodings.indexOf('chunked') === encodings.length - 1) return { kind: 'chunked' };
    if (kind === 'request') throw new HeadError(501, `unsupported Transfer-Encoding ${encodings.join(', ')}`);
    return { kind: 'until-close' };
  }
  if (lengths.length > 0) {
    if (!lengths.every((value) => /^\d{1,15}$/.test(value)) || new Set(lengths.map(Number)).size !== 1) throw new HeadError(bad, 'invalid Content-Length');
    const bytes = Number(lengths[0]);
    return bytes === 0 ? { kind: 'none' } : { kind: 'length', bytes };
  }
  return kind === 'request' ? { kind: 'none' } : { kind: 'until-close' };
}
