import { Socket } from 'node:net';

const awaitingShutdown = new WeakSet<Socket>();

/**
 * Ends a connection abruptly, so that the program at the other end can never take a crash, a
 * kill or a forced teardown for a complete stream.
 *
 * - A plain TCP socket (a UserConn, a LocalAppConn) gets a TCP reset: its peer sees
 *   ECONNRESET. A socket still connecting is reset as soon as its connect completes (a destroy
 *   now would close a conn the kernel may already have set up, with a FIN).
 *   A socket whose FIN is on its way is reset once the FIN is out (see below).
 * - A TLS socket (a control or work conn, whose peer is our own server or client) is destroyed.
 *   Node cannot reset a TLSSocket (`resetAndDestroy()` throws ERR_INVALID_HANDLE_TYPE), and
 *   resetting the TCP socket beneath it while the TLS layer still writes crashes the process.
 *   None is needed: the far end takes a work conn that ends without its WorkConnEnd for a
 *   crash and resets its own user or app conn.
 *
 * Idempotent; never throws.
 */
export function resetSocket(socket: Socket): void {
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
  if (plain) {
    try {
      socket.resetAndDestroy();
      return;
    } catch {
      // Not a TCP handle (a pipe, or already closed): a plain destroy is all that is left.
    }
  }
  socket.destroy();
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
