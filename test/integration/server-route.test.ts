import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { dialCommon, ProxyError } from '../../src/client/index.js';
import { DIRECT_ROUTE, loadGroupFile, parseProxyUrl, type ProxyUrl, type ServerRoute } from '../../src/config/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { connectTo, echoRoundTrip, readAll, sha256, waitForEvent } from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

/*
 * The client's route to the common port when it cannot dial it directly: WebSocket upgrades
 * taken on the common port itself (`transport: ws`, our pinned TLS inside), and proxies that
 * refuse, played by a hand-driven peer on a real loopback socket (the real proxies' runs are in
 * test/e2e/proxies.test.ts).
 */

async function setup(name: string, mux = true) {
  const echo = await startEchoApp();
  const config = makeConfigDir([{ name, secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }], {
    ...(mux ? {} : { extra: { mux: false } }),
  });
  const started = await startServer(config);
  after(async () => {
    await started.server.close();
    await echo.close();
  });
  return { ...started, spec: loadGroupFile(config.groupFile(name)) };
}

function proxy(url: string): ProxyUrl {
  const parsed = parseProxyUrl(url);
  assert.ok(parsed.ok);
  return parsed.value;
}

test('transport ws: control and mux conns upgrade on the common port, TLS pinned inside; echo and half-close cross', { timeout: 20_000 }, async () => {
  const { events, port, fingerprint, spec, server } = await setup('ws-direct');
  const route: ServerRoute = { ...DIRECT_ROUTE, transport: 'ws' };
  const { client, events: clientEvents } = startClient(
    spec,
    { port, fingerprint: fingerprint! },
    { transport: { kind: 'tls', fingerprint: fingerprint!, route } },
  );
  after(() => client.stop());
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'login accepted');
  const payload = randomBytes(512 * 1024);
  // echoRoundTrip half-closes after sending: the whole echo back proves the FIN crossed and the other way kept flowing.
  assert.equal(sha256(await echoRoundTrip(activated.apps[0]!.remotePort, payload)), sha256(payload));
  // The conns that came as upgrades are not left counted as handshaking.
  await eventually(() => server.pendingHandshakes === 0, { message: 'no pending handshakes' });
});

test('transport ws with mux: false: single-use work conns go as upgrades too, half-close intact', { timeout: 20_000 }, async () => {
  const { events, port, fingerprint, spec } = await setup('ws-nomux', false);
  const route: ServerRoute = { ...DIRECT_ROUTE, transport: 'ws' };
  const { client } = startClient(spec, { port, fingerprint: fingerprint! }, { transport: { kind: 'tls', fingerprint: fingerprint!, route } });
  after(() => client.stop());
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  for (let i = 0; i < 3; i++) {
    const payload = randomBytes(64 * 1024);
    assert.equal(sha256(await echoRoundTrip(activated.apps[0]!.remotePort, payload)), sha256(payload));
  }
});

test('transport ws: a wrong pin is refused inside the WebSocket as on a direct dial', { timeout: 10_000 }, async () => {
  const { port } = await setup('ws-pin');
  const route: ServerRoute = { ...DIRECT_ROUTE, transport: 'ws' };
  await assert.rejects(
    dialCommon({ host: '127.0.0.1', port }, { kind: 'tls', fingerprint: `sha256:${'ab'.repeat(32)}`, route }, 5000),
    (error: Error & { code?: string }) => error.code === 'TLS_FINGERPRINT_MISMATCH',
  );
});

