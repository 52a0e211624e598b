import createDebug from 'debug';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { timer } from 'rxjs';
import type { GroupSpec, HostPort, VhostConfig } from '../config/index.js';
import { resetSocket } from '../net/index.js';
import { readClientHello } from './client-hello.js';
import { HttpUserConn } from './http-conn.js';
import { VhostRouter, type VhostKind } from './router.js';

const debug = createDebug('ntp:server:vhost');

/** Why an HTTPS user was closed before it reached an app (REFUSED: the app's relay would not take it). */
export const HTTPS_REFUSAL_CODES = ['TIMEOUT', 'CLOSED', 'NOT_TLS', 'NO_SNI', 'UNKNOWN_NAME', 'OFFLINE', 'FORBIDDEN', 'REFUSED'] as const;
export type HttpsRefusalCode = (typeof HTTPS_REFUSAL_CODES)[number];
/** An HTTPS refusal, or the status of an HTTP answer the vhost gave itself (`404`). */
export type VhostRefusalCode = HttpsRefusalCode | `${number}`;

/** What the vhost ports report; the CommonServer turns these into its events. */
export interface VhostObserver {
  /**
   * A user the vhost answered itself (HTTP: `code` is the status, 404, 503...) or closed
   * before routing (HTTPS: unknown name, no SNI, not TLS, too slow; `code` says which).
   */
  onRefused(kind: VhostKind, remote: string, code: VhostRefusalCode, reason: string): void;
}

/**
 * The shared HTTP and HTTPS ports. HTTP conns are read request by request (HttpUserConn);
 * HTTPS conns are read only as far as the ClientHello's server name, then handed whole to
 * the app's relay, TLS untouched: the certificate and its key stay on the private host.
 */
export class VhostServer {
  readonly router: VhostRouter;
  private readonly listeners = new Map<VhostKind, Server>();
  private readonly conns = new Set<Socket>();
  private readonly httpOptions;

  constructor(
    readonly config: VhostConfig,
    private readonly observer: VhostObserver,
  ) {
    this.router = new VhostRouter(config);
    this.httpOptions = {
      router: this.router,
      headersTimeoutMs: config.headersTimeoutMs,
      onRefused: (remote: string, status: number, reason: string) => observer.onRefused('http', remote, `${status}`, reason),
    };
    if (config.http) this.listeners.set('http', this.createListener('http'));
    if (config.https) this.listeners.set('https', this.createListener('https'));
  }

  /** The registry changed: names are routed (or answered as offline) from now on. */
  registryChanged(groups: Iterable<GroupSpec>): void {
    this.router.rebuild(groups);
  }

  private createListener(kind: VhostKind): Server {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: kind === 'https' }, (socket) => {
      socket.on('error', (error) => debug('%s user conn %s: %s', kind, socket.remoteAddress, error.message));
      this.conns.add(socket);
      socket.once('close', () => this.conns.delete(socket));
      socket.setKeepAlive(true, 30_000);
      if (kind === 'http') new HttpUserConn(socket, this.httpOptions);
      else this.routeTls(socket);
    });
    // Accept errors (EMFILE and the like) must not take the process down.
    server.on('error', (error) => debug('%s accept error: %s', kind, error.message));
    return server;
  }

  /** Reads up to the ClientHello's server name, then hands the conn, bytes unread, to its app. */
  private routeTls(socket: Socket): void {
    let seen = Buffer.alloc(0);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const refuse = (code: HttpsRefusalCode, reason: string): void => {
      cleanup();
      this.observer.onRefused('https', remote, code, reason);
      resetSocket(socket);
    };
    const deadline = timer(this.config.headersTimeoutMs).subscribe(() => refuse('TIMEOUT', `no ClientHello within ${this.config.headersTimeoutMs}ms`));
    const onEnd = (): void => refuse('CLOSED', 'closed before its ClientHello');
    const onData = (chunk: Buffer): void => {
      seen = Buffer.concat([seen, chunk]);
      const hello = readClientHello(seen);
      if (hello.kind === 'incomplete') return;
      if (hello.kind === 'invalid') return refuse('NOT_TLS', hello.reason);
      if (hello.serverName === undefined) return refuse('NO_SNI', 'no server name (SNI) in its ClientHello');
      const route = this.router.resolve('https', hello.serverName);
      if (route.kind !== 'live') return refuse(route.kind === 'unknown' ? 'UNKNOWN_NAME' : 'OFFLINE', `${route.kind} name ${hello.serverName}`);
      if (!route.target.admits(socket.remoteAddress)) return refuse('FORBIDDEN', `not in the allow list of ${route.target.label}`);
      cleanup();
      socket.pause();
      // The relay reads the ClientHello again, as if it had never been read: the app's TLS
      // server sees exactly what the user sent (and `bytesRead` already counts it).
      socket.unshift(seen);
      const refusal = route.target.connect(socket);
      if (refusal !== undefined) {
        this.observer.onRefused('https', remote, 'REFUSED', refusal);
        resetSocket(socket);
      }
    };
    const cleanup = (): void => {
      deadline.unsubscribe();
      socket.off('data', onData);
      socket.off('end', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.resume();
  }

  async listen(): Promise<Partial<Record<VhostKind, number>>> {
    const ports: Partial<Record<VhostKind, number>> = {};
    for (const [kind, server] of this.listeners) {
      const bind = this.config[kind] as HostPort;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: bind.host, port: bind.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      ports[kind] = (server.address() as AddressInfo).port;
    }
    return ports;
  }

  /** The bound port of a vhost listener (0 when there is none or it is not listening). */
  port(kind: VhostKind): number {
    const address = this.listeners.get(kind)?.address();
    return address !== null && typeof address === 'object' ? address.port : 0;
  }

  async close(): Promise<void> {
    for (const socket of this.conns) resetSocket(socket);
    await Promise.all(
      [...this.listeners.values()].map((server) => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()))),
    );
  }
}
