import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { readRequestHead, readResponseHead } from './head-reader.js';
import { HeadError, singleHeader, type RequestHead, type ResponseHead } from './http-head.js';
import { WebSocketError, WebSocketStream } from './websocket-stream.js';

/*
 * The HTTP/1.1 upgrade that opens a WebSocket (RFC 6455 section 4), both ends. Each reads a
 * bounded head (head-reader, parsed as strictly as the vhost's) and leaves the bytes after it
 * to the frame reader. A header the upgrade depends on must appear once: of two keys or two
 * accept values, which one a reverse proxy between us acted on would be anyone's guess.
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
  let answer: ResponseHead;
  try {
    answer = await readResponseHead(socket, what);
  } catch (error) {
    if (error instanceof HeadError) throw new WebSocketError(`${error.message} (its answer to the WebSocket upgrade on ${path})`, { cause: error });
    throw error;
  }
  if (answer.status !== 101 || answer.minor !== 1) throw new WebSocketError(`${what} refused the WebSocket upgrade on ${path}: ${statusOf(answer)}`);
  const { headers } = answer;
  if (singleHeader(headers, 'upgrade')?.toLowerCase() !== 'websocket' || singleHeader(headers, 'sec-websocket-accept') !== acceptKey(key)) {
    throw new WebSocketError(`${what} answered the upgrade on ${path} with a wrong Upgrade or Sec-WebSocket-Accept header (not a WebSocket server?)`);
  }
  return new WebSocketStream(socket, 'client');
}

/** "HTTP/1.1 404 Not Found" → "404 Not Found", bounded for a log line. */
export function statusOf({ status, reason }: ResponseHead): string {
  return (reason === '' ? String(status) : `${status} ${reason}`).slice(0, 200);
}

const REFUSAL_STATUS: Record<HeadError['status'], string> = {
  400: '400 Bad Request',
  431: '431 Request Header Fields Too Large',
  501: '501 Not Implemented',
  502: '502 Bad Gateway',
};

/**
 * Answers an upgrade request on the server side: the stream inside, or a reason after an HTTP
 * error was sent (and the socket ended). Only `path` with a well-formed WebSocket request is
 * taken; the head is bounded by readRequestHead (a malformed or oversized one is answered 400
 * or 431), the wait by the caller's deadline.
 */
export async function acceptWebSocket(socket: Socket, path: string, what: string): Promise<WebSocketStream | { refused: string }> {
  const refuse = (status: string, reason: string): { refused: string } => {
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    return { refused: reason };
  };
  let request: RequestHead;
  try {
    request = await readRequestHead(socket, what);
  } catch (error) {
    if (error instanceof HeadError) return refuse(REFUSAL_STATUS[error.status], error.message);
    throw error;
  }
  const { method, target, minor, headers } = request;
  if (method !== 'GET' || minor !== 1) return refuse('400 Bad Request', `not a WebSocket upgrade: ${JSON.stringify(`${method} ${target}`.slice(0, 100))}`);
  if (target !== path) return refuse('404 Not Found', `an upgrade on ${JSON.stringify(target.slice(0, 100))}, not on ${path}`);
  const key = singleHeader(headers, 'sec-websocket-key');
  if (singleHeader(headers, 'upgrade')?.toLowerCase() !== 'websocket' || key === undefined || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    return refuse('400 Bad Request', 'an upgrade without one Upgrade: websocket and one valid Sec-WebSocket-Key');
  }
  const version = singleHeader(headers, 'sec-websocket-version');
  if (version !== '13') {
    socket.end('HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return { refused: `WebSocket version ${JSON.stringify(version)}, not 13` };
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
  return new WebSocketStream(socket, 'server');
}
