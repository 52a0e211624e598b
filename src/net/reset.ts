import type { Socket } from 'node:net';

/**
 * Ends a connection abruptly (TCP RST), so that the peer's program sees ECONNRESET and can
 * never take a crash, a kill or a forced teardown for a complete stream. Use it wherever a
 * conn ends for any reason other than both streams having really ended.
 *
 * Works on plain sockets and on TLS sockets alike: `resetAndDestroy()` throws
 * ERR_INVALID_HANDLE_TYPE on a TLSSocket, whose handle is the TLS layer, so the reset goes to
 * the TCP socket beneath it. Idempotent; never throws.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  // A socket without an 'error' listener would crash the process on a late error.
  if (socket.listenerCount('error') === 0) socket.on('error', ignore);
  const tcp = tcpBeneath(socket);
  try {
    if (tcp !== undefined && !tcp.destroyed && !tcp.connecting) {
      if (tcp.listenerCount('error') === 0) tcp.on('error', ignore);
      tcp.resetAndDestroy();
    }
  } catch {
    // No TCP handle to reset (already closed, or a pipe): a plain destroy is all that is left.
  }
  socket.destroy();
}

function ignore(): void {}

interface MaybeTlsSocket extends Socket {
  /** Node's TLSSocket keeps the TCP socket it wraps here (client dials and server accepts). */
  _parent?: Socket | null;
  encrypted?: boolean;
}

/** The socket that owns the TCP handle: the socket itself, or the one a TLSSocket wraps. */
function tcpBeneath(socket: Socket): Socket | undefined {
  const candidate = socket as MaybeTlsSocket;
  if (candidate.encrypted !== true) return socket;
  const parent = candidate._parent;
  return parent !== null && parent !== undefined && typeof parent.resetAndDestroy === 'function' ? parent : undefined;
}
