import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { clientTransport } from '../../src/client/index.js';
import { formatProxy, parseGroupFile, parseProxyUrl, YamlFile, type ProxyUrl } from '../../src/config/index.js';
import { encodeFrame, MAX_WEBSOCKET_FRAME_BYTES, WebSocketStream } from '../../src/net/websocket-stream.js';
import { configError } from '../helpers/config-errors.js';
import { readAll, socketPair } from '../helpers/net.js';

/*
 * The route to the server as a host file writes it (`proxy`, `transport`, `path`), and the
 * WebSocket frames that carry our TLS, fed raw bytes on real loopback sockets.
 */

const BASE = 'name: routed\nsecret: routed-secret-long-enough\napps: [{ name: a, local: "127.0.0.1:1", remotePort: 0 }]\n';

function hostFile(extra: string, env: NodeJS.ProcessEnv = {}) {
  return parseGroupFile(YamlFile.parse('/hosts/routed.yaml', BASE + extra), env, { anyFileName: true });
}

test('proxy URLs: both schemes, credentials optional, the password never printed', () => {
  const parsed = parseProxyUrl('socks5://me:p%40ss@proxy.example:1080');
  assert.ok(parsed.ok);
  assert.equal(parsed.value.scheme, 'socks5');
  assert.deepEqual(parsed.value.address, { host: 'proxy.example', port: 1080 });
  assert.equal(parsed.value.username, 'me');
  assert.equal(parsed.value.password?.reveal(), 'p@ss');
  assert.equal(formatProxy(parsed.value), 'socks5://me@proxy.example:1080');
  assert.ok(!inspect(parsed.value).includes('p@ss') && !JSON.stringify(parsed.value).includes('p@ss'));
  assert.ok(parseProxyUrl('http://[::1]:3128').ok);
  for (const bad of ['ftp://h:1', 'http://h', 'http://h:99999', 'socks5://h:1/x/y', 'h:1']) {
    const refused = parseProxyUrl(bad);
    assert.ok(!refused.ok, bad);
    assert.match(refused.problem, /expected http:\/\/\[user:pass@\]HOST:PORT/);
  }
});

test('a host file: proxy with ${VAR}, transport and path; a wrong one names its field', () => {
  const spec = hostFile('proxy: "http://u:${PROXY_PW}@127.0.0.1:3128"\ntransport: wss\npath: /tunnel\n', { PROXY_PW: 'from-env' });
  assert.equal(spec.route?.proxy?.password?.reveal(), 'from-env');
  assert.equal(spec.route?.transport, 'wss');
  assert.equal(spec.route?.path, '/tunnel');
  assert.ok(!inspect(spec).includes('from-env'));
  assert.equal(hostFile('').route, undefined, 'a direct dial has no route');
  assert.equal(hostFile('transport: ws\n').route?.path, '/_ntp/ws');
  assert.equal(configError(() => hostFile('proxy: "http://u:${UNSET_PW}@h:1"\n')).field, 'proxy');
  assert.equal(configError(() => hostFile('proxy: "gopher://h:1"\n')).field, 'proxy');
  assert.equal(configError(() => hostFile('transport: quic\n')).field, 'transport');
  assert.equal(configError(() => hostFile('path: /x\n')).field, 'path');
  assert.equal(configError(() => hostFile('transport: ws\npath: "no-slash"\n')).field, 'path');
  // Our TLS is what the WebSocket carries: no plaintext inside it.
  assert.equal(configError(() => clientTransport(hostFile('transport: ws\nplaintext: true\n'))).field, 'transport');
  // --proxy replaces the file's proxy and keeps its transport.
  const overridden = clientTransport(hostFile('transport: ws\n'), { proxy: (parseProxyUrl('http://127.0.0.1:1') as { ok: true; value: ProxyUrl }).value });
  assert.equal(overridden.route?.transport, 'ws');
  assert.equal(overridden.route?.proxy?.address.port, 1);
});

/** A client-role stream and a server-role stream on the two ends of a loopback conn. */
async function webSocketPair(): Promise<[WebSocketStream, WebSocketStream, Socket, Socket]> {
  const [near, far] = await socketPair();
  const client = new WebSocketStream(near, 'client');
  const server = new WebSocketStream(far, 'server');
  // A test watches the errors it expects with once(); the other end's reset must not go unhandled.
  for (const stream of [client, server]) stream.on('error', () => {});
  return [client, server, near, far];
}

test('WebSocket stream: bytes both ways, large writes cut into frames, half-close kept per direction', { timeout: 10_000 }, async () => {
  const [client, server] = await webSocketPair();
  const closed = Promise.all([once(client, 'close'), once(server, 'close')]);
  const big = Buffer.alloc(300 * 1024, 7);
  const atServer = readAll(server as unknown as Socket);
  client.end(big);
  assert.equal((await atServer).length, big.length);
  // The client's Close ended one direction: the server still writes, the client still reads.
  const atClient = readAll(client as unknown as Socket);
  server.end('after your close');
  assert.equal((await atClient).toString(), 'after your close');
  await closed;
  assert.equal(client.errored, null);
  assert.equal(server.errored, null);
});

test('WebSocket stream: a bad frame destroys the stream with a reason, before any oversized payload is buffered', { timeout: 10_000 }, async () => {
  const cases: { bytes: Buffer; reason: RegExp; to: 'client' | 'server' }[] = [
    { bytes: encodeFrame(0x1, Buffer.from('text'), true), reason: /a text frame/, to: 'server' },
    { bytes: encodeFrame(0x2, Buffer.from('plain'), false), reason: /an unmasked frame from the client/, to: 'server' },
    { bytes: encodeFrame(0x2, Buffer.from('masked'), true), reason: /a masked frame from the server/, to: 'client' },
    { bytes: Buffer.from([0xc2, 0x80, 0, 0, 0, 0]), reason: /reserved bits/, to: 'server' },
    // Only the header of a frame announcing 2^40 bytes: refused at once, nothing waited for.
    { bytes: Buffer.from([0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0]), reason: new RegExp(`at most ${MAX_WEBSOCKET_FRAME_BYTES}`), to: 'server' },
  ];
  for (const { bytes, reason, to } of cases) {
    const [client, server, near, far] = await webSocketPair();
    const target = to === 'server' ? server : client;
    const errored = once(target, 'error');
    (to === 'server' ? near : far).write(bytes);
    const [error] = (await errored) as [Error];
    assert.match(error.message, reason);
    client.destroy();
    server.destroy();
  }
});

test('WebSocket stream: a conn that ends without a Close frame is an error, never a clean end', { timeout: 10_000 }, async () => {
  const [client, , , far] = await webSocketPair();
  const errored = once(client, 'error');
  far.end();
  const [error] = (await errored) as [Error];
  assert.match(error.message, /without a Close frame/);
});
