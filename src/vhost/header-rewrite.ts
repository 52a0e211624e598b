import { headerKey, type HeaderRules } from '../config/index.js';
import type { Header, ResponseHead } from '../net/http-head.js';

/**
 * An app's `requestHeaders` / `responseHeaders` applied to a head's lines: the lines named in
 * `remove` or `set` are dropped (names compared as the vhost compares them, `_` read as `-`),
 * then the `set` lines are written at the end. Framing and hop-by-hop lines never change (the
 * config refuses them), so a message ends where the vhost found its end.
 */
export function withHeaderRules(headers: readonly Header[], rules: HeaderRules | undefined): readonly Header[] {
  if (rules === undefined) return headers;
  const dropped = new Set([...rules.remove, ...rules.set.map(([name]) => headerKey(name))]);
  return [...headers.filter(([name]) => !dropped.has(headerKey(name))), ...rules.set];
}

/** Header lines as they go on the wire, each ended by CRLF, then the blank line. */
export function headerLines(headers: readonly Header[]): string {
  return `${headers.map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`;
}

/**
 * A final response's head with the app's `responseHeaders` applied: its status line as the
 * app wrote it, its lines in order. Without rules, the bytes as they came.
 */
export function rewriteResponseHead(bytes: Buffer, head: ResponseHead, rules: HeaderRules | undefined): Buffer {
  if (rules === undefined) return bytes;
  const statusLine = bytes.subarray(0, bytes.indexOf('\r\n') + 2);
  return Buffer.concat([statusLine, Buffer.from(headerLines(withHeaderRules(head.headers, rules)), 'latin1')]);
}
