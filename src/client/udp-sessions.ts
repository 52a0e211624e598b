import type { Socket } from 'node:net';
import { MuxStream, resetSocket, type DatagramConn } from '../net/index.js';
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
 * The UDP sessions of one client session: each a local socket of its own joined to one
 * channel to the server (a stream of the mux conn, or a single-use work conn) that ends with
 * the session.
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
    const local = await this.openLocal(app!, pairingId, 'asked');
    if (local === undefined) return;
    let workConn: Socket;
    try {
      workConn = await this.options.presentWorkConn(pairingId);
    } catch (error) {
      local.close('the work conn could not be opened');
      return this.options.send({ type: 'WorkConnFailed', pairingId, reason: `work conn unreachable: ${(error as Error).message}` });
    }
    this.start(app!, pairingId, local, workConn, 'asked');
  }

  /**
   * A session the server put on a pooled work conn or a mux stream (StartWorkConn, protocol
   * udp). One that cannot be served is reset: a stream's RST says why, a work conn's
   * WorkConnFailed does.
   */
  async serveOn(app: AppSpec | undefined, appName: string, pairingId: string, conn: DatagramConn, how: 'mux' | 'pooled'): Promise<void> {
    const refuse = (reason: string): void => {
      if (conn instanceof MuxStream) return void conn.resetAndDestroy(reason);
      resetSocket(conn);
      this.options.send({ type: 'WorkConnFailed', pairingId, reason });
    };
    const refusal = this.refusal(app, appName);
    if (refusal !== undefined) return refuse(refusal);
    // The conn stays paused meanwhile: datagrams that follow StartWorkConn wait in it.
    const local = await this.openLocal(app!, pairingId, how, refuse);
    if (local !== undefined) this.start(app!, pairingId, local, conn, how);
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

  /** The local socket; when it cannot be opened, `refuse` (or a WorkConnFailed) says why. */
  private async openLocal(
    app: AppSpec,
    pairingId: string,
    how: 'mux' | 'pooled' | 'asked',
    refuse = (reason: string): void => this.options.send({ type: 'WorkConnFailed', pairingId, reason }),
  ): Promise<UdpLocalSession | undefined> {
    const { emit, dialTimeoutMs } = this.options;
    emit({ type: 'work-conn-requested', app: app.name, pairingId, ...kindOf(how) });
    try {
      return await UdpLocalSession.open(app, dialTimeoutMs, (reason) =>
        emit({ type: 'local-dial-failed', app: app.name, target: `${app.local.host}:${app.local.port}/udp`, reason }),
      );
    } catch (error) {
      const reason = (error as Error).message;
      emit({ type: 'local-dial-failed', app: app.name, target: `${app.local.host}:${app.local.port}/udp`, reason });
      refuse(`local app unreachable: ${reason}`);
      return undefined;
    }
  }

  private start(app: AppSpec, pairingId: string, local: UdpLocalSession, workConn: DatagramConn, how: 'mux' | 'pooled' | 'asked'): void {
    if (this.closedWith !== undefined) {
      local.close(this.closedWith);
      return resetSocket(workConn);
    }
    this.live.set(pairingId, local);
    local.relay(workConn);
    this.options.emit({ type: 'udp-session-opened', app: app.name, pairingId, ...kindOf(how) });
    void local.done.then((outcome) => {
      this.live.delete(pairingId);
      this.options.emit({ type: 'udp-session-closed', app: app.name, pairingId, ...outcome });
    });
  }
}

function kindOf(how: 'mux' | 'pooled' | 'asked'): { pooled: boolean; mux?: boolean } {
  return { pooled: how === 'pooled', ...(how === 'mux' ? { mux: true } : {}) };
}
