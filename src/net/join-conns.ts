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
 * - Backpressure: a write the destination cannot take at once pauses the source until the
 *   destination drains (what `pipe` does, per chunk nothing more).
 * - Half-close: a FIN on one side becomes `end()` on the other; the reverse direction keeps
 *   flowing. Both sockets must be created with `allowHalfOpen: true`.
 * - An error, or a close that leaves data undeliverable, destroys both.
 * Byte counts come from the outer socket's own counters: nothing runs per chunk.
 *
 * Not `pipe`: two pipes cost ~3.4 KB of heap per relayed conn in listener closures and pipe
 * state, in each process (10,000 conns: 34 MB). The listeners below are shared by every relay;
 * a socket only points at its peer.
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
    (outer as RelaySocket)[PEER] = inner;
    (inner as RelaySocket)[PEER] = outer;
    for (const socket of [outer, inner]) {
      socket.on('data', forward);
      socket.on('drain', resumePeer);
      socket.on('end', endPeer);
    }
    outer.resume();
    inner.resume();
  });
}

function ignore(): void {}

// One set of listeners for every relay (`this` is the socket that fired): no closures per conn.
const PEER = Symbol('relay peer');
interface RelaySocket extends Socket {
  [PEER]: Socket;
}

function forward(this: RelaySocket, chunk: Buffer): void {
  if (!this[PEER].write(chunk)) this.pause();
}

/** The peer's writes were held up by this socket; they may go on. */
function resumePeer(this: RelaySocket): void {
  this[PEER].resume();
}

function endPeer(this: RelaySocket): void {
  this[PEER].end();
}
