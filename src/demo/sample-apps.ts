import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';

/** A small local app for the demo, listening on 127.0.0.1 with an OS-chosen port. */
export interface SampleApp {
  name: string;
  port: number;
  /** What a user should see first, to prove a round trip. */
  describe: string;
  server: Server;
}

async function listen(name: string, describe: string, server: Server): Promise<SampleApp> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { name, describe, server, port: (server.address() as AddressInfo).port };
}

/** Speaks first, like sshd: a banner on connect, then echoes. */
export function bannerApp(name: string, banner: string): Promise<SampleApp> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.write(banner);
    socket.pipe(socket);
  });
  return listen(name, 'banner then echo', server);
}

export function echoApp(name: string): Promise<SampleApp> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  return listen(name, 'echo', server);
}

export function httpApp(name: string, body: string): Promise<SampleApp> {
  const server = createHttpServer((_request, response) => {
    response.setHeader('content-type', 'text/plain');
    response.end(body);
  });
  return listen(name, 'HTTP', server);
}
