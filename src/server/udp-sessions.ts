import type { Socket } from 'node:net';
import { timer, type Subscription } from 'rxjs';
import { writeFrame } from '../net/index.js';
import type { Message } from '../protocol/index.js';
import type { UdpAppServer } from './udp-app-server.js';
import type { UdpUserSession } from './udp-user-session.js';
import type { EmitServerEvent } from './events.js';

interface Tracked {
  app: UdpAppServer;
  session: UdpUserSession;
  /** Set while the session waits for a work conn asked for with ReqWorkConn. */
  deadline?: Subscription;
}

export interface UdpSessionsOptions {
  group: string;
  pairingTimeoutMs: number;
  /** An idle pooled work conn, or undefined when the pool is empty. */
  takePooled: () => Socket | undefined;
  send: (message: Message) => void;
  emit: EmitServerEvent;
}

/**
 * The UDP sessions of one group session, by pairing id: each is given a pooled work conn at
 * once (StartWorkConn with `protocol: udp`), or asks the client for one (ReqWorkConn) and
 * waits for it under the pairing deadline. Kept apart from the TCP pairings: a session has no
 * socket of its own to hold, and it is closed, not reset, when nothing comes.
 */
export class UdpSessions {
  private readonly tracked = new Map<string, Tracked>();

  constructor(private readonly options: UdpSessionsOptions) {}

  /** A new session of `app`: put on a work conn now, or once the client opens one. */
  start(app: UdpAppServer, session: UdpUserSession): void {
    const { group, emit, send } = this.options;
    const entry: Tracked = { app, session };
    this.tracked.set(session.pairingId, entry);
    const pooled = this.options.takePooled();
    emit({ type: 'udp-session-opened', group, app: app.name, peer: session.peer, pairingId: session.pairingId, pooled: pooled !== undefined });
    if (pooled !== undefined) {
      writeFrame(pooled, { type: 'StartWorkConn', app: app.name, pairingId: session.pairingId, protocol: 'udp' });
      return session.attach(pooled);
    }
    entry.deadline = timer(this.options.pairingTimeoutMs).subscribe(() => {
      this.forget(session.pairingId);
      session.close(false, `no work conn within ${this.options.pairingTimeoutMs}ms`);
      emit({ type: 'work-conn-failed', group, app: app.name, pairingId: session.pairingId, reason: `no work conn within ${this.options.pairingTimeoutMs}ms` });
    });
    send({ type: 'ReqWorkConn', app: app.name, pairingId: session.pairingId, protocol: 'udp' });
    emit({ type: 'work-conn-requested', group, app: app.name, pairingId: session.pairingId });
  }

  /** Whether `pairingId` names a session still waiting for its work conn. */
  isWaiting(pairingId: string): boolean {
    return this.tracked.get(pairingId)?.deadline !== undefined;
  }

  /** The work conn asked for arrived (its proof already checked). */
  join(pairingId: string, workConn: Socket, appStillOpen: (app: UdpAppServer) => boolean): void {
    const entry = this.tracked.get(pairingId)!;
    entry.deadline?.unsubscribe();
    delete entry.deadline;
    if (!appStillOpen(entry.app)) {
      this.forget(pairingId);
      workConn.destroy();
      return entry.session.close(false, 'the app was removed from the registry');
    }
    entry.session.attach(workConn);
  }

  /** The client could not serve a session: it ends here. The app's name if it was ours. */
  failed(pairingId: string, reason: string): string | undefined {
    const entry = this.tracked.get(pairingId);
    if (entry === undefined) return undefined;
    this.forget(pairingId);
    entry.session.close(false, `the client could not serve it: ${reason}`);
    return entry.app.name;
  }

  /** A session that ended (idle, its conn gone, its app closed) is no longer tracked. */
  forget(pairingId: string): void {
    this.tracked.get(pairingId)?.deadline?.unsubscribe();
    this.tracked.delete(pairingId);
  }

  /** The group session ended: every session still waiting is closed (the apps close the others). */
  closeAll(reason: string): void {
    for (const { session } of [...this.tracked.values()]) session.close(false, reason);
    for (const id of [...this.tracked.keys()]) this.forget(id);
  }
}
