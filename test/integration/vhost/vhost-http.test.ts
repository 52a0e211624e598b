import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadGroupFile } from '../../../src/config/index.js';
import { unusedPort } from '../../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../../helpers/in-process.js';
import { connectTo, readAll, readBytes, streamEnding, waitForEvent } from '../../helpers/net.js';
import { curl, curlSeen, pattern, rawGet, readResponse, startWebApp, writeVhostGroup, type SeenRequest } from '../../helpers/vhost.js';
import { eventually } from '../../helpers/eventually.js';

type WebApp = Awaited<ReturnType<typeof startWebApp>>;

/**
 * The HTTP vhost end to end over the default link (TLS, pinned): two groups' web apps on one
 * public port, routed by Host and path, with real curl and raw keep-alive sockets.
 */
describe('HTTP virtual hosts', () => {
  let config: TestConfigDir;
  let started: StartedServer;
  let port = 0;
  const apps = new Map<string, WebApp>();
  const clients: StartedClient[] = [];
  /** The broken app's conn of the request in flight, once it has sent part of its answer. */
  let brokenConn: ((socket: import('node:net').Socket) => void) | undefined;

  before(async () => {
    for (const name of ['site-a', 'api-a', 'secure-a', 'site-b', 'broken']) {
      apps.set(
        name,
        await startWebApp(name, (req, res) => {
          if (req.url === '/flood') return (flood(res), true);
          if (req.url === '/held-upload') return (holdUpload(req, res), true);
          if (name !== 'broken') return false;
          // Promises 1000 bytes, sends 10; the test kills it once the user has read them.
          res.socket!.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789');
          brokenConn?.(res.socket!);
          void req;
          return true;
        }),
      );
    }
    // Heartbeats far above the test's default 1 s: a 2-core machine moving 100 MB through both
    // ends in this one process can delay a ping past that.
    config = makeConfigDir([], {
      heartbeatInterval: '1s',
      heartbeatTimeout: '15s',
      extra: { vhost: { http: '127.0.0.1:0', subdomainHost: 'tunnel.test', headersTimeout: '600ms' } },
    });
    const port$ = (name: string): number => apps.get(name)!.port;
    writeVhostGroup(config, 'alpha', randomSecret(), [
      { name: 'site', type: 'http', localPort: port$('site-a'), domains: ['a.test', '*.wild.test'] },
      { name: 'api', type: 'http', localPort: port$('api-a'), domains: ['a.test'], locations: ['/api', '/api/v2'] },
      { name: 'secure', type: 'http', localPort: port$('secure-a'), domains: ['secure.test'], basicAuth: { user: 'ann', password: 'correct horse battery' } },
      { name: 'broken', type: 'http', localPort: port$('broken'), domains: ['broken.test'] },
      { name: 'down', type: 'http', localPort: await unusedPort(), domains: ['down.test'] },
    ]);
    writeVhostGroup(config, 'beta', randomSecret(), [
      { name: 'site', type: 'http', localPort: port$('site-b'), subdomain: 'b', hostHeaderRewrite: 'internal.b:8080' },
    ]);
    writeVhostGroup(config, 'gamma', randomSecret(), [{ name: 'site', type: 'http', localPort: port$('site-b'), domains: ['offline.test'] }]);
    started = await startServer(config);
    port = started.server.vhost!.port('http');
    for (const group of ['alpha', 'beta']) {
      clients.push(startClient(loadGroupFile(config.groupFile(group)), started));
      await waitForEvent(started.events, (event) => event.type === 'group-activated' && event.group === group, `${group} activated`);
    }
  });

  after(async () => {
    for (const { client } of clients) await client.stop();
    await started.server.close();
    for (const app of apps.values()) await app.close();
  });

  const seen = (body: Buffer): SeenRequest => JSON.parse(body.toString()) as SeenRequest;

  /** Bytes the /flood app has handed to its socket; the app waits for 'drain' as it should. */
  let flooded = 0;
  const FLOOD_BYTES = 96 * 1024 * 1024;
  function flood(res: import('node:http').ServerResponse): void {
    flooded = 0;
    res.writeHead(200, { 'content-length': FLOOD_BYTES });
    const piece = pattern(64 * 1024);
    const more = (): void => {
      while (flooded < FLOOD_BYTES) {
        flooded += piece.length;
        if (!res.write(piece)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  }

  /** The /held-upload app reads nothing until `releaseUpload`, then answers with what it got. */
  let releaseUpload: (() => void) | undefined;
  function holdUpload(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
    req.pause();
    releaseUpload = () => {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => (bytes += chunk.length));
      req.on('end', () => res.end(JSON.stringify({ bytes })));
      req.resume();
    };
  }

  test('curl reaches apps of two groups on one port by name, with --resolve', { timeout: 15_000 }, async () => {
    const resolve = ['a.test', 'b.tunnel.test', 'x.wild.test'].flatMap((name) => ['--resolve', `${name}:${port}:127.0.0.1`]);
    const urls = [
      `http://a.test:${port}/index`,
      `http://b.tunnel.test:${port}/b`,
      `http://a.test:${port}/api/v2/users`,
      `http://x.wild.test:${port}/w`,
      `http://a.test:${port}/apis`,
    ];
    const answers = await curlSeen([...resolve, ...urls]);
    assert.deepEqual(
      answers.map((answer) => [answer.app, answer.url]),
      [
        ['site-a', '/index'],
        ['site-b', '/b'],
        ['api-a', '/api/v2/users'], // the longest location wins
        ['site-a', '/w'], // *.wild.test
        ['api-a', '/apis'], // a prefix, as frp and nginx match it
      ],
    );
  });

  test('one keep-alive conn carries requests for different hosts, each with its forwarding headers', { timeout: 15_000 }, async () => {
    const socket = await connectTo(port);
    const hosts = ['a.test', 'b.tunnel.test', 'a.test', `a.test:${port}`, 'b.tunnel.test'];
    const answers: SeenRequest[] = [];
    for (const host of hosts) {
      const response = await rawGet(port, host, '/keep', ['X-Forwarded-For: 203.0.113.9', 'X-Real-IP: 198.51.100.1'], socket);
      assert.equal(response.status, 200);
      answers.push(seen(response.body));
    }
    assert.ok(!socket.destroyed && !socket.readableEnded, 'the same user conn served every request');
    socket.destroy();
    assert.deepEqual(
      answers.map((answer) => answer.app),
      ['site-a', 'site-b', 'site-a', 'site-a', 'site-b'],
    );
    const first = answers[0]!.headers;
    assert.equal(first['x-forwarded-for'], '203.0.113.9, 127.0.0.1', 'what came before is kept, the user address appended');
    assert.equal(first['x-real-ip'], '127.0.0.1', 'a user cannot choose its X-Real-IP');
    assert.equal(first['x-forwarded-proto'], 'http');
    assert.equal(first.host, 'a.test');
    assert.equal(answers[1]!.headers.host, 'internal.b:8080', 'hostHeaderRewrite');
  });

  test('a chunked upload streams through and the conn carries the next request', { timeout: 20_000 }, async () => {
    const socket = await connectTo(port);
    const body = pattern(3 * 1024 * 1024 + 17);
    socket.write('POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n');
    for (let offset = 0; offset < body.length; offset += 65_000) {
      const piece = body.subarray(offset, offset + 65_000);
      // Chunk extensions and odd sizes are part of the coding: relayed as sent.
      socket.write(`${piece.length.toString(16)};ext=1\r\n`);
      socket.write(piece);
      socket.write('\r\n');
    }
    socket.write('0\r\nX-Trailer: yes\r\n\r\n');
    const upload = seen((await readResponse(socket)).body);
    assert.equal(upload.bodyBytes, body.length);
    assert.equal(upload.bodySha256, createHash('sha256').update(body).digest('hex'));
    const next = await rawGet(port, 'b.tunnel.test', '/after', [], socket);
    assert.equal(seen(next.body).app, 'site-b');
    // A chunked response (node's default for /big) relayed unmodified, then the conn is still usable.
    socket.write('GET /big/300000 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
    const raw = await readAll(socket);
    const headEnd = raw.indexOf('\r\n\r\n');
    assert.match(raw.subarray(0, headEnd).toString(), /transfer-encoding: chunked/i);
    assert.deepEqual(dechunk(raw.subarray(headEnd + 4)), pattern(300000));
  });

  test('curl uploads with Expect: 100-continue (a 1xx relayed before the final answer)', { timeout: 20_000 }, async () => {
    const file = join(config.dir, 'upload.bin');
    const body = pattern(2 * 1024 * 1024 + 5);
    writeFileSync(file, body);
    const { code, stdout, stderr } = await curl([
      '--resolve',
      `a.test:${port}:127.0.0.1`,
      '-H',
      'Expect: 100-continue',
      '--data-binary',
      `@${file}`,
      `http://a.test:${port}/up`,
    ]);
    assert.equal(code, 0, stderr);
    const answer = seen(stdout);
    assert.equal(answer.headers.expect, '100-continue');
    assert.equal(answer.bodySha256, createHash('sha256').update(body).digest('hex'));
  });

  test('pipelined requests for two hosts in one write are answered in order', { timeout: 10_000 }, async () => {
    const socket = await connectTo(port);
    socket.write('GET /one HTTP/1.1\r\nHost: b.tunnel.test\r\n\r\nGET /two HTTP/1.1\r\nHost: a.test\r\n\r\n');
    const first = seen((await readResponse(socket)).body);
    const second = seen((await readResponse(socket)).body);
    socket.destroy();
    assert.deepEqual([first.app, first.url, second.app, second.url], ['site-b', '/one', 'site-a', '/two']);
  });

  test('backpressure: a user that reads nothing stalls the app, and the answer then arrives whole', { timeout: 60_000 }, async () => {
    const socket = await connectTo(port);
    socket.pause();
    socket.write('GET /flood HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
    const stalledAt = await quiescent(() => flooded);
    assert.ok(stalledAt < 64 * 1024 * 1024, `the app wrote ${stalledAt} bytes to a user that read nothing`);
    const reading = readAll(socket);
    socket.resume();
    const whole = await reading;
    assert.equal(whole.length - whole.indexOf('\r\n\r\n') - 4, FLOOD_BYTES);
  });

  test('backpressure: an upload to an app that reads nothing stalls the user', { timeout: 60_000 }, async () => {
    const socket = await connectTo(port);
    const total = 96 * 1024 * 1024;
    socket.write(`POST /held-upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${total}\r\n\r\n`);
    let sent = 0;
    const piece = pattern(64 * 1024);
    const more = (): void => {
      while (sent < total) {
        sent += piece.length;
        if (!socket.write(piece)) return void socket.once('drain', more);
      }
    };
    more();
    const stalledAt = await quiescent(() => sent);
    assert.ok(stalledAt < 64 * 1024 * 1024, `the user got ${stalledAt} bytes out to an app that read nothing`);
    releaseUpload!();
    const answer = await readResponse(socket);
    assert.deepEqual(JSON.parse(answer.body.toString()), { bytes: total });
    socket.destroy();
  });

  test('an unknown name gets a plain 404 that names nothing behind the server', { timeout: 10_000 }, async () => {
    const response = await rawGet(port, 'nobody.test');
    assert.equal(response.status, 404);
    const page = response.body.toString();
    for (const internal of ['alpha', 'beta', 'gamma', 'site', '127.0.0.1', String(apps.get('site-a')!.port)])
      assert.ok(!page.includes(internal), `404 page mentions ${internal}`);
    assert.equal((await rawGet(port, 'a.test', '/', [], undefined)).status, 200);
  });

  test('a known name whose group is offline gets 503 at once, not a hang', { timeout: 10_000 }, async () => {
    const startedAt = Date.now();
    const response = await rawGet(port, 'offline.test');
    assert.equal(response.status, 503);
    assert.ok(Date.now() - startedAt < 1000, `answered after ${Date.now() - startedAt}ms`);
  });

  test('basic auth: 401 with WWW-Authenticate without or with wrong credentials; the app never sees them', { timeout: 10_000 }, async () => {
    const none = await rawGet(port, 'secure.test');
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Basic realm="secure\.test"/);
    const wrong = await rawGet(port, 'secure.test', '/', [`Authorization: Basic ${Buffer.from('ann:wrong').toString('base64')}`]);
    assert.equal(wrong.status, 401);
    const right = await rawGet(port, 'secure.test', '/', [`Authorization: Basic ${Buffer.from('ann:correct horse battery').toString('base64')}`]);
    assert.equal(right.status, 200);
    assert.equal(seen(right.body).headers.authorization, undefined, 'the proxy credentials stay at the proxy');
    const viaCurl = await curl(['--resolve', `secure.test:${port}:127.0.0.1`, '--user', 'ann:correct horse battery', `http://secure.test:${port}/c`]);
    assert.equal(seen(viaCurl.stdout).app, 'secure-a');
  });

  test('a request head over 64 KiB gets 431; a head that never ends gets 408 after headersTimeout', { timeout: 10_000 }, async () => {
    const big = await rawGet(port, 'a.test', '/', [`X-Big: ${'x'.repeat(70 * 1024)}`]);
    assert.equal(big.status, 431);
    const slow = await connectTo(port);
    const startedAt = Date.now();
    slow.write('GET / HTTP/1.1\r\nHost: a.te');
    const response = await readResponse(slow);
    assert.equal(response.status, 408);
    const waited = Date.now() - startedAt;
    assert.ok(waited >= 500 && waited < 3000, `408 after ${waited}ms (headersTimeout 600ms)`);
    slow.destroy();
  });

  test('a user that keeps its side open after our last answer is closed headersTimeout after it', { timeout: 10_000 }, async () => {
    const user = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const failed: { error?: Error } = {};
    user.on('error', (error) => (failed.error = error));
    await once(user, 'connect');
    user.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
    const ended = once(user, 'end');
    user.resume();
    await ended;
    // Half-open on our side only: the user never ends its own. Its bytes are read and dropped
    // until the linger closes the conn; from then on one more byte meets a reset.
    await eventually(() => (user.write('.'), failed.error !== undefined), { message: 'the half-open conn closed by the server' });
    assert.match((failed.error as NodeJS.ErrnoException).code ?? '', /^(ECONNRESET|EPIPE)$/);
    user.destroy();
  });

  test('smuggling shapes are refused with 400: Content-Length beside chunked, a folded header', { timeout: 10_000 }, async () => {
    const both = await rawGet(port, 'a.test', '/', ['Content-Length: 5', 'Transfer-Encoding: chunked']);
    assert.equal(both.status, 400);
    const folded = await rawGet(port, 'a.test', '/', ['X-A: 1', ' folded']);
    assert.equal(folded.status, 400);
  });

  test('an app that dies mid-response resets the user: a truncated answer never ends cleanly', { timeout: 10_000 }, async () => {
    const socket = await connectTo(port);
    const appConn = new Promise<import('node:net').Socket>((resolve) => (brokenConn = resolve));
    socket.write('GET / HTTP/1.1\r\nHost: broken.test\r\n\r\n');
    // Read before the crash: Linux reads a reset that meets unread bytes as an end of stream.
    const partial = await readBytes(socket, 51);
    assert.match(partial.toString(), /0123456789$/);
    const ending = streamEnding(socket);
    (await appConn).resetAndDestroy();
    const result = await ending;
    assert.equal(result.ending, 'reset', `ended by ${result.ending} after ${result.bytes} bytes`);
  });

  test('a local app that is down: 502 at once, and the conn to it is not kept', { timeout: 10_000 }, async () => {
    const startedAt = Date.now();
    const response = await rawGet(port, 'down.test');
    assert.equal(response.status, 502);
    assert.ok(Date.now() - startedAt < 1000, `answered after ${Date.now() - startedAt}ms`);
    await waitForEvent(started.events, (event) => event.type === 'vhost-refused' && event.code === '502' && /alpha\/down/.test(event.reason), 'the 502 event');
  });

  test('the group going offline turns its names into 503 at once', { timeout: 15_000 }, async () => {
    const beta = clients.pop()!;
    await beta.client.stop();
    await waitForEvent(started.events, (event) => event.type === 'group-deactivated' && event.group === 'beta', 'beta deactivated');
    const startedAt = Date.now();
    assert.equal((await rawGet(port, 'b.tunnel.test')).status, 503);
    assert.ok(Date.now() - startedAt < 1000);
    assert.equal((await rawGet(port, 'a.test')).status, 200, 'the other group keeps serving');
  });
});

/** The value of `count()` once it has stopped growing for 500 ms (a stalled stream). */
function quiescent(count: () => number): Promise<number> {
  let last = -1;
  return eventually(
    () => {
      const now = count();
      const stalled = now === last && now > 0;
      last = now;
      return stalled && now;
    },
    { message: () => `the stream to stall (at ${last} bytes)`, timeout: 45_000, interval: 500 },
  );
}

/** The data of a chunked body (sizes, extensions and trailers dropped). */
function dechunk(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', offset);
    const size = parseInt(raw.subarray(offset, lineEnd).toString().split(';')[0]!, 16);
    if (size === 0) return Buffer.concat(parts);
    parts.push(raw.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
}
