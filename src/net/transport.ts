import { connect, type Socket } from 'node:net';
import { formatDuration, formatHostPort, type HostPort, type ServerRoute } from '../config/index.js';

/**
 * How the common port is spoken: plain TCP only when asked for explicitly, else TLS. The
 * shapes are shared by both ends; each side sets its TLS up in one module of its own
 * (`server/tls.ts`: key, certificate, listener; `client/tls.ts`: trust, dial, pinning), so
 * the control conn and every work conn go through the same listener and the same dial.
 */
export type ServerTransport =
  | { kind: 'plain' }
  | {
      kind: 'tls';
      cert: Buffer;
      key: Buffer;
      /** Mutual TLS: only clients with a certificate from this CA may connect. */
      clientCa?: Buffer;
      /** Where WebSocket upgrades are taken on the common port (default DEFAULT_WEBSOCKET_PATH). */
      websocketPath?: string;
    };

export type ClientTransport = (
  | { kind: 'plain' }
  | {
      kind: 'tls';
      /** Pinned `sha256:...` of the server's certificate; checked before a byte is sent. */
      fingerprint?: string;
      /** Trust this CA instead of the system's (checked with the usual hostname rules). */
      ca?: Buffer;
      /** For mutual TLS. */
      cert?: Buffer;
      key?: Buffer;
    }
) & {
  /** A proxy and/or a WebSocket carrier between the client and the common port; none: a direct dial. */
  route?: ServerRoute;
};

export const PLAINTEXT: ClientTransport & ServerTransport = Object.freeze({ kind: 'plain' });

/** Opens a plain TCP connection, allowing half-close; rejects on error or after `timeoutMs`. */
export function dialTcp(target: HostPort, timeoutMs: number): Promise<Socket> {
  return connectWithin(connect({ host: target.host, port: target.port, allowHalfOpen: true }), 'connect', target, timeoutMs);
}

/**
 * Resolves with `socket` once it emits `ready` (`connect`, or `secureConnect` for TLS);
 * destroys it and rejects on its first error or after `timeoutMs`. The rejection carries the
 * socket's error code as `tlsCode` so that a TLS dial can tell a trust failure apart.
 */
export function connectWithin(socket: Socket, ready: 'connect' | 'secureConnect', target: HostPort, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // A plain timer, not deadline(): once per work conn and user's dial, set and cleared in 0.5 µs against 2.1 µs (Node 20), and nothing else observes the wait.
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${formatHostPort(target)}: no answer within ${formatDuration(timeoutMs)}`));
    }, timeoutMs);
    const onError = (error: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(Object.assign(new Error(`${formatHostPort(target)}: ${error.code ?? error.message}`), { tlsCode: error.code }));
    };
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    socket.once('error', onError);
  });
}
