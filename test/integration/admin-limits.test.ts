import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { setImmediate as nextTurn, setTimeout as pause } from 'node:timers/promises';
import { filter, firstValueFrom, ReplaySubject, timeout } from 'rxjs';
import { ADMIN_DEFAULT_LIMITS, ConfigError, loadServerConfig } from '../../src/config/index.js';
import { EVENT_STREAM_MAX_QUEUED_BYTES } from '../../src/admin/event-stream.js';
import { rawHttp, sse, startAdmin, type SseMessage } from '../helpers/admin.js';
import { makeConfigDir } from '../helpers/configs.js';
import { startServer } from '../helpers/in-process.js';
import {} from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

/**
 * A connection that has sent `request` and then never reads (no 'data' listener: Node stops
 * reading once its own buffer is full), so the kernel buffers fill, then the server's queue.
 * `closed` settles when the server ends it, however it does.
 */
function stalledConnection(port: number, request: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => {});
    const closed = new Promise<void>((settle) => socket.once('close', () => settle()));
    socket.once('connect', () => {
      socket.write(request);
      resolve({ socket, closed });
    });
    socket.once('error', reject);
  });
}

/** A complete request on a kept-alive connection, its answer's first bytes read: the server holds the connection. */
async function heldConnection(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(`GET /api/groups HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  const head = await new Promise<string>((resolve) => socket.once('data', (chunk: Buffer) => resolve(chunk.toString('utf8'))));
  assert.match(head, /^HTTP\/1\.1 200/);
  return socket;
}

describe('admin limits', { timeout: 120_000 }, () => {
  test('event stream subscribers that stop reading are dropped with a reset once 1 MiB is queued; a reading subscriber keeps its stream', async (t) => {
    const config = makeConfigDir([], { tls: true });
    const { server } = await startServer(config);
    const api = await startAdmin(server, config);
    const port = Number(new URL(api.url).port);
    const reader = new ReplaySubject<SseMessage>();
    const readerConnection = sse(`${api.url}/api/events`).subscribe(reader);
    const stalled = await Promise.all(Array.from({ length: 8 }, () => stalledConnection(port, `GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)));
    after(async () => {
      readerConnection.unsubscribe();
      for (const { socket } of stalled) socket.destroy();
      await api.admin.close();
      await server.close();
    });
    await firstValueFrom(
      reader.pipe(
        filter((m) => m.event === 'open'),
        timeout(10_000),
      ),
    );
    await eventually(() => api.admin.eventStreams.stats().subscribers === 9, { message: 'nine subscribers', timeout: 10_000 });

    // Large events, a few per turn of the event loop so that the reading subscriber keeps up.
    const reason = 'x'.repeat(16 * 1024);
    let sentBytes = 0;
    for (let i = 0; api.admin.eventStreams.stats().dropped < stalled.length; i++) {
      assert.ok(sentBytes < 48 * 1024 * 1024, `still ${api.admin.eventStreams.stats().dropped} dropped after ${sentBytes} bytes per subscriber`);
      for (let j = 0; j < 4; j++) server.reportRegistrationFailure(`flood-${i}-${j}.yaml`, reason);
      sentBytes += 4 * reason.length;
      await nextTurn();
    }

    const stats = api.admin.eventStreams.stats();
    t.diagnostic(`${stalled.length} stalled subscribers dropped after ${sentBytes} bytes of events each; peak queue ${stats.peakQueuedBytes} bytes`);
    assert.equal(stats.dropped, stalled.length);
    assert.equal(stats.subscribers, 1, 'the reader is still subscribed');
    // The bound held: nothing ever queued past 1 MiB by more than the one event that crossed it.
    assert.ok(stats.peakQueuedBytes > EVENT_STREAM_MAX_QUEUED_BYTES, `peak ${stats.peakQueuedBytes}`);
    assert.ok(stats.peakQueuedBytes <= EVENT_STREAM_MAX_QUEUED_BYTES + 64 * 1024, `peak ${stats.peakQueuedBytes}`);
    // Read again, each stream stops short: the queued events were thrown away, and no last
    // chunk ("0\r\n\r\n") says the stream was complete. (Linux reports a reset that arrived
    // while the reader was not reading as a plain end, so the bytes are what tells.)
    for (const { socket, closed } of stalled) {
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      await closed;
      const received = Buffer.concat(chunks);
      assert.ok(received.length < sentBytes, `${received.length} bytes of ${sentBytes}`);
      assert.equal(received.subarray(-5).toString('latin1') === '0\r\n\r\n', false, 'no clean end of the stream');
    }

    server.reportRegistrationFailure('after-the-drops.yaml', 'still streaming');
    const last = await firstValueFrom(
      reader.pipe(
        filter((m) => m.event === 'group-registration-failed' && m.data.file === 'after-the-drops.yaml'),
        timeout(20_000),
      ),
    );
    assert.equal(last.data.reason, 'still streaming');
  });

  test('the admin port caps its connections: one past the cap is closed unanswered, and a freed slot serves again', async () => {
    const config = makeConfigDir([], { tls: true });
    const { server } = await startServer(config);
    // Idle keep-alive connections must outlive the test: they are what fills the cap.
    const api = await startAdmin(server, config, { admin: { maxConnections: 4, keepAliveTimeoutMs: 120_000 } });
    const port = Number(new URL(api.url).port);
    const held: Socket[] = [];
    after(async () => {
      for (const socket of held) socket.destroy();
      await api.admin.close();
      await server.close();
    });
    for (let i = 0; i < 4; i++) held.push(await heldConnection(port));

    const refused = await rawHttp(port, { target: '/api/groups' });
    assert.equal(refused.status, 0, 'closed without an answer');
    assert.equal(api.admin.connectionsRefused, 1);

    held.shift()!.destroy();
    // The server counts the slot free once it has seen the close; until then a try is refused.
    await eventually(async () => (await rawHttp(port, { target: '/api/groups' })).status === 200, {
      message: 'the freed slot to take a request',
      timeout: 20_000,
      interval: 50,
    });
  });

  test('a client that sends its headers byte by byte is cut off at headersTimeout', async () => {
    const config = makeConfigDir([], { tls: true });
    const { server } = await startServer(config);
    const api = await startAdmin(server, config, { admin: { headersTimeoutMs: 500, requestTimeoutMs: 1000 } });
    const port = Number(new URL(api.url).port);
    const { socket, closed: ended } = await stalledConnection(port, `GET /api/groups HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
    after(async () => {
      socket.destroy();
      await api.admin.close();
      await server.close();
    });
    const answer: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => answer.push(chunk));
    let closed = false;
    void ended.then(() => (closed = true));
    // A header that never ends, one byte per 50ms: 20 s or more of it if nothing cuts it off (Node alone would wait 60 s).
    let sent = 0;
    while (!closed && sent < 400) {
      if (socket.writable) socket.write(sent % 40 === 39 ? '\r\n' : sent % 40 === 0 ? 'X' : 'a');
      sent += 1;
      await pause(50);
    }
    assert.ok(closed, `still open after ${sent} bytes`);
    assert.match(Buffer.concat(answer).toString('utf8'), /^HTTP\/1\.1 408/);
    assert.equal((await rawHttp(port, { target: '/api/groups' })).status, 200, 'the server keeps serving');
  });
});

describe('admin config limits', () => {
  const load = (admin: Record<string, unknown>) => loadServerConfig(makeConfigDir([], { extra: { admin } }).serverFile);
  const refusedAt = (admin: Record<string, unknown>, field: string, message: RegExp): void => {
    assert.throws(
      () => load(admin),
      (error: ConfigError) => error.code === 'CONFIG_INVALID' && error.field === field && message.test(error.message),
      field,
    );
  };

  test('defaults apply; allowedHosts, maxConnections and the timeouts are validated with the field named', () => {
    const defaults = load({}).admin!;
    assert.deepEqual(
      {
        maxConnections: defaults.maxConnections,
        headersTimeoutMs: defaults.headersTimeoutMs,
        requestTimeoutMs: defaults.requestTimeoutMs,
        keepAliveTimeoutMs: defaults.keepAliveTimeoutMs,
      },
      ADMIN_DEFAULT_LIMITS,
    );
    assert.deepEqual(defaults.allowedHosts, []);
    const set = load({
      allowedHosts: ['Admin.Example.com', 'proxy.example.com:8443', '[::1]:9000'],
      maxConnections: 8,
      headersTimeout: '2s',
      requestTimeout: '5s',
      keepAliveTimeout: '1s',
    }).admin!;
    assert.deepEqual(set.allowedHosts, ['admin.example.com', 'proxy.example.com:8443', '[::1]:9000']);
    assert.deepEqual([set.maxConnections, set.headersTimeoutMs, set.requestTimeoutMs, set.keepAliveTimeoutMs], [8, 2000, 5000, 1000]);

    refusedAt({ allowedHosts: 'admin.example.com' }, 'admin.allowedHosts', /expected a list/);
    refusedAt({ allowedHosts: ['ok.example.com', 'http://evil.example.com/'] }, 'admin.allowedHosts[1]', /expected a host name/);
    refusedAt({ allowedHosts: ['a.example.com:99999'] }, 'admin.allowedHosts[0]', /expected a host name/);
    refusedAt({ maxConnections: 0 }, 'admin.maxConnections', /from 1 to/);
    refusedAt({ maxConnections: 'lots' }, 'admin.maxConnections', /from 1 to/);
    refusedAt({ headersTimeout: 'soon' }, 'admin.headersTimeout', /expected a duration/);
    refusedAt({ keepAliveTimeout: 0 }, 'admin.keepAliveTimeout', /longer than 0/);
    refusedAt({ headersTimeout: '20s', requestTimeout: '10s' }, 'admin.headersTimeout', /not be longer than admin\.requestTimeout/);
  });
});
