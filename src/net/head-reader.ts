import type { Duplex } from 'node:stream';
import { headEnd, HeadError, parseRequestHead, parseResponseHead, type RequestHead, type ResponseHead } from './http-head.js';

/*
 * Reading a handshake's bytes off a socket before another layer (TLS, WebSocket framing) takes
 * it over: an HTTP head up to its blank line (parsed by http-head, the vhost's own strict
 * reader), or a fixed count (SOCKS5). Whatever arrived past the handshake is unshifted, so the
 * next layer reads it first: a proxy or a server may send its first bytes in the same segment
 * as its answer.
 */

/**
 * The longest handshake head (a proxy's answer, a WebSocket upgrade) read from a peer: far
 * below the vhost's 64 KiB, since these heads are a few short lines.
 */
export const MAX_HANDSHAKE_HEAD_BYTES = 8 * 1024;

/** A WebSocket upgrade request; rejects with a HeadError naming `what` (400 or 431) when the head is malformed or too long. */
export function readRequestHead(socket: Duplex, what: string, maxBytes = MAX_HANDSHAKE_HEAD_BYTES): Promise<RequestHead> {
  return readHead(socket, what, 400, parseRequestHead, maxBytes);
}

/** A proxy's or a WebSocket server's answer; rejects with a HeadError naming `what` when it is malformed or too long. */
export function readResponseHead(socket: Duplex, what: string, maxBytes = MAX_HANDSHAKE_HEAD_BYTES): Promise<ResponseHead> {
  return readHead(socket, what, 502, parseResponseHead, maxBytes);
}

/**
 * A head ends at its blank line or fails at the first bare LF or CR, as soon as it is seen
 * (headEnd): a peer writing bare LFs is refused at once, not at the deadline. Rejects too when
 * the socket ends or errors first.
 */
async function readHead<T>(socket: Duplex, what: string, bad: 400 | 502, parse: (head: Buffer) => T, maxBytes: number): Promise<T> {
  try {
    return parse(await readUntil(socket, what, (buffered) => headEnd(buffered, bad, maxBytes)));
  } catch (error) {
    if (error instanceof HeadError) throw new HeadError(error.status, `${what}: ${error.message}`);
    throw error;
  }
}

/** Resolves with exactly `count` bytes. */
export function readExactly(socket: Duplex, count: number, what: string): Promise<Buffer> {
  return readUntil(socket, what, (buffered) => (buffered.length >= count ? count : undefined));
}

/**
 * Reads until `complete` returns how many of the buffered bytes make the answer; the rest is
 * unshifted. Read with 'readable' and read(), never 'data': once the listener is gone the
 * socket is back in its initial mode, and the next reader's own 'data' listener starts it
 * (after a pause(), it would wait for a resume() nobody calls).
 */
function readUntil(socket: Duplex, what: string, complete: (buffered: Buffer) => number | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (error: Error | undefined, used = 0): void => {
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onEnd);
      if (error !== undefined) return reject(error);
      if (used < buffered.length) socket.unshift(buffered.subarray(used));
      resolve(buffered.subarray(0, used));
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        let used: number | undefined;
        try {
          used = complete(buffered);
        } catch (error) {
          return finish(error as Error);
        }
        if (used !== undefined) return finish(undefined, used);
      }
    };
    const onEnd = (): void => finish(new Error(`${what}: closed the connection during the handshake`));
    const onError = (error: NodeJS.ErrnoException): void => finish(new Error(`${what}: ${error.code ?? error.message}`));
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
  });
}
