import { createSocket, type Socket as UdpSocket } from 'node:dgram';

/** A UDP app on 127.0.0.1: what it received, from whom, and how to stop it. */
export interface UdpTestApp {
  port: number;
  /** Every sender address ("127.0.0.1:41234") the app has seen, in order of first datagram. */
  peers: string[];
  datagrams: number;
  close(): Promise<void>;
}

/**
 * A UDP echo app that answers each datagram with `ADDRESS:PORT|` (the sender as the app sees
 * it) followed by the datagram itself: a reply proves both the payload's way back and which
 * local socket of the groupclient the user's session got.
 */
export async function startUdpEchoApp(port = 0): Promise<UdpTestApp> {
  const socket = createSocket('udp4');
  const app: UdpTestApp = { port: 0, peers: [], datagrams: 0, close: () => closeUdp(socket) };
  const seen = new Set<string>();
  socket.on('message', (payload, from) => {
    const peer = `${from.address}:${from.port}`;
    app.datagrams++;
    if (!seen.has(peer)) {
      seen.add(peer);
      app.peers.push(peer);
    }
    socket.send(Buffer.concat([Buffer.from(`${peer}|`), payload]), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(port, '127.0.0.1', resolve));
  app.port = socket.address().port;
  return app;
}

/** A user's UDP socket on 127.0.0.1, with its replies queued for `next`. */
export class UdpUser {
  private readonly replies: Buffer[] = [];
  private waiter: ((reply: Buffer) => void) | undefined;
  readonly errors: NodeJS.ErrnoException[] = [];

  private constructor(readonly socket: UdpSocket) {
    socket.on('message', (reply) => {
      const waiter = this.waiter;
      this.waiter = undefined;
      if (waiter !== undefined) waiter(reply);
      else this.replies.push(reply);
    });
    socket.on('error', (error) => this.errors.push(error));
  }

  static async open(): Promise<UdpUser> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new UdpUser(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(port: number, payload: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.send(typeof payload === 'string' ? Buffer.from(payload) : payload, port, '127.0.0.1', (error) => (error ? reject(error) : resolve())),
    );
  }

  /** The next reply; rejects after `timeoutMs` (a failure guard: a reply normally comes in milliseconds). */
  next(timeoutMs = 5000): Promise<Buffer> {
    const queued = this.replies.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no UDP reply on port ${this.port} within ${timeoutMs}ms`));
      }, timeoutMs);
      this.waiter = (reply) => {
        clearTimeout(timer);
        resolve(reply);
      };
    });
  }

  /** Sends and waits for one reply. */
  async request(port: number, payload: Buffer | string, timeoutMs = 5000): Promise<Buffer> {
    await this.send(port, payload);
    return this.next(timeoutMs);
  }

  /** Replies received and not yet taken. */
  get queued(): number {
    return this.replies.length;
  }

  close(): Promise<void> {
    return closeUdp(this.socket);
  }
}

/** A UDP port on 127.0.0.1 that was free a moment ago. */
export async function unusedUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await closeUdp(socket);
  return port;
}

function closeUdp(socket: UdpSocket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/** Whether this process can bind UDP 127.0.0.1:port right now (nobody holds it any more). */
export async function canBindUdp(port: number): Promise<boolean> {
  const socket = createSocket('udp4');
  const bound = await new Promise<boolean>((resolve) => {
    socket.once('error', () => resolve(false));
    socket.bind({ port, address: '127.0.0.1', exclusive: true }, () => resolve(true));
  });
  await closeUdp(socket);
  return bound;
}

/**
 * Resolves once a UDP socket connected to 127.0.0.1:port is told that nobody holds the port:
 * the kernel answers a datagram there with an ICMP port unreachable, which a connected socket
 * reads as ECONNREFUSED (an unconnected one, like UdpUser's, is never told). A datagram is sent
 * every 100 ms until then; rejects on a reply or on any other error, or after `timeoutMs`.
 */
export async function expectUdpRefused(port: number, timeoutMs = 3000): Promise<void> {
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, '127.0.0.1', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    await new Promise<void>((resolve, reject) => {
      const probe = setInterval(() => socket.send('anyone there?'), 100);
      const timer = setTimeout(() => finish(new Error(`UDP port ${port}: no ICMP port unreachable within ${timeoutMs}ms`)), timeoutMs);
      const finish = (error?: Error): void => {
        clearInterval(probe);
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      socket.on('error', (error: NodeJS.ErrnoException) => finish(error.code === 'ECONNREFUSED' ? undefined : error));
      socket.once('message', (reply) => finish(new Error(`UDP port ${port} answered: ${reply.toString()}`)));
      socket.send('anyone there?');
    });
  } finally {
    await closeUdp(socket);
  }
}
