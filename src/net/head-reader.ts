import type { Duplex } from 'node:stream';

/*
 * Reading a handshake's bytes off a socket before another layer (TLS, WebSocket framing) takes
 * it over: an HTTP head up to its blank line, or a fixed count (SOCKS5). Whatever arrived past
 * the handshake is unshifted, so the next layer reads it first: a proxy or a server may send
 * its first bytes in the same segment as its answer.
 */

/** The longest HTTP head (status or request line and headers) read from a peer. */
export const MAX_HEAD_BYTES = 8 * 1024;

const BLANK_LINE = Buffer.from('\r\n\r\n');

/**
 * Resolves with the head up to (not including) its blank line, as latin1 text; rejects when
 * the head passes `maxBytes`, the socket ends, or errors. `what` names the peer in errors.
 */
export function readHttpHead(socket: Duplex, what: string, maxBytes = MAX_HEAD_BYTES): Promise<string> {
  return readUntil(socket, what, (buffered) => {
    const end = buffered.indexOf(BLANK_LINE);
    if (end >= 0) return end + BLANK_LINE.length;
    if (buffered.length > maxBytes) throw new Error(`${what}: an HTTP head longer than ${maxBytes} bytes`);
    return undefined;
  }).then((head) => head.subarray(0, head.length - BLANK_LINE.length).toString('latin1'));
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

/** An HTTP head split into its first line and its headers (names lower-cased; the last of a repeated one wins). */
export function parseHttpHead(head: string): { firstLine: string; headers: Map<string, string> } {
  const [firstLine = '', ...lines] = head.split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { firstLine, headers };
}
