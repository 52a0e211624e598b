import type { Socket } from 'node:net';
import { timer, type Subscription } from 'rxjs';
import { resetSocket } from '../net/index.js';
import { randomId } from '../protocol/index.js';
import type { AppServer } from './app-server.js';

export interface PendingUser {
  readonly pairingId: string;
  readonly app: AppServer;
  readonly userConn: Socket;
  readonly since: number;
  /**
   * The client's WorkConnEnd for this user when it overtook the work conn (it travels on the
   * common conn, the work conn's join on its own connection): applied once joined.
   */
  earlyEnd?: number;
}

/**
 * The held UserConns of one session, each under its own one-time pairing id and deadline.
 * A pairing leaves the table exactly once: taken by its work conn, failed, expired, or
 * dropped because the user went away.
 */
export class Pairings {
  private readonly pending = new Map<string, { user: PendingUser; deadline: Subscription; onUserClose: () => void }>();

  constructor(
    private readonly timeoutMs: number,
    private readonly onExpired: (user: PendingUser) => void,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  hold(app: AppServer, userConn: Socket): PendingUser {
    const user: PendingUser = { pairingId: randomId(), app, userConn, since: Date.now() };
    const deadline = timer(this.timeoutMs).subscribe(() => {
      if (this.remove(user.pairingId)) this.onExpired(user);
    });
    // A user who leaves while waiting frees the slot at once.
    const onUserClose = (): void => {
      this.remove(user.pairingId);
    };
    userConn.once('close', onUserClose);
    this.pending.set(user.pairingId, { user, deadline, onUserClose });
    return user;
  }

  /** Takes the pairing out of the table; undefined if unknown, used, expired or abandoned. */
  take(pairingId: string): PendingUser | undefined {
    const entry = this.pending.get(pairingId);
    if (entry === undefined) return undefined;
    this.remove(pairingId);
    return entry.user;
  }

  peek(pairingId: string): PendingUser | undefined {
    return this.pending.get(pairingId)?.user;
  }

  /** Closes every held user (the group went away). */
  dropAll(): PendingUser[] {
    const users = [...this.pending.values()].map((entry) => entry.user);
    for (const user of users) {
      this.remove(user.pairingId);
      resetSocket(user.userConn);
    }
    return users;
  }

  private remove(pairingId: string): boolean {
    const entry = this.pending.get(pairingId);
    if (entry === undefined) return false;
    this.pending.delete(pairingId);
    entry.deadline.unsubscribe();
    entry.user.userConn.off('close', entry.onUserClose);
    return true;
  }
}
