import createDebug from 'debug';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Subject, timer, type Observable } from 'rxjs';
import { formatHostPort, SERVER_DEFAULTS, type GroupSpec, type ServerConfig } from '../config/index.js';
import { ControlChannel, FrameReader, peerOf } from '../net/index.js';
import { ProtocolError, type Hello, type Message, type NewWorkConn } from '../protocol/index.js';
import { AppGroup } from './app-group.js';
import type { ServerEvent } from './events.js';
import { runLogin } from './login.js';

const debug = createDebug('ntp:server:common-server');

export type CommonServerOptions = Pick<
  ServerConfig,
  'bind' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs' | 'pairingTimeoutMs' | 'handshakeTimeoutMs'
> &
  Partial<Pick<ServerConfig, 'workConnPool'>>;

/**
 * The public server. Listens on the common port, where each new connection's first frame
 * decides what it is: Hello opens a control conn (login, then the group is activated),
 * NewWorkConn joins a held UserConn.
 *
 * - `readyGroup`: every group registered (from the groups directory).
 * - `inUseGroup`: the groups whose client is logged in, as activated AppGroups.
 */
export class CommonServer {
  readonly readyGroup = new Map<string, GroupSpec>();
  readonly inUseGroup = new Map<string, AppGroup>();
  private readonly sessions = new Map<string, AppGroup>();
  private readonly events = new Subject<ServerEvent>();
  readonly events$: Observable<ServerEvent> = this.events.asObservable();
  private readonly commonPort: Server;
  private readonly handshaking = new Set<Socket>();
  private closing = false;

  constructor(private readonly options: CommonServerOptions) {
    this.commonPort = createServer({ allowHalfOpen: true }, this.onCommonConn);
    this.commonPort.on('error', (error) => debug('common port error: %s', error.message));
  }

  private readonly emit = (event: ServerEvent): void => {
    debug('%o', event);
    this.events.next(event);
  };

  registerGroup(spec: GroupSpec): void {
    this.readyGroup.set(spec.name, spec);
    this.emit({ type: 'group-registered', group: spec.name, apps: spec.apps.length });
  }

