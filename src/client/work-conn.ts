import { connect, type Socket } from 'node:net';
import { formatDuration, formatHostPort, type AppSpec, type HostPort } from '../config/index.js';
import { writeFrame, type ClientTransport } from '../net/index.js';
import { dialCommon } from './tls.js';
import { joinProof, type NewWorkConn } from '../protocol/index.js';

export interface WorkConnRequest {
  server: HostPort;
  transport: ClientTransport;
  sessionId: string;
  pairingId: string;
  secret: string;
  dialTimeoutMs: number;
}

/**
 * Starts dialing an app's local target and returns the socket at once, so that the caller can
 * join it straight away: bytes written meanwhile wait in the socket until the connect
 * completes, which spares the pooled path a turn of the event loop per user. `onFailed` runs
 * synchronously on a failed or timed-out connect, before the relay's own error handling, so
 * the caller can reset its work conn first. The socket is destroyed after it. The caller must
 * give the socket its own 'error' listener (joinConns does) before the connect completes.
 */
export function dialLocalAppEagerly(app: AppSpec, dialTimeoutMs: number, onFailed: (reason: string) => void): Socket {
  const localConn = connect({ host: app.local.host, port: app.local.port, allowHalfOpen: true });
  let settled = false;
  const fail = (reason: string): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    onFailed(reason);
    localConn.destroy();
  };
  // A plain timer, as in connectWithin: once per user's local dial, 0.5 µs set and cleared against deadline()'s 2.1 µs.
  const timer = setTimeout(() => fail(`${formatHostPort(app.local)}: no answer within ${formatDuration(dialTimeoutMs)}`), dialTimeoutMs);
  const onError = (error: NodeJS.ErrnoException): void => fail(`${formatHostPort(app.local)}: ${error.code ?? error.message}`);
  localConn.on('error', onError);
  localConn.once('connect', () => {
    settled = true;
    clearTimeout(timer);
    // The relay's own error handling stays; this one would keep the dial's state alive.
    localConn.off('error', onError);
  });
  return localConn;
}

/**
 * Opens a work conn to the common port (TLS or plain, as the session's transport says) and
 * presents the pairing (a waiting user's, or a pooled conn's): NewWorkConn with the join
 * proof bound to this session.
 */
export async function presentWorkConn(request: WorkConnRequest): Promise<Socket> {
  const workConn = await dialCommon(request.server, request.transport, request.dialTimeoutMs);
  workConn.on('error', ignoreUntilJoined);
  workConn.setNoDelay(true);
  const message: NewWorkConn = {
    type: 'NewWorkConn',
    sessionId: request.sessionId,
    pairingId: request.pairingId,
    proof: joinProof(request.secret, request.sessionId, request.pairingId),
  };
  writeFrame(workConn, message);
  return workConn;
}

// joinConns (or a DatagramLink) installs the real handlers; until then an error just waits to be seen as a close.
function ignoreUntilJoined(): void {}
