import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { parseHttpHead, readHttpHead } from './head-reader.js';
import { WebSocketError, WebSocketStream } from './websocket-stream.js';

/*
 * The HTTP/1.1 upgrade that opens a WebSocket (RFC 6455 section 4), both ends. Each reads a
 * bounded head (head-reader) and leaves the bytes after it to the frame reader.
 */

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

/**
 * Asks `host` for an upgrade on `path` over a connected `socket` (TCP, or TLS to a reverse
 * proxy) and returns the stream inside. A refusal names `what` and the status line. The caller
 * bounds the wait (it destroys the socket at its deadline, which rejects this).
 */
export async function requestWebSocket(socket: Socket, host: string, path: string, what: string): Promise<WebSocketStream> {
  const key = randomBytes(16).toString('base64');
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const { firstLine, headers } = parseHttpHead(await readHttpHead(socket, what));
  if (!/^HTTP\/1\.1 101\b/.test(firstLine)) throw new WebSocketError(`${what} refused the WebSocket upgrade on ${path}: ${statusOf(firstLine)}`);
  if (headers.get('upgrade')?.toLowerCase() !== 'websocket' || headers.get('sec-websocket-accept') !== acceptKey(key)) {
    throw new WebSocketError(`${what} answered the upgrade on ${path} with a wrong Upgrade or Sec-WebSocket-Accept header (not a WebSocket server?)`);
  }
  return new WebSocketStream(socket, 'client');
}

/** "HTTP/1.1 404 Not Found" → "404 Not Found", bounded for a log line. */
export function statusOf(firstLine: string): string {
  return firstLine.replace(/^HTTP\/\d(?:\.\d)?\s+/, '').slice(0, 200) || 'an empty status line';
}

/**
 * Answers an upgrade request on the server side: the stream inside, or a reason after an HTTP
 * error was sent (and the socket ended). Only `path` with a well-formed WebSocket request is
 * taken; the head is bounded by readHttpHead, the wait by the caller's deadline.
 */
export async function acceptWebSocket(socket: Socket, path: string, what: string): Promise<WebSocketStream | { refused: string }> {
  const { firstLine, headers } = parseHttpHead(await readHttpHead(socket, what));
  const [method, target, version] = firstLine.split(' ');
  const refuse = (status: string, reason: string): { refused: string } => {
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    return { refused: reason };
  };
  if (method !== 'GET' || version !== 'HTTP/1.1') return refuse('400 Bad Request', `not a WebSocket upgrade: ${JSON.stringify(firstLine.slice(0, 100))}`);
  if (target !== path) return refuse('404 Not Found', `an upgrade on ${JSON.stringify(target?.slice(0, 100))}, not on ${path}`);
  const key = headers.get('sec-websocket-key');
  if (headers.get('upgrade')?.toLowerCase() !== 'websocket' || key === undefined || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    return refuse('400 Bad Request', 'an upgrade without Upgrade: websocket or a valid Sec-WebSocket-Key');
  }
  if (headers.get('sec-websocket-version') !== '13') {
    socket.end('HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return { refused: `WebSocket version ${JSON.stringify(headers.get('sec-websocket-version'))}, not 13` };
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
  return new WebSocketStream(socket, 'server');
}
