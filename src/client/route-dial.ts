import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { Subject } from 'rxjs';
import { formatDuration, formatHostPort, formatProxy, type HostPort, type ServerRoute } from '../config/index.js';
import { connectWithin, deadline, dialTcp } from '../net/index.js';
import { requestWebSocket } from '../net/websocket-upgrade.js';
import { proxyHandshake } from './proxy-handshake.js';

/**
 * The byte stream our TLS runs in when the route is not a direct dial: a TCP conn to the proxy
 * (or to `target`), the proxy's tunnel to `target`, then for ws / wss the WebSocket upgrade
 * (wss: inside a TLS conn checked against the system's CAs: a reverse proxy's certificate, not
 * ours). All of it within `timeoutMs`; a failure names the step and the peer that refused.
 */
export async function dialRoute(target: HostPort, route: ServerRoute, timeoutMs: number): Promise<Socket | Duplex> {
  const started = Date.now();
  const left = (): number => Math.max(1, timeoutMs - (Date.now() - started));
  const first = route.proxy?.address ?? target;
  const tcp = await dialTcp(first, timeoutMs).catch((error: Error) => {
    throw route.proxy === undefined ? error : new Error(`proxy ${formatProxy(route.proxy)}: ${error.message}`);
  });
  let socket = tcp;
  // One deadline over the steps: each read below fails when the socket is destroyed under it.
  let timedOut = false;
  const settled$ = new Subject<void>();
  deadline(left(), settled$).subscribe(() => {
    timedOut = true;
    socket.destroy();
    tcp.destroy();
  });
  try {
    if (route.proxy !== undefined) await proxyHandshake(socket, route.proxy, target);
    if (route.transport === 'tcp') return socket;
    if (route.transport === 'wss') {
      socket = await connectWithin(
        tlsConnect({ socket, host: target.host, ...(/^[\d.]+$|:/.test(target.host) ? {} : { servername: target.host }) }),
        'secureConnect',
        target,
        left(),
      ).catch((error: Error) => {
        throw new Error(`${error.message} (wss: the TLS of the reverse proxy in front of the server, checked against the system's CAs)`);
      });
    }
    return await requestWebSocket(socket, formatHostPort(target), route.path, formatHostPort(target));
  } catch (error) {
    socket.destroy();
    tcp.destroy();
    if (timedOut) throw new Error(`${formatHostPort(target)}: no answer within ${formatDuration(timeoutMs)} (${describeRoute(route)})`);
    throw error;
  } finally {
    settled$.next();
    settled$.complete();
  }
}

/** The route in words for a log line (never a proxy's password). */
export function describeRoute(route: ServerRoute): string {
  const carrier = route.transport === 'tcp' ? 'tcp' : `${route.transport} ${route.path}`;
  return route.proxy === undefined ? carrier : `${carrier} through ${formatProxy(route.proxy)}`;
}
