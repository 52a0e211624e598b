import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

const awaitingShutdown = new WeakSet<Socket>();

/**
 * Ends a connection abruptly, so that the program at the other end can never take a crash, a
 * kill or a forced teardown for a complete stream.
 *
 * - A plain TCP socket (a UserConn, a LocalAppConn) gets a TCP reset: its peer sees
 *   ECONNRESET. A socket still connecting is reset as soon as its connect completes (a destroy
 *   now would close a conn the kernel may already have set up, with a FIN).
 *   A socket whose FIN is on its way is reset once the FIN is out (see below).
 * - A TLS socket (a control or work conn, whose peer is our own server or client): the TCP
 *   socket beneath it is reset (unless the TLS socket was ended already), then the TLS socket
 *   destroyed. Node cannot reset a TLSSocket
 *   (`resetAndDestroy()` throws ERR_INVALID_HANDLE_TYPE), and a destroyed one reaches its peer
 *   as a clean end of stream (Node reads a TCP FIN without TLS close_notify as one): a
 *   single-use work conn's far end would pass it on to its user as a FIN.
 * - A mux stream (an RST frame) or a vhost VirtualConn (a fault its owner answers for) is reset
 *   by its own `resetAndDestroy`.
 *
 * Idempotent; never throws.
 */
export function resetSocket(socket: Socket | ResettableConn): void {
  if (socket.destroyed) return;
  // A socket without an 'error' listener would crash the process on a late error.
  if (socket.listenerCount('error') === 0) socket.on('error', ignore);
  const plain = (socket as Socket & { encrypted?: boolean }).encrypted !== true;
  if (plain && socket instanceof Socket && mayBeShuttingDown(socket)) {
    // libuv refuses a reset while a shutdown (our FIN) is in flight: Node then reports EINVAL
    // and never closes the handle, so the socket never emits 'close' and its descriptor leaks.
    // The FIN ended a direction that was complete; the reset follows it as soon as it is out.
    socket.pause();
    if (!awaitingShutdown.has(socket)) {
      awaitingShutdown.add(socket);
      socket.once('finish', () => resetSocket(socket));
    }
    return;
  }
  if (!plain) {
    // `_parent`: the TCP socket a TLSSocket was built on (an accepted one; a dialed TLSSocket
    // has none and ends with a destroy). Not once the TLS socket was ended: its shutdown is then
    // in flight on that TCP handle, and a reset beside it leaves the handle open and libuv's
    // loop spinning. That direction ended whole, and the far end's next write meets the closed conn.
    const tcp = (socket as Socket & { _parent?: unknown })._parent;
    if (tcp instanceof Socket && !tcp.destroyed && !socket.writableEnded) {
      // The flag Node's own resetAndDestroy sets: destroying the TLS socket destroys the TCP one
      // beneath it, which then closes with a reset, and Node frees the TLS state only once that
      // TCP socket has closed. Resetting the TCP socket first made the TLS socket's destroy free
      // its TLS state at once, and this code can run inside OpenSSL's SSL_read (a handshake or
      // session-attack callback calls into JavaScript there): the state was freed under it, a
      // use-after-free that crashed the process (test/unit/reset-socket.test.ts, "resetSocket inside OpenSSL").
      (tcp as Socket & { resetAndClosing?: boolean }).resetAndClosing = true;
    }
  } else {
    try {
      socket.resetAndDestroy();
      return;
    } catch {
      // Not a TCP handle (a pipe, or already closed): a plain destroy is all that is left.
    }
  }
  socket.destroy();
}

/** What `resetSocket` takes besides a socket: a conn that resets itself (a mux stream, a VirtualConn). */
export interface ResettableConn extends Duplex {
  resetAndDestroy(): this;
}

/**
 * Ended but not finished, with nothing left to write: the shutdown is scheduled or in flight
 * (a socket still connecting shuts down as soon as it connects). With bytes still queued, the
 * shutdown has not begun and a reset is taken at once.
 */
function mayBeShuttingDown(socket: Socket): boolean {
  return socket.writableEnded && !socket.writableFinished && socket.writableLength === 0;
}

function ignore(): void {}
