import type { Socket } from 'node:net';
import { joinConns, MuxResetError, peerOf, resetSocket, writeFrame, type MuxStream, type RelayConn } from '../../net/index.js';
import { protocolMark } from '../../config/index.js';
import { randomId, type Message, type StartWorkConn, type UserAddress } from '../../protocol/index.js';
import type { AppServer, UserConn } from '../public/app-server.js';
import type { EmitServerEvent } from '../events.js';
import { PairingFailed, type Pairings } from './pairings.js';
import type { WorkConnPool } from './work-conn-pool.js';
import { visitorOf } from './visitor-conn.js';

/** What serving a user needs from its session. */
export interface UserSessionContext {
  group: string;
  pairings: Pairings;
  /** Single-use work conns opened ahead of users (`mux: false`, or a session whose mux conn is not up). */
  pool: WorkConnPool;
  /** Sends a message to the client on the common conn. */
  send: (message: Message) => void;
  emit: EmitServerEvent;
  /** Whether `app` is still open under its name (a reload may have removed or reopened it). */
  isCurrent: (app: AppServer) => boolean;
  /** A stream of the session's mux conn, or undefined while there is none (no mux, or not up yet). */
  openMuxStream: (start: StartWorkConn) => MuxStream | undefined;
}

/** How a user reaches the client: a stream of the mux conn, or a single-use work conn. */
interface Channel {
  conn: RelayConn;
  how: 'mux' | 'pooled' | 'asked';
}

/**
 * Serves one user of a TCP app from its admission to its record, top to bottom: a channel to
 * the client (a mux stream, else a pooled work conn, else one asked for with ReqWorkConn and
 * awaited under the pairing deadline), the relay, then the user's bytes and events. Every
 * event and counter of a user comes from here.
 */
export async function serveUser(context: UserSessionContext, app: AppServer, userConn: UserConn): Promise<void> {
  const { group, emit } = context;
  const pairingId = randomId();
  const visitor = visitorOf(userConn);
  const label = visitor === undefined ? {} : { visitor };
  emit({ type: 'user-conn-accepted', group, app: app.name, remote: peerOf(userConn), pairingId, ...label });
  const since = Date.now();
  // A private udp app's users are visitors whose streams carry datagram frames: the client serves them as UDP sessions.
  const start: StartWorkConn = { type: 'StartWorkConn', app: app.name, pairingId, ...protocolMark(app.spec), ...userAddressOf(userConn), ...label };
  let channel: Channel;
  try {
    channel = await openChannel(context, app, userConn, start);
  } catch (error) {
    const failed = error as PairingFailed;
    if (failed.cancelled) return; // the user left while it waited: nothing to close, nothing to report
    // Held, so nothing of it was read: another member of its pool may serve it instead.
    if (failed.byClient && app.handOver(userConn, failed.message)) return;
    resetSocket(userConn);
    emit({ type: 'work-conn-failed', group, app: app.name, pairingId, reason: failed.message });
    return;
  }
  const how = channel.how === 'asked' ? {} : { [channel.how]: true };
  emit({ type: 'work-conn-joined', group, app: app.name, pairingId, waitedMs: Date.now() - since, ...how });

  const started = Date.now();
  app.relayStarted(userConn);
  const result = await joinConns(userConn, channel.conn, app.relayOptions());
  app.relayEnded(userConn);
  const { bytesIn, bytesOut, error } = result;
  emit({
    type: 'conn-closed',
    group,
    app: app.name,
    pairingId,
    bytesIn,
    bytesOut,
    durationMs: Date.now() - started,
    ...(error ? { error: error.message } : {}),
  });
  // The client's own words when it could not serve the user (its RST says why: "local app unreachable: ...").
  if (error instanceof MuxResetError && error.byPeer)
    emit({ type: 'work-conn-failed', group, app: app.name, pairingId, reason: error.peerReason ?? error.message });
}

async function openChannel(context: UserSessionContext, app: AppServer, userConn: UserConn, start: StartWorkConn): Promise<Channel> {
  const stream = context.openMuxStream(start);
  // Refused at once (the cap of streams, no ids left): the user takes a single-use work conn, as
  // one who comes before the mux conn is up does.
  if (stream !== undefined && !stream.destroyed) return { conn: stream, how: 'mux' };
  const { group, emit, send, pairings } = context;
  const { pairingId } = start;
  const pooled = context.pool.take();
  if (pooled !== undefined) {
    startOnPooled(pooled, start);
    // The client resets the conn when it cannot dial the app, and says why on the control conn:
    // that word may come after the reset ended the relay, so it is awaited under the deadline.
    pairings.expect(pairingId, {
      onWorkConn: (conn) => conn.destroy(),
      onFailed: (reason, byClient) => {
        if (!byClient) return;
        resetSocket(userConn);
        emit({ type: 'work-conn-failed', group, app: app.name, pairingId, reason });
      },
    });
    return { conn: pooled, how: 'pooled' };
  }
  const pairing = pairings.wait(pairingId);
  // A user who leaves while waiting frees its pairing at once.
  userConn.once('close', pairing.cancel);
  send({ type: 'ReqWorkConn', app: app.name, pairingId, ...(start.protocol ? { protocol: start.protocol } : {}), ...(start.user ? { user: start.user } : {}) });
  emit({ type: 'work-conn-requested', group, app: app.name, pairingId });
  let workConn: Socket;
  try {
    workConn = await pairing.conn;
  } finally {
    userConn.off('close', pairing.cancel);
  }
  if (!context.isCurrent(app)) {
    // The app was removed (hot reload) while this user waited: it is not served any more.
    resetSocket(workConn);
    throw new PairingFailed('the app was removed from the registry', false);
  }
  return { conn: workConn, how: 'asked' };
}

/**
 * Tells an idle pooled work conn whose user it carries. The user's first bytes may follow at
 * once: the client reads nothing past the frame until it has dialed the app, and if it cannot,
 * it resets the conn, which resets the user. The frame waits for those first bytes when they
 * are already in the kernel (a client usually writes as soon as it connects): they are read in
 * the loop's next poll phase, and then both leave in one write, one TLS record, one wakeup of
 * the client. An app that speaks first loses only that turn of the loop.
 */
function startOnPooled(workConn: Socket, start: StartWorkConn): void {
  workConn.cork();
  writeFrame(workConn, start);
  setImmediate(uncorkAfterNextPoll, workConn);
}

/**
 * The user's address and the public address it reached, for the client's PROXY protocol header.
 * Sent for every app: the header is the local app's business, so the client's file decides.
 * A VirtualConn has no local address of its own: none is sent for it.
 */
function userAddressOf(userConn: UserConn): { user?: UserAddress } {
  const { remoteAddress, remotePort } = userConn;
  const { localAddress, localPort } = userConn as Partial<Socket>;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return {};
  return { user: { remoteAddress, remotePort, localAddress, localPort } };
}

function uncorkAfterNextPoll(socket: Socket): void {
  setImmediate(uncork, socket);
}

function uncork(socket: Socket): void {
  socket.uncork();
}
