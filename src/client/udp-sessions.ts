import type { Socket } from 'node:net';
import { resetSocket } from '../net/index.js';
import type { AppSpec } from '../config/index.js';
import type { Message } from '../protocol/index.js';
import type { EmitClientEvent } from './events.js';
import { UdpLocalSession } from './udp-local-session.js';

export interface ClientUdpSessionsOptions {
  emit: EmitClientEvent;
  send: (message: Message) => void;
  dialTimeoutMs: number;
  /** Opens a work conn that presents `pairingId` (a session asked for with ReqWorkConn). */
  presentWorkConn: (pairingId: string) => Promise<Socket>;
}

/**
 * The UDP sessions of one client session: each a local socket of its own joined to one work
 * conn. Kept apart from the TCP relays, whose work conns go back to the pool: a UDP session's
 * work conn ends with the session.
 */
export class ClientUdpSessions {
  private readonly live = new Map<string, UdpLocalSession>();
  private closedWith: string | undefined;

  constructor(private readonly options: ClientUdpSessionsOptions) {}

  get size(): number {
    return this.live.size;
  }

  /**
   * A session the server asked for (ReqWorkConn, protocol udp): the local socket first, so an
   * app the host cannot address is reported before anything is opened on the server.
   */
  async serveRequested(app: AppSpec | undefined, appName: string, pairingId: string): Promise<void> {
    const refusal = this.refusal(app, appName);
    if (refusal !== undefined) return this.options.send({ type: 'WorkConnFailed', pairingId, reason: refusal });
    const local = await this.openLocal(app!, pairingId);
    if (local === undefined) return;
    let workConn: Socket;
    try {
      workConn = await this.options.presentWorkConn(pairingId);
    } catch (error) {
      local.close('the work conn could not be opened');
      return this.options.send({ type: 'WorkConnFailed', pairingId, reason: `work conn unreachable: ${(error as Error).message}` });
    }
    this.start(app!, pairingId, local, workConn, false);
  }

  /** A session the server put on a pooled work conn (StartWorkConn, protocol udp). */
  async servePooled(app: AppSpec | undefined, appName: string, pairingId: string, workConn: Socket): Promise<void> {
    const fail = (reason: string): void => {
      resetSocket(workConn);
      this.options.send({ type: 'WorkConnFailed', pairingId, reason });
    };
    const refusal = this.refusal(app, appName);
    if (refusal !== undefined) return fail(refusal);
    // The work conn stays paused meanwhile: datagrams that follow StartWorkConn wait in it.
    const local = await this.openLocal(app!, pairingId, () => resetSocket(workConn));
    if (local !== undefined) this.start(app!, pairingId, local, workConn, true);
  }

  /** The client's session ended: every UDP session is torn down, and any still opening. */
  closeAll(reason: string): void {
    this.closedWith = reason;
    for (const session of this.live.values()) session.close(reason);
    this.live.clear();
  }

  private refusal(app: AppSpec | undefined, appName: string): string | undefined {
    if (app === undefined) return `app "${appName}" is not in the client's group file`;
    if (app.type !== 'udp') return `app "${appName}" is a TCP app in the client's group file, the server asked for UDP`;
    return undefined;
  }

  private async openLocal(app: AppSpec, pairingId: string, beforeReport?: () => void): Promise<UdpLocalSession | undefined> {
    const { emit, send, dialTimeoutMs } = this.options;
    emit({ type: 'work-conn-requested', app: app.name, pairingId, pooled: beforeReport !== undefined });
    try {
      return await UdpLocalSession.open(app, dialTimeoutMs, (reason) =>
        emit({ type: 'local-dial-failed', app: app.name, target: `${app.local.host}:${app.local.port}/udp`, reason }),
      );
    } catch (error) {
      const reason = (error as Error).message;
      emit({ type: 'local-dial-failed', app: app.name, target: `${app.local.host}:${app.local.port}/udp`, reason });
      beforeReport?.();
      send({ type: 'WorkConnFailed', pairingId, reason: `local app unreachable: ${reason}` });
      return undefined;
    }
  }

  private start(app: AppSpec, pairingId: string, local: UdpLocalSession, workConn: Socket, pooled: boolean): void {
    if (this.closedWith !== undefined) {
      local.close(this.closedWith);
      return resetSocket(workConn);
    }
    this.live.set(pairingId, local);
    local.relay(workConn);
    this.options.emit({ type: 'udp-session-opened', app: app.name, pairingId, pooled });
    void local.done.then((outcome) => {
      this.live.delete(pairingId);
      this.options.emit({ type: 'udp-session-closed', app: app.name, pairingId, ...outcome });
    });
  }
}