test('the common port refuses an upgrade on another path with a 404 and never reaches the session code', { timeout: 10_000 }, async () => {
  const { port, events } = await setup('ws-path');
  const route: ServerRoute = { ...DIRECT_ROUTE, transport: 'ws', path: '/elsewhere' };
  await assert.rejects(dialCommon({ host: '127.0.0.1', port }, { kind: 'tls', route }, 5000), /refused the WebSocket upgrade on \/elsewhere: 404 Not Found/);
  const bad = await waitForEvent(events, (e) => e.type === 'bad-peer', 'the refusal reported');
  assert.match(JSON.stringify(bad), /\/elsewhere/);
  // A head with no end is cut at 8 KiB, not buffered.
  const raw = await connectTo(port);
  raw.write(`GET /_ntp/ws HTTP/1.1\r\nX-Long: ${'a'.repeat(16 * 1024)}`);
  raw.on('error', () => {});
  await readAll(raw).catch(() => Buffer.alloc(0));
  await waitForEvent(events, (e) => e.type === 'bad-peer' && JSON.stringify(e).includes('longer than 8192'), 'the long head refused');
});

/** A one-shot fake proxy on loopback: `answer` writes the bytes a real one would, given what it read. */
async function fakeProxy(answer: (socket: Socket) => void): Promise<{ server: Server; url: (scheme: string, creds?: string) => string }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    answer(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => {
    // A proxy that never reads would never see the client's FIN: its conns would hold the close.
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as { port: number };
  return { server, url: (scheme, creds) => `${scheme}://${creds === undefined ? '' : `${creds}@`}127.0.0.1:${port}` };
}

test('a SOCKS5 proxy answering reply 0x02 is named with its reply; an HTTP proxy with its status line', { timeout: 10_000 }, async () => {
  const socks = await fakeProxy((socket) => {
    socket.once('data', () => {
      socket.write(Buffer.from([5, 0])); // no authentication
      socket.once('data', () => socket.end(Buffer.from([5, 2, 0, 1, 0, 0, 0, 0, 0, 0])));
    });
  });
  const route: ServerRoute = { ...DIRECT_ROUTE, proxy: proxy(socks.url('socks5')) };
  await assert.rejects(
    dialCommon({ host: 'commonserver.test', port: 7000 }, { kind: 'tls', route }, 5000),
    (error: Error) =>
      error instanceof ProxyError &&
      error.message === `proxy ${socks.url('socks5')} refused CONNECT to commonserver.test:7000: reply 0x02 (connection not allowed by ruleset)`,
  );
  const http = await fakeProxy((socket) => socket.once('data', () => socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')));
  await assert.rejects(
    dialCommon({ host: '127.0.0.1', port: 7000 }, { kind: 'tls', route: { ...DIRECT_ROUTE, proxy: proxy(http.url('http', 'me:pw')) } }, 5000),
    (error: Error) => error.message === `proxy ${http.url('http', 'me')} refused CONNECT to 127.0.0.1:7000: 403 Forbidden` && !error.message.includes('pw'),
  );
});

test('a proxy that never answers fails the dial at its deadline, and an endless head at 8 KiB', { timeout: 10_000 }, async () => {
  const silent = await fakeProxy(() => {});
  await assert.rejects(
    dialCommon({ host: '127.0.0.1', port: 7000 }, { kind: 'tls', route: { ...DIRECT_ROUTE, proxy: proxy(silent.url('http')) } }, 300),
    /no answer within/,
  );
  const endless = await fakeProxy((socket) => socket.once('data', () => socket.write(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(10_000)}`)));
  await assert.rejects(
    dialCommon({ host: '127.0.0.1', port: 7000 }, { kind: 'tls', route: { ...DIRECT_ROUTE, proxy: proxy(endless.url('http')) } }, 5000),
    /an HTTP head longer than 8192 bytes/,
  );
});

test('bytes a proxy sends right behind its answer reach the layer above (unshifted, not lost)', { timeout: 10_000 }, async () => {
  const early = await fakeProxy((socket) => socket.once('data', () => socket.write('HTTP/1.1 200 Connection established\r\n\r\nEARLY')));
  const socket = await dialCommon({ host: '127.0.0.1', port: 7000 }, { kind: 'plain', route: { ...DIRECT_ROUTE, proxy: proxy(early.url('http')) } }, 5000);
  const first = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
  socket.destroy();
  assert.equal(first.toString(), 'EARLY');
});
