import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { lastValueFrom, toArray } from 'rxjs';
import { FrameReader } from '../../src/net/index.js';
import { encodeFrame, ProtocolError, type Message } from '../../src/protocol/index.js';
import { readAll, socketPair } from '../helpers/net.js';

const ping = (seq: number): Message => ({ type: 'Ping', seq });

const opened: Socket[] = [];
after(() => {
  for (const socket of opened) socket.destroy();
});

async function pair(): Promise<[Socket, Socket]> {
  const sockets = await socketPair();
  opened.push(...sockets);
  return sockets;
}

describe('FrameReader on a real socket', () => {
  test('frames then a FIN: every frame, then completion', { timeout: 5000 }, async () => {
    const [peer, socket] = await pair();
    const reader = new FrameReader(socket);
    const all = lastValueFrom(reader.messages$.pipe(toArray()));
    peer.end(Buffer.concat([encodeFrame(ping(1)), encodeFrame(ping(2))]));
    assert.deepEqual(await all, [ping(1), ping(2)]);
  });

  test('a FIN in the middle of a frame is TRUNCATED_FRAME', { timeout: 5000 }, async () => {
    const [peer, socket] = await pair();
    const reader = new FrameReader(socket);
    const seen: Message[] = [];
    const failed = new Promise<unknown>((resolve) => reader.messages$.subscribe({ next: (m) => seen.push(m), error: resolve }));
    const second = encodeFrame(ping(2));
    peer.end(Buffer.concat([encodeFrame(ping(1)), second.subarray(0, second.length - 1)]));
    const error = await failed;
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, 'TRUNCATED_FRAME');
    assert.deepEqual(seen, [ping(1)]);
  });

  test('frames held when the FIN arrives are still delivered on release', { timeout: 5000 }, async () => {
    const [peer, socket] = await pair();
    const reader = new FrameReader(socket);
    const first = new Promise<Message>((resolve) => {
      const subscription = reader.messages$.subscribe((message) => {
        reader.hold();
        subscription.unsubscribe();
        resolve(message);
      });
    });
    const peerSawEnd = readAll(peer);
    peer.end(Buffer.concat([encodeFrame(ping(1)), encodeFrame(ping(2)), encodeFrame(ping(3))]));
    assert.deepEqual(await first, ping(1));
    // The next phase subscribes later (after the FIN may have arrived), then releases.
    await new Promise((resolve) => setImmediate(resolve));
    const rest = lastValueFrom(reader.messages$.pipe(toArray()));
    reader.release();
    assert.deepEqual(await rest, [ping(2), ping(3)]);
    socket.end();
    await peerSawEnd;
  });
});
