import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** A real local app behind the tunnel, listening on 127.0.0.1 with an OS-chosen port. */
export interface TestApp {
  port: number;
  /** Every connection the app has accepted so far. */
  accepted: number;
  close(): Promise<void>;
}

async function listen(server: Server, sockets: Set<Socket>, port = 0): Promise<TestApp> {
  const app: TestApp = {
    port: 0,
    accepted: 0,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  server.on('connection', (socket) => {
    app.accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  app.port = (server.address() as AddressInfo).port;
  return app;
}

/** Echoes every byte; a FIN from the peer is answered with a FIN once the echo is flushed. */
export function startEchoApp(): Promise<TestApp> {
  const sockets = new Set<Socket>();
  return listen(
    createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket)),
    sockets,
  );
}

/**
 * Server-speaks-first: writes `banner` on connect before reading anything, then echoes. `port`
 * (default: chosen by the OS) lets a test restart an app where it was.
 */
export function startBannerApp(banner: string, port = 0): Promise<TestApp> {
  const sockets = new Set<Socket>();
  return listen(
    createServer({ allowHalfOpen: true }, (socket) => {
      socket.write(banner);
      socket.pipe(socket);
    }),
    sockets,
    port,
  );
}

/** Runs `handler` for each connection (for bespoke apps: sinks, sources, half-close checks). */
export function startApp(handler: (socket: Socket) => void): Promise<TestApp> {
  const sockets = new Set<Socket>();
  return listen(createServer({ allowHalfOpen: true }, handler), sockets);
}

/** A port that was free a moment ago and has nobody listening (for "local app down"). */
export async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
