import type { Socket } from 'node:net';
import { MuxResetError, writeFrame, type MuxStream } from '../../net/index.js';
import type { Message, StartWorkConn } from '../../protocol/index.js';
import type { EmitServerEvent } from '../events.js';
import type { Pairings } from '../users/pairings.js';
import type { UdpAppServer } from './udp-app-server.js';
import type { UdpUserSession } from './udp-user-session.js';

export interface UdpSessionsOptions {
  group: string;
  pairings: Pairings;
  /** A stream of the session's mux conn, or undefined while there is none. */
  openMuxStream: (start: StartWorkConn) => MuxStream | undefined;
  /** An idle pooled work conn, or undefined when the pool is empty. */
  takePooled: () => Socket | undefined;
  send: (message: Message) => void;
  emit: EmitServerEvent;
  /** Whether `app` is still open under its name (a reload may have removed it while a session waited). */
  isCurrent: (app: UdpAppServer) => boolean;
}

/**
 * Gives each UDP session of one group session its channel to the client, the way a TCP user
 * gets one: a stream of the mux conn when it is up, else a pooled single-use work conn
 * (StartWorkConn with `protocol: udp`), else one asked for (ReqWorkConn) and awaited under the
 * pairing deadline. Either carries the session's datagrams, each in a frame of its own. A
 * session has no socket of its own to hold: it is closed, not reset, when nothing comes.
 */
export class UdpSessions {
  constructor(private readonly options: UdpSessionsOptions) {}

  start(app: UdpAppServer, session: UdpUserSession): void {
    const { group, emit, send, pairings } = this.options;
    const { pairingId } = session;
    const start: StartWorkConn = { type: 'StartWorkConn', app: app.name, pairingId, protocol: 'udp' };
    const stream = this.options.openMuxStream(start);
    const pooled = stream === undefined ? this.options.takePooled() : undefined;
    emit({ type: 'udp-session-opened', group, app: app.name, peer: session.peer, pairingId, pooled: pooled !== undefined, ...(stream ? { mux: true } : {}) });
    if (stream !== undefined) {
      // The client's own words when it cannot serve the session (its RST says why), as its WorkConnFailed gives them on a work conn.
      stream.once('error', (error) => {
        if (error instanceof MuxResetError && error.byPeer)
          emit({ type: 'work-conn-failed', group, app: app.name, pairingId, reason: error.peerReason ?? error.message });
      });
      return session.attach(stream);
    }
    if (pooled !== undefined) {
      writeFrame(pooled, start);
      return session.attach(pooled);
    }
    pairings.expect(pairingId, {
      onWorkConn: (workConn) => {
        if (this.options.isCurrent(app)) return session.attach(workConn);
        workConn.destroy();
        session.close(false, 'the app was removed from the registry');
      },
      onFailed: (reason, byClient) => {
        session.close(false, byClient ? `the client could not serve it: ${reason}` : reason);
        emit({ type: 'work-conn-failed', group, app: app.name, pairingId, reason });
      },
    });
    send({ type: 'ReqWorkConn', app: app.name, pairingId, protocol: 'udp' });
    emit({ type: 'work-conn-requested', group, app: app.name, pairingId });
  }

  /** A session that ended (idle, its app closed) no longer waits for a work conn. */
  forget(pairingId: string): void {
    this.options.pairings.cancel(pairingId);
  }
}
