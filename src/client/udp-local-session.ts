import createDebug from 'debug';
import type { Socket as UdpSocket } from 'node:dgram';
import { fromEvent, merge } from 'rxjs';
import { formatDuration, formatHostPort, type AppSpec } from '../config/index.js';
import { createUdpSocket, DatagramLink, deadline, MAX_QUEUED_DATAGRAM_SENDS, type DatagramConn } from '../net/index.js';

const debug = createDebug('ntp:client:udp-local-session');

export interface UdpSessionOutcome {
  /** `end`: the server closed the session (idle, app removed); otherwise why it was torn down. */
  reason: string;
  datagramsIn: number;
  datagramsOut: number;
  /** Datagrams this end could not pass on (a full backlog either way). */
  dropped: number;
}

/**
 * One UDP session on the groupclient: its own local socket, connected to the app's target,
 * so the app sees each user as a distinct peer and only the target's replies are taken. It
 * lives as long as the session's work conn: the server ends that when the session is idle.
 */
export class UdpLocalSession {
  private link: DatagramLink | undefined;
  private datagramsIn = 0;
  private datagramsOut = 0;
  private dropped = 0;
  private closed = false;
  private unreachableReported = false;
  private resolveDone!: (outcome: UdpSessionOutcome) => void;
  readonly done = new Promise<UdpSessionOutcome>((resolve) => (this.resolveDone = resolve));

  private constructor(
    private readonly socket: UdpSocket,
    private readonly app: AppSpec,
    private readonly onUnreachable: (reason: string) => void,
  ) {
    socket.on('message', this.onLocalDatagram);
    socket.on('error', this.onLocalError);
  }

  /**
   * Opens the local socket and connects it to the app's target. `onUnreachable`: the first
   * ICMP "port unreachable" of the session (the app is down); its datagrams are lost as UDP's
   * would be, and the session stays, for an app that comes back.
   */
  static open(app: AppSpec, timeoutMs: number, onUnreachable: (reason: string) => void): Promise<UdpLocalSession> {
    const socket = createUdpSocket(app.local.host);
    return new Promise((resolve, reject) => {
      const fail = (error: Error): void => {
        socket.close();
        reject(new Error(`${formatHostPort(app.local)}/udp: ${(error as NodeJS.ErrnoException).code ?? error.message}`));
      };
      // Once per UDP session, not per datagram: the project's deadline, settled by the connect or the close a failure makes.
      deadline(timeoutMs, merge(fromEvent(socket, 'connect'), fromEvent(socket, 'close'))).subscribe(() =>
        fail(new Error(`no address within ${formatDuration(timeoutMs)}`)),
      );
      socket.once('error', fail);
      socket.connect(app.local.port, app.local.host, () => {
        socket.off('error', fail);
        resolve(new UdpLocalSession(socket, app, onUnreachable));
      });
    });
  }

  /** Relays between the local socket and the session's channel (a mux stream or a work conn) until either ends. */
  relay(workConn: DatagramConn): void {
    if (this.closed) return void workConn.destroy();
    this.link = new DatagramLink(workConn, {
      onDatagram: this.onRemoteDatagram,
      onClosed: (how, reason) => this.finish(how === 'end' ? 'end' : `the work conn failed: ${reason}`),
    });
  }

  /** Tears the session down from this side (the client's session ended). */
  close(reason: string): void {
    this.link?.close(false);
    this.finish(reason);
  }

  private readonly onRemoteDatagram = (payload: Buffer): void => {
    if (this.socket.getSendQueueCount() >= MAX_QUEUED_DATAGRAM_SENDS) {
      this.dropped++;
      return;
    }
    this.datagramsIn++;
    // A view into the work conn's read buffer, which Node allocates afresh for every read: it
    // stays untouched until the send completes.
    this.socket.send(payload);
  };

  private readonly onLocalDatagram = (payload: Buffer): void => {
    if (this.link?.send(payload)) this.datagramsOut++;
    else this.dropped++;
  };

  private readonly onLocalError = (error: NodeJS.ErrnoException): void => {
    debug('%s %s/udp: %s', this.app.name, formatHostPort(this.app.local), error.code ?? error.message);
    if (error.code === 'ECONNREFUSED' && !this.unreachableReported) {
      this.unreachableReported = true;
      this.onUnreachable(`${formatHostPort(this.app.local)}/udp: ECONNREFUSED (nothing listens there)`);
    }
  };

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    this.resolveDone({ reason, datagramsIn: this.datagramsIn, datagramsOut: this.datagramsOut, dropped: this.dropped });
  }
}
