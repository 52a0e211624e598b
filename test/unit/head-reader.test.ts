import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { MAX_HANDSHAKE_HEAD_BYTES, readRequestHead, readResponseHead } from '../../src/net/head-reader.js';
import { HeadError, MAX_HEADERS } from '../../src/net/http-head.js';
import { acceptWebSocket } from '../../src/net/websocket-upgrade.js';
import { readAll, socketPair, withDeadline } from '../helpers/net.js';

/*
 * The heads read off a socket during a handshake (a proxy's answer to CONNECT, a WebSocket
 * upgrade) go through the vhost's strict parser, under the handshake's own size bound: the
 * limits of both readers at their stricter, fed raw bytes on a real loopback socket.
 */

async function pair(t: TestContext): Promise<[Socket, Socket]> {
  const [near, far] = await socketPair();
  for (const socket of [near, far]) socket.on('error', () => {});
  t.after(() => {
    near.destroy();
    far.destroy();
  });
  return [near, far];
}

/** A head of `lines` header lines padded so that the whole head is `bytes` long. */
function responseHead(bytes: number, lines = 1): string {
  const start = 'HTTP/1.1 200 OK\r\n';
  const filler = 'X-A: 1\r\n'.repeat(lines - 1);
  const last = `X-Pad: ${'p'.repeat(bytes - start.length - filler.length - 'X-Pad: \r\n\r\n'.length)}\r\n\r\n`;
  return start + filler + last;
}

const refusedWith =
  (status: number, pattern: RegExp) =>
  (error: unknown): boolean =>
    error instanceof HeadError && error.status === status && /^proxy p: /.test(error.message) && pattern.test(error.message);

test('a handshake head of 8 KiB is read whole; one byte more is refused (431) naming the peer, without waiting for its end', { timeout: 10_000 }, async (t) => {
  const [near, far] = await pair(t);
  const fits = responseHead(MAX_HANDSHAKE_HEAD_BYTES);
  assert.equal(fits.length, 8192);
  far.write(fits + 'AFTER');
  const head = await readResponseHead(near, 'proxy p');
  assert.equal(head.status, 200);
  assert.equal(head.reason, 'OK');
  // What came behind the head is left for the next layer.
  assert.equal(((await new Promise((resolve) => near.once('data', resolve))) as Buffer).toString(), 'AFTER');

  const [near2, far2] = await pair(t);
  far2.write(responseHead(MAX_HANDSHAKE_HEAD_BYTES + 1).slice(0, -4) + 'x'.repeat(100)); // no blank line ever comes
  await assert.rejects(
    withDeadline(readResponseHead(near2, 'proxy p'), 5000, 'the long head refused'),
    refusedWith(431, /an HTTP head longer than 8192 bytes/),
  );
});

test(`more than ${MAX_HEADERS} header lines are refused (431) even in a head well under 8 KiB`, { timeout: 10_000 }, async (t) => {
  const [near, far] = await pair(t);
  far.write(responseHead(4000, MAX_HEADERS));
  assert.equal((await readResponseHead(near, 'proxy p')).headers.length, MAX_HEADERS);
  const [near2, far2] = await pair(t);
  far2.write(responseHead(4000, MAX_HEADERS + 1));
  await assert.rejects(readResponseHead(near2, 'proxy p'), refusedWith(431, /more than 256 header lines/));
});

test('a bare LF is refused as soon as it arrives, not at the deadline; so are a malformed status line and a folded header', { timeout: 10_000 }, async (t) => {
  for (const [bytes, pattern] of [
    ['HTTP/1.1 200 OK\nProxy-Agent: x\n\n', /bare LF/],
    ['HTTP/1.1 200 OK\r\nX: a\nY: b', /bare LF/],
    ['200 OK\r\n\r\n', /malformed status line/],
    ['HTTP/1.1 200 OK\r\nX: a\r\n  folded\r\n\r\n', /malformed header line/],
    ['HTTP/1.1 200 OK\r\nX : a\r\n\r\n', /malformed header line/],
  ] as const) {
    const [near, far] = await pair(t);
    far.write(bytes); // and the conn stays open: only the parser can end the wait
    await assert.rejects(withDeadline(readResponseHead(near, 'proxy p'), 5000, JSON.stringify(bytes)), refusedWith(502, pattern), JSON.stringify(bytes));
  }
});

test('a request head: method, target and version parsed; a malformed request line refused with 400', { timeout: 10_000 }, async (t) => {
  const [near, far] = await pair(t);
  far.write('GET /_ntp/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n');
  const head = await readRequestHead(near, 'proxy p');
  assert.deepEqual([head.method, head.target, head.minor, head.headers.length], ['GET', '/_ntp/ws', 1, 2]);
  const [near2, far2] = await pair(t);
  far2.write('GET  /x HTTP/1.1\r\n\r\n');
  await assert.rejects(readRequestHead(near2, 'proxy p'), refusedWith(400, /malformed request line/));
});

/** What the server side of the upgrade answers to `request`, and the reason it gives. */
async function upgradeAnswer(t: TestContext, request: string): Promise<{ answer: string; refused: string }> {
  const [near, far] = await pair(t);
  near.write(request);
  const accepted = acceptWebSocket(far, '/_ntp/ws', 'peer q');
  const answer = (await readAll(near)).toString('latin1');
  const result = await accepted;
  assert.ok('refused' in result, 'refused');
  return { answer: answer.split('\r\n')[0]!, refused: result.refused };
}

test('the upgrade: an oversized or malformed head gets 431/400 with the peer named; a repeated key or Upgrade is refused', { timeout: 10_000 }, async (t) => {
  const key = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
  const lines = 'X-A: 1\r\n'.repeat(MAX_HEADERS + 1);
  const many = await upgradeAnswer(t, `GET /_ntp/ws HTTP/1.1\r\nUpgrade: websocket\r\n${key}${lines}\r\n`);
  assert.equal(many.answer, 'HTTP/1.1 431 Request Header Fields Too Large');
  assert.match(many.refused, /^peer q: more than 256 header lines/);
  const bare = await upgradeAnswer(t, `GET /_ntp/ws HTTP/1.1\nUpgrade: websocket\n`);
  assert.equal(bare.answer, 'HTTP/1.1 400 Bad Request');
  assert.match(bare.refused, /^peer q: bare LF/);
  const twoKeys = await upgradeAnswer(t, `GET /_ntp/ws HTTP/1.1\r\nUpgrade: websocket\r\n${key}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n`);
  assert.equal(twoKeys.answer, 'HTTP/1.1 400 Bad Request');
  const twoUpgrades = await upgradeAnswer(t, `GET /_ntp/ws HTTP/1.1\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n${key}\r\n`);
  assert.equal(twoUpgrades.answer, 'HTTP/1.1 400 Bad Request');
  const http10 = await upgradeAnswer(t, `GET /_ntp/ws HTTP/1.0\r\nUpgrade: websocket\r\n${key}\r\n`);
  assert.match(http10.refused, /not a WebSocket upgrade/);
});
