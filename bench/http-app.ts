/**
 * The web app of the HTTP figure, in a process of its own: a small keep-alive answer per
 * request, as a typical API or page fragment. Prints "listening PORT".
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const body = Buffer.from(JSON.stringify({ ok: true, message: 'hello from the private host', padding: 'x'.repeat(200) }));
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(`listening ${(server.address() as AddressInfo).port}`));
