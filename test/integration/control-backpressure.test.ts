import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { ConfigError, loadServerConfig } from '../../src/config/index.js';
import { ControlChannel, FRAMES_PER_TURN, FrameReader } from '../../src/net/index.js';
import { FrameDecoder, type ProtocolError } from '../../src/protocol/index.js';
import { makeConfigDir } from '../helpers/configs.js';
import { pingBatch } from '../helpers/hostile-server.js';
import { closedWithin, socketPair } from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

/** Writes `total` Pings in batches, each after the previous one was taken (the writer's own backpressure). */
async function floodPings(socket: Socket, total: number, batch = 1000): Promise<void> {
  for (let seq = 0; seq < total && !socket.destroyed; seq += batch) {
    if (!socket.write(pingBatch(Math.min(batch, total - seq), seq))) await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
  }
}

test('a peer that sends Pings and never reads the Pongs stops being read; once it reads, every Ping is answered in order', { timeout: 60_000 }, async () => {
  const [peer, ours] = await socketPair();
  peer.on('error', () => {});
  ours.on('error', () => {});
  const maxQueueBytes = 64 * 1024;
  const channel = new ControlChannel(ours, undefined, maxQueueBytes);
  let answered = 0;
  let maxQueued = 0;
  channel.messages$.subscribe((message) => {
    if (message.type !== 'Ping') return;
    answered++;
    channel.send({ type: 'Pong', seq: message.seq });
    maxQueued = Math.max(maxQueued, ours.writableLength);
  });
  channel.release();
  peer.pause();

  // More Pongs than the kernel buffers of both ends hold (about 4 MiB on loopback).
  const total = 300_000;
  const flooding = floodPings(peer, total);
  await eventually(() => channel.stalledBytes !== undefined, { message: 'the channel to stop reading the peer', timeout: 30_000 });
  const answeredWhenStalled = answered;
  assert.ok(answeredWhenStalled < total, 'stopped reading before the peer was done');
  assert.ok(maxQueued <= maxQueueBytes, `queued at most the cap (${maxQueued} bytes)`);

  // The peer reads now: the queue drains, reading resumes, and nothing was lost on the way.
  const decoder = new FrameDecoder();
  let nextSeq = 0;
  let outOfOrder = 0;
  peer.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) {
      if (frame.type !== 'Pong' || frame.seq !== nextSeq) outOfOrder++;
      nextSeq++;
    }
  });
  peer.resume();
  await flooding;
  await eventually(() => nextSeq === total, { message: `all ${total} Pongs (got ${nextSeq})`, timeout: 30_000 });
  assert.equal(outOfOrder, 0);
  assert.equal(answered, total);
  assert.ok(maxQueued <= maxQueueBytes, `queued at most the cap (${maxQueued} bytes)`);
  assert.equal(channel.stalledBytes, undefined);
  peer.destroy();
  ours.destroy();
});

test('what we send on our own to a peer that reads nothing passes the cap: it is cut off and messages$ fails with SLOW_PEER', { timeout: 60_000 }, async () => {
  const [peer, ours] = await socketPair();
  ours.on('error', () => {});
  const channel = new ControlChannel(ours, undefined, 64 * 1024);
  peer.pause();
  const failed = new Promise<ProtocolError>((resolve, reject) =>
    channel.messages$.subscribe({ error: resolve, complete: () => reject(new Error('messages$ completed instead of failing')) }),
  );
  channel.release();
  // One batch per turn, as a server would send ReqWorkConns for users arriving.
  const sendBatch = (): void => {
    if (!channel.open) return;
    for (let i = 0; i < 500; i++) channel.send({ type: 'ReqWorkConn', app: 'web', pairingId: `p-${i}-${'x'.repeat(40)}` });
    setImmediate(sendBatch);
  };
  sendBatch();
  const error = await failed;
  assert.equal(error.code, 'SLOW_PEER');
  assert.match(error.message, /bytes queued/);
  assert.ok(ours.destroyed);
  // The peer's connection is gone too. (It is a reset, but a peer with unread data in its
  // receive queue, as here, is told end-of-stream by Linux rather than ECONNRESET.)
  peer.on('error', () => {});
  await closedWithin(peer);
  peer.destroy();
});

test('frames arriving together are emitted at most FRAMES_PER_TURN per turn of the event loop, all of them, in order', { timeout: 20_000 }, async () => {
  const [peer, ours] = await socketPair();
  const reader = new FrameReader(ours);
  const total = 2000;
  const batches: number[] = [];
  let batch = 0;
  let nextSeq = 0;
  const all = new Promise<void>((resolve) =>
    reader.messages$.subscribe((message) => {
      assert.equal(message.type === 'Ping' && message.seq, nextSeq++);
      if (batch++ === 0) {
        setImmediate(() => {
          batches.push(batch);
          batch = 0;
          if (nextSeq === total) resolve();
        });
      }
    }),
  );
  peer.write(pingBatch(total));
  await all;
  assert.equal(
    batches.reduce((sum, n) => sum + n, 0),
    total,
  );
  assert.ok(Math.max(...batches) <= FRAMES_PER_TURN, `batches per turn: ${batches.join(', ')}`);
  // Frames did arrive more than a turn's worth at a time (else this test proves nothing).
  assert.ok(batches.includes(FRAMES_PER_TURN), `batches per turn: ${batches.join(', ')}`);
  peer.destroy();
  ours.destroy();
});

test('limits.maxControlQueueBytes: defaults to 4 MiB, and a value too small to carry a burst is refused by name', () => {
  const config = makeConfigDir([]);
  writeFileSync(config.serverFile, 'bind: 127.0.0.1:0\nplaintext: true\n');
  assert.equal(loadServerConfig(config.serverFile).limits.maxControlQueueBytes, 4 * 1024 * 1024);
  writeFileSync(config.serverFile, 'bind: 127.0.0.1:0\nplaintext: true\nlimits: { maxControlQueueBytes: 1000 }\n');
  assert.throws(
    () => loadServerConfig(config.serverFile),
    (error: unknown) => error instanceof ConfigError && error.field === 'limits.maxControlQueueBytes' && /at least 262144/.test(error.message),
  );
});
