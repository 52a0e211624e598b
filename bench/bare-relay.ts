/**
 * The bare relay, the bench's yardstick: a few lines that accept, connect and `pipe` both
 * ways, nothing else. Two chained instances have the shape of the tunnel (user → server hop
 * → client hop → app) without any protocol. Run as a child process:
 *   node bare-relay.js plain|tls-out|tls-in TARGET_PORT [CERT_DIR]
 * tls-out dials its target with TLS; tls-in accepts TLS. It prints "listening PORT".
 */
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';

const [mode = 'plain', target = '0', certDir = ''] = process.argv.slice(2);
const port = Number(target);

function splice(a: Socket, b: Socket): void {
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}

function onConn(inbound: Socket): void {
  const outbound =
    mode === 'tls-out' ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' }) : connect({ host: '127.0.0.1', port });
  splice(inbound, outbound);
}

const server =
  mode === 'tls-in'
    ? createTlsServer({ key: readFileSync(join(certDir, 'key.pem')), cert: readFileSync(join(certDir, 'cert.pem')) }, onConn)
    : createServer(onConn);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
