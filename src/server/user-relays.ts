import type { Socket } from 'node:net';
import { MuxResetError, resetSocket, WorkConnTracker, writeFrame, type MuxStream } from '../net/index.js';
import { randomId, type Message, type StartWorkConn, type UserAddress } from '../protocol/index.js';
import type { AppServer, RelayHandle } from './app-server.js';
import type { EmitServerEvent } from './events.js';
import { Pairings, type PendingUser } from './pairings.js';
import type { WorkConnPool } from './work-conn-pool.js';

/** A user on a work conn, from the join until the conn is back in the pool or gone. */
interface JoinedWorkConn {
  app: string;
  userConn: Socket;
  workConn: Socket;
  /** The conn's one state machine: the relay fires the streams' events, this group the session's. */
  tracker: WorkConnTracker;
  relay: RelayHandle;
  /** The relay let go of both sockets (released or torn down). */
  relaySettled: boolean;
}

export interface UserRelaysOptions {
  group: string;
  pairingTimeoutMs: number;
  /** The session's idle work conns: a new user takes one, a conn through with its user goes back. */
  pool: WorkConnPool;
  /** Sends a message to the client on the common conn. */
  send: (message: Message) => void;
  emit: EmitServerEvent;
  isActive: () => boolean;
  /** Whether `app` is still open under its name (a reload may have removed or reopened it). */
  isCurrent: (app: AppServer) => boolean;
  /** A stream of the session's mux conn for a user, or undefined when there is none (no mux, or not up yet). */
  openMuxStream: (start: StartWorkConn) => MuxStream | undefined;
}

/**
 * The TCP users of one session and their work conns: a new UserConn is joined to an idle
 * pooled work conn at once, or held (`Pairings`) while the client is asked for one
 * (ReqWorkConn). A joined user is tracked until its work conn is idle again (back to the pool)
 * or gone: WorkConnEnd, WorkConnIdle and a late WorkConnFailed name one by its pairing id.
 */
export class UserRelays {
  private readonly pairings: Pairings;
  /** Users joined to a work conn (pooled or asked for), by pairing id. */
  private readonly joined = new Map<string, JoinedWorkConn>();

  constructor(private readonly options: UserRelaysOptions) {
    this.pairings = new Pairings(options.pairingTimeoutMs, this.onPairingExpired);
  }

  /** UserConns held for a work conn. */
  get heldCount(): number {
    return this.pairings.size;
  }

  /** A new UserConn of the active group: onto an idle pooled work conn now, or held for one. */
  start(app: AppServer, userConn: Socket): void {
    const { group, emit } = this.options;
    const remote = `${userConn.remoteAddress}:${userConn.remotePort}`;
    // One id for the user, whichever way it is served (a held user gets its pairing's own).
    const pairingId = randomId();
    if (this.startOnMux(app, userConn, remote, pairingId)) return;
    const pooled = this.options.pool.take();
    if (pooled !== undefined) return this.startOnPooled(app, userConn, remote, pooled, pairingId);
    const pending = this.pairings.hold(app, userConn);
    emit({ type: 'user-conn-accepted', group, app: app.name, remote, pairingId: pending.pairingId });
    this.options.send({ type: 'ReqWorkConn', app: app.name, pairingId: pending.pairingId, ...userAddressOf(userConn) });
    emit({ type: 'work-conn-requested', group, app: app.name, pairingId: pending.pairingId });
  }

  /** The held user waiting for this pairing id's work conn, if any. */
  heldUser(pairingId: string): PendingUser | undefined {
    return this.pairings.peek(pairingId);
  }

  /** The work conn asked for a held user arrived (its proof already checked): the two are joined. */
  acceptWorkConn(pending: PendingUser, workConn: Socket): void {
    const { group, emit } = this.options;
    this.pairings.take(pending.pairingId);
    if (!this.options.isCurrent(pending.app)) {
      // The app was removed (hot reload) while this user waited: it is not served any more.
      resetSocket(pending.userConn);
      resetSocket(workConn);
      emit({
        type: 'work-conn-failed',
        group,
        app: pending.app.name,
        pairingId: pending.pairingId,
        reason: 'the app was removed from the registry',
      });
      return;
    }
    emit({
      type: 'work-conn-joined',
      group,
      app: pending.app.name,
      pairingId: pending.pairingId,
      waitedMs: Date.now() - pending.since,
    });
    this.join(pending.app, pending.userConn, workConn, pending.pairingId, pending.earlyEnd);
  }

  handleWorkConnEnd(pairingId: string, bytes: number): void {
    const joined = this.joined.get(pairingId);
    if (joined !== undefined) return joined.relay.peerEnded(bytes);
    const pending = this.pairings.peek(pairingId);
    if (pending !== undefined) pending.earlyEnd ??= bytes;
  }

  handleWorkConnIdle(pairingId: string): void {
    const use = this.joined.get(pairingId);
    if (use === undefined) return; // its relay failed meanwhile: the work conn is closed already
    use.tracker.fire({ type: 'peer-idle' });
    this.returnIfIdle(pairingId, use);
  }

  /** The client could not serve a user, joined or held (a pairing id it does not know is ignored). */
  handleWorkConnFailed(pairingId: string, reason: string): void {
    const { group, emit } = this.options;
    const pooled = this.joined.get(pairingId);
    if (pooled !== undefined) {
      // The client's reset of the work conn has normally reset the user already.
      pooled.relay.reset(`the client could not serve it: ${reason}`);
      if (pooled.relaySettled) {
        // Through on this side, failed on the client's: the conn will never be idle there.
        this.joined.delete(pairingId);
        pooled.tracker.fire({ type: 'fault', reason });
        resetSocket(pooled.workConn);
      }
      emit({ type: 'work-conn-failed', group, app: pooled.app, pairingId, reason });
      return;
    }
    const user = this.pairings.take(pairingId);
    if (user === undefined) return; // already expired or abandoned: nothing left to close
    // Held, so nothing of it was read: another member of its pool may serve it instead.
    if (user.app.handOver(user.userConn, reason)) return;
    resetSocket(user.userConn);
    emit({ type: 'work-conn-failed', group, app: user.app.name, pairingId, reason });
  }

