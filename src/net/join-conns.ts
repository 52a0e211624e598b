import type { Socket } from 'node:net';

export interface RelayResult {
  /** Bytes read from the outer socket (and so sent towards the inner one). */
  bytesIn: number;
  /** Bytes written to the outer socket. */
  bytesOut: number;
  /** The first error on either side, if the relay ended in one. */
  error?: Error;
}

/**
 * Relays bytes both ways between `outer` (a plain TCP socket: the user conn, or the local
 * app conn) and `inner` (the work conn). The only place in the project that splices sockets.
 *
 * - Backpressure: `pipe` pauses the source while the destination's buffer is full.
 * - Half-close: a FIN on one side becomes `end()` on the other; the reverse direction keeps
 *   flowing. Both sockets must be created with `allowHalfOpen: true`.
 * - An error, or a close that leaves data undeliverable, destroys both.
 * Byte counts come from the outer socket's own counters: nothing runs per chunk.
 */
export function joinConns(outer: Socket, inner: Socket): Promise<RelayResult> {
  return new Promise((resolve) => {
    if (outer.destroyed || inner.destroyed) {
      outer.destroy();
      inner.destroy();
      resolve({ bytesIn: outer.bytesRead, bytesOut: outer.bytesWritten, error: new Error('a side closed before the relay began') });
      return;
    }
    let firstError: Error | undefined;
    let open = 2;

    const onError = (error: Error): void => {
      firstError ??= error;
      outer.destroy();
      inner.destroy();
    };
    const onClose = (closed: Socket, other: Socket) => (): void => {
      // Once both read sides saw EOF, `other` only has to flush what it already holds;
      // otherwise there is data that can no longer be delivered, so tear it down.
      if (!closed.readableEnded || !other.readableEnded) other.destroy();
      if (--open === 0) {
        outer.off('error', onError);
        inner.off('error', onError);
        // Keep a listener: a late error on a closed socket must not crash the process.
        outer.on('error', ignore);
        inner.on('error', ignore);
        resolve({
          bytesIn: outer.bytesRead,
          bytesOut: outer.bytesWritten,
          ...(firstError ? { error: firstError } : {}),
        });
      }
    };

    outer.on('error', onError);
    inner.on('error', onError);
    outer.once('close', onClose(outer, inner));
    inner.once('close', onClose(inner, outer));
    outer.setNoDelay(true);
    inner.setNoDelay(true);
    outer.pipe(inner);
    inner.pipe(outer);
    outer.resume();
    inner.resume();
  });
}

function ignore(): void {}
