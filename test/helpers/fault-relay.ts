import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

interface Pair {
  client: Socket;
  upstream: Socket;
  blackholed: boolean;
}

/**
 * A TCP relay in front of a server that can make live connections fail the worst way real
 * paths fail: silently: bytes vanish and nothing closes (a blackhole).
 * Connections accepted after a fault are relayed normally.
 */
export class FaultRelay {
  private readonly server: Server;
  private readonly pairs = new Set<Pair>();
  port = 0;

  private constructor(private readonly targetPort: number) {
    this.server = createServer({ allowHalfOpen: true }, (client) => this.relay(client));
  }

  static async start(targetPort: number): Promise<FaultRelay> {
    const relay = new FaultRelay(targetPort);
    await new Promise<void>((resolve) => relay.server.listen(0, '127.0.0.1', resolve));
    relay.port = (relay.server.address() as AddressInfo).port;
    return relay;
  }

  get liveConnections(): number {
    return this.pairs.size;
  }

  /** Every live connection stops carrying bytes, both ways, and stays open. */
  blackholeAll(): void {
    for (const pair of this.pairs) pair.blackholed = true;
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private relay(client: Socket): void {
    const upstream = connect({ host: '127.0.0.1', port: this.targetPort, allowHalfOpen: true });
    const pair: Pair = { client, upstream, blackholed: false };
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (!pair.blackholed) to.write(chunk);
      });
      from.on('end', () => {
        if (!pair.blackholed) to.end();
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    const teardown = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', teardown);
      socket.on('close', () => {
        if (!pair.blackholed) teardown();
      });
    }
  }
}