  /** Removes a group from the registry; a live client of it is disconnected. */
  deregisterGroup(name: string): void {
    if (!this.readyGroup.delete(name)) return;
    this.inUseGroup.get(name)?.deactivate('DEREGISTERED', 'the group was removed from the registry', { dropLive: true });
    this.emit({ type: 'group-deregistered', group: name });
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.commonPort.once('error', reject);
      this.commonPort.listen({ host: this.options.bind.host, port: this.options.bind.port }, () => {
        this.commonPort.off('error', reject);
        resolve();
      });
    });
    const address = this.address();
    this.emit({ type: 'listening', address: formatHostPort({ host: address.address, port: address.port }) });
    return address;
  }

  address(): AddressInfo {
    return this.commonPort.address() as AddressInfo;
  }

  /** Tells every client goodbye, closes every port and connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const group of [...this.inUseGroup.values()]) {
      group.deactivate('SHUTDOWN', 'the commonserver is shutting down', { dropLive: true });
    }
    for (const socket of this.handshaking) socket.destroy();
    await new Promise<void>((resolve) => this.commonPort.close(() => resolve()));
    this.events.complete();
  }

  private readonly onCommonConn = (socket: Socket): void => {
    const peer = peerOf(socket);
    socket.on('error', onCommonConnError);
    if (this.closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    this.handshaking.add(socket);

    // Slowloris guard: a connection must finish its login or join within the deadline.
    const deadline = timer(this.options.handshakeTimeoutMs).subscribe(() => {
      this.badPeer(peer, 'HANDSHAKE_TIMEOUT', `no login or join within ${this.options.handshakeTimeoutMs}ms`);
      socket.destroy();
    });
    // Removed once settled: a listener left on a work conn would keep this handshake's state
    // (reader, subscriptions) alive for the conn's whole life, ~1 KB each at 10,000 conns.
    const settled = (): void => {
      socket.off('close', settled);
      deadline.unsubscribe();
      this.handshaking.delete(socket);
    };
    socket.once('close', settled);

    const reader = new FrameReader(socket);
    const firstFrame = reader.messages$.subscribe({
      next: (message: Message) => {
        firstFrame.unsubscribe(); // later frames belong to the login or the relay
        reader.hold();
        if (message.type === 'NewWorkConn') {
          settled();
          reader.detach();
          this.onWorkConn(message, socket, peer);
        } else if (message.type === 'Hello') {
          void this.onControlConn(new ControlChannel(socket, reader), message).finally(settled);
        } else {
          settled();
          this.badPeer(peer, 'UNEXPECTED_MESSAGE', `first frame must be Hello or NewWorkConn, got ${message.type}`);
          socket.destroy();
        }
      },
      error: (error: ProtocolError) => {
        settled();
        this.badPeer(peer, error.code, error.message);
        socket.destroy();
      },
    });
  };

  private async onControlConn(channel: ControlChannel, hello: Hello): Promise<void> {
    this.emit({ type: 'client-connected', group: hello.group, clientId: hello.clientId, remote: channel.peer });
    let outcome;
    try {
      outcome = await runLogin(channel, hello, {
        readyGroup: this.readyGroup,
        liveGroup: (name) => this.inUseGroup.get(name),
      });
    } catch (error) {
      const code = error instanceof ProtocolError ? error.code : 'LOGIN_FAILED';
      this.badPeer(channel.peer, code, `login of group "${hello.group}" failed: ${(error as Error).message}`);
      channel.destroy();
      return;
    }
    if (!outcome.accepted) {
      this.emit({ type: 'login-rejected', group: hello.group, remote: channel.peer, code: outcome.code, reason: outcome.reason });
      channel.send({ type: 'LoginResp', error: { code: outcome.code, reason: outcome.reason } });
      channel.socket.end();
      return;
    }
    if (this.closing || !channel.open) {
      channel.destroy();
      return;
    }
    // Same client id: the old session may look alive but its path can be silently dead.
    // The new, authenticated session wins at once and gets the ports.
    this.inUseGroup.get(hello.group)?.deactivate('TAKEN_OVER', `taken over by a new session of the same client from ${channel.peer}`);

    const group = new AppGroup({
      spec: outcome.spec,
      channel,
      clientId: hello.clientId,
      declaredApps: outcome.login.apps,
      bindHost: this.options.bind.host,
      heartbeatTimeoutMs: this.options.heartbeatTimeoutMs,
      pairingTimeoutMs: this.options.pairingTimeoutMs,
      workConnPool: this.options.workConnPool ?? SERVER_DEFAULTS.workConnPool,
      emit: this.emit,
      events$: this.events$,
      onDeactivated: this.onGroupDeactivated,
    });
    this.inUseGroup.set(group.name, group);
    this.sessions.set(group.sessionId, group);
    const { apps, warnings } = await group.activate();
    if (!group.isActive) return;
    channel.send({
      type: 'LoginResp',
      sessionId: group.sessionId,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.options.heartbeatTimeoutMs,
      apps,
      warnings,
    });
    group.fillPool();
    this.emit({ type: 'group-activated', group: group.name, clientId: group.clientId, remote: channel.peer, apps, warnings });
  }

  private readonly onGroupDeactivated = (group: AppGroup): void => {
    this.sessions.delete(group.sessionId);
    // A takeover may already have put the new session in place.
    if (this.inUseGroup.get(group.name) === group) this.inUseGroup.delete(group.name);
  };

  private onWorkConn(message: NewWorkConn, workConn: Socket, peer: string): void {
    const group = this.sessions.get(message.sessionId);
    const refusal = group === undefined ? 'unknown or ended session' : group.acceptWorkConn(message, workConn);
    if (refusal !== null) {
      this.badPeer(peer, 'BAD_WORK_CONN', `work conn refused: ${refusal}`);
      workConn.destroy();
    }
  }

  private badPeer(remote: string, code: string, reason: string): void {
    this.emit({ type: 'bad-peer', remote, code, reason });
  }
}

// Module-level, so that the listener every conn keeps for its lifetime holds no handshake state.
function onCommonConnError(this: Socket, error: Error): void {
  debug('common conn %s: %s', peerOf(this), error.message);
}