  /** The session ended: every joined user's relay is reset, and its work conn closed. */
  resetJoined(reason: string): void {
    for (const use of this.joined.values()) {
      if (use.relaySettled) {
        // Between two users (released here, the client not yet idle): no stream is cut.
        use.tracker.fire({ type: 'close', reason: 'the session ended' });
        use.workConn.destroy();
      } else use.relay.reset(reason);
    }
    this.joined.clear();
  }

  /** The session ended: every held user is reset, its pairing failed. */
  resetHeld(reason: string): void {
    for (const user of this.pairings.dropAll()) {
      this.options.emit({ type: 'work-conn-failed', group: this.options.group, app: user.app.name, pairingId: user.pairingId, reason });
    }
  }

  /**
   * Joins a user to an idle pooled work conn at once. The user's first bytes may follow
   * StartWorkConn straight away: the client reads nothing past that frame until it has
   * dialed the app, and if it cannot, it resets the conn, which closes the user.
   */
  private startOnPooled(app: AppServer, userConn: Socket, remote: string, workConn: Socket, pairingId: string): void {
    const { group, emit } = this.options;
    emit({ type: 'user-conn-accepted', group, app: app.name, remote, pairingId });
    // The frame waits for the user's first bytes when they are already in the kernel (a client
    // usually writes as soon as it connects): they are read in the loop's next poll phase, and
    // then both leave in one write, one TLS record, one wakeup of the client. An app that
    // speaks first loses only that turn of the loop.
    workConn.cork();
    writeFrame(workConn, { type: 'StartWorkConn', app: app.name, pairingId, ...userAddressOf(userConn) });
    setImmediate(uncorkAfterNextPoll, workConn);
    emit({ type: 'work-conn-joined', group, app: app.name, pairingId, waitedMs: 0, pooled: true });
    this.join(app, userConn, workConn, pairingId);
  }

  /**
   * Relays a user on a new stream of the session's mux conn, if it has one: the client dials the
   * app when the stream's OPEN arrives, and resets the stream (naming why) if it cannot, which
   * resets the user. Nothing to track beside the relay: the stream carries its own ends.
   */
  private startOnMux(app: AppServer, userConn: Socket, remote: string, pairingId: string): boolean {
    const { group, emit, openMuxStream } = this.options;
    const stream = openMuxStream({ type: 'StartWorkConn', app: app.name, pairingId, ...userAddressOf(userConn) });
    if (stream === undefined) return false;
    emit({ type: 'user-conn-accepted', group, app: app.name, remote, pairingId });
    emit({ type: 'work-conn-joined', group, app: app.name, pairingId, waitedMs: 0, mux: true });
    void app.relayStream(userConn, stream, pairingId).then(({ error }) => {
      // The client's own words, as its WorkConnFailed gives them on a work conn ("local app unreachable: ...").
      if (error instanceof MuxResetError && error.byPeer)
        emit({ type: 'work-conn-failed', group, app: app.name, pairingId, reason: error.peerReason ?? error.message });
    });
    return true;
  }

  /** Relays a user on a work conn, tracked until the conn is idle again (or gone). */
  private join(app: AppServer, userConn: Socket, workConn: Socket, pairingId: string, earlyEnd?: number): void {
    const tracker = new WorkConnTracker();
    const relay = app.relay(userConn, workConn, pairingId, tracker, (bytes) => this.options.send({ type: 'WorkConnEnd', pairingId, bytes }));
    const use: JoinedWorkConn = { app: app.name, userConn, workConn, tracker, relay, relaySettled: false };
    this.joined.set(pairingId, use);
    if (earlyEnd !== undefined) relay.peerEnded(earlyEnd);
    void relay.done.then((result) => {
      use.relaySettled = true;
      if (!result.released) return void this.joined.delete(pairingId);
      this.returnIfIdle(pairingId, use);
    });
  }

  /** Back to the pool once both ends are through here and the client said it is idle too. */
  private returnIfIdle(pairingId: string, use: JoinedWorkConn): void {
    if (use.tracker.state.phase !== 'idle' || !use.relaySettled || !this.joined.delete(pairingId)) return;
    if (this.options.isActive()) this.options.pool.giveBack(use.workConn, pairingId);
    else use.workConn.destroy();
  }

  private readonly onPairingExpired = (user: PendingUser): void => {
    resetSocket(user.userConn);
    this.options.emit({
      type: 'work-conn-failed',
      group: this.options.group,
      app: user.app.name,
      pairingId: user.pairingId,
      reason: `no work conn within ${this.options.pairingTimeoutMs}ms`,
    });
  };
}

/**
 * The user's address and the public address it reached, for the client's PROXY protocol header.
 * Sent for every app: the header is the local app's business, so the client's file decides.
 */
function userAddressOf(userConn: Socket): { user?: UserAddress } {
  const { remoteAddress, remotePort, localAddress, localPort } = userConn;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return {};
  return { user: { remoteAddress, remotePort, localAddress, localPort } };
}

function uncorkAfterNextPoll(socket: Socket): void {
  setImmediate(uncork, socket);
}

function uncork(socket: Socket): void {
  socket.uncork();
}
