import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MuxSession, minMuxBudgetBytes, type MuxLimits, type MuxStream } from '../../src/net/index.js';
import {
  MUX_INITIAL_WINDOW,
  MUX_STREAM_WINDOW,
  encodeMuxFrame,
  encodeMuxOpen,
  encodeMuxReset,
  encodeMuxWindow,
  MuxDecoder,
  MuxFrameType,
  type StartWorkConn,
} from '../../src/protocol/index.js';
import { socketPair } from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap and buffers in use after full collections: what this process really holds. */
async function heldBytes(): Promise<number> {
  // Buffers' memory is released after the collection that found them dead, in a later task.
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

const start = (pairingId: string): StartWorkConn => ({ type: 'StartWorkConn', app: 'echo', pairingId });
const MiB = 1024 * 1024;

/** Frames a raw peer received, by type and stream. */
function frameLog(raw: Socket): Array<{ type: 'open' | 'data' | 'fin' | 'reset' | 'window'; id: number; size?: number; text?: string }> {
  const frames: ReturnType<typeof frameLog> = [];
  const decoder = new MuxDecoder({
    onOpen: (id) => frames.push({ type: 'open', id }),
    onData: (id, piece) => frames.push({ type: 'data', id, size: piece.length }),
    onFin: (id) => frames.push({ type: 'fin', id }),
    onReset: (id, text) => frames.push({ type: 'reset', id, text }),
    onWindow: (id, size) => frames.push({ type: 'window', id, size }),
  });
  raw.on('data', (bytes: Buffer) => decoder.push(bytes));
  return frames;
}

/** The client's end of a mux conn with `limits`, fed raw frames by the test as a hostile server. */
async function acceptorUnderTest(limits?: MuxLimits) {
  const [raw, far] = await socketPair();
  raw.on('error', () => {});
  const streams: MuxStream[] = [];
  const refusals: number[] = [];
  const session = new MuxSession(
    far,
    'acceptor',
    {
      onStream: (stream) => streams.push(stream.on('error', () => {})),
      onClosed: () => {},
      onRefused: (refused) => refusals.push(refused),
    },
    limits,
  );
  return { raw, session, streams, refusals, frames: frameLog(raw) };
}

/** Writes `frames` as fast as the peer takes them. */
async function writeAll(raw: Socket, frames: Buffer[], batch = 4096): Promise<void> {
  for (let i = 0; i < frames.length; i += batch) {
    if (!raw.write(Buffer.concat(frames.slice(i, i + batch)))) await new Promise((resolve) => raw.once('drain', resolve));
  }
}

describe('mux memory in real bytes', { timeout: 60_000 }, () => {
  test('1-byte DATA frames to a stream that never reads cost the receiver about its window, not ~100 bytes per byte', async () => {
    const { raw, session, streams } = await acceptorUnderTest();
    raw.write(encodeMuxOpen(1, start('tiny')));
    await eventually(() => streams.length === 1, { message: 'the stream' });
    const stream = streams[0]!.pause();
    const frames = Array.from({ length: MUX_INITIAL_WINDOW }, () => encodeMuxFrame(MuxFrameType.data, 1, Buffer.of(7)));
    const before = await heldBytes();
    await writeAll(raw, frames);
    await eventually(() => stream.bytesRead === MUX_INITIAL_WINDOW, { message: 'the whole window received', timeout: 30_000 });
    const grown = (await heldBytes()) - before;
    assert.ok(grown < 2 * MiB, `the receiver holds ${(grown / MiB).toFixed(1)} MiB for ${MUX_INITIAL_WINDOW} bytes in 1-byte frames`);
    assert.equal(session.isClosed, false);
    raw.destroy();
  });

  test("a 1-byte frame in each chunk never keeps the chunk alive (the rest of it was another stream's)", async () => {
    const { raw, streams } = await acceptorUnderTest();
    raw.write(Buffer.concat([encodeMuxOpen(1, start('holder')), encodeMuxOpen(2, start('gone'))]));
    await eventually(() => streams.length === 2, { message: 'both streams' });
    const holder = streams[0]!.pause();
    // Stream 2 is reset: its DATA frames are late ones, dropped, but they travel in the same chunks.
    raw.write(encodeMuxReset(2, 'gone'));
    await eventually(() => streams[1]!.destroyed, { message: 'stream 2 reset' });
    const filler = encodeMuxFrame(MuxFrameType.data, 2, Buffer.alloc(16 * 1024, 1));
    const rounds = 2000;
    const frames = Array.from({ length: rounds }, () => Buffer.concat([encodeMuxFrame(MuxFrameType.data, 1, Buffer.of(7)), filler]));
    const before = await heldBytes();
    await writeAll(raw, frames, 64);
    await eventually(() => holder.bytesRead === rounds, { message: 'every 1-byte frame', timeout: 30_000 });
    const grown = (await heldBytes()) - before;
    assert.ok(grown < 2 * MiB, `the receiver holds ${(grown / MiB).toFixed(1)} MiB for ${rounds} bytes sent among ${rounds * 16} KiB of others`);
    raw.destroy();
  });

  test('coalesced bytes reach the reader whole and in order, small and large pieces mixed', async () => {
    const { raw, streams } = await acceptorUnderTest();
    raw.write(encodeMuxOpen(1, start('mixed')));
    await eventually(() => streams.length === 1, { message: 'the stream' });
    const stream = streams[0]!.pause();
    const sizes = [1, 3, 5000, 1, 20_000, 2, 2, 70_000, 1, 9000, 1];
    const pieces = sizes.map((size) => randomBytes(size));
    raw.write(Buffer.concat(pieces.map((piece) => encodeMuxFrame(MuxFrameType.data, 1, piece))));
    raw.write(encodeMuxFrame(MuxFrameType.fin, 1));
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk)).resume();
    await new Promise((resolve) => stream.once('end', resolve));
    assert.deepEqual(Buffer.concat(chunks), Buffer.concat(pieces));
    raw.destroy();
  });
});

describe('mux stream cap', { timeout: 60_000 }, () => {
  test('OPENs past maxStreams are refused with an RST naming the cap, counted, and make no stream', async () => {
    const { raw, session, streams, refusals, frames } = await acceptorUnderTest({ maxStreams: 8, budgetBytes: minMuxBudgetBytes(8) });
    await writeAll(
      raw,
      Array.from({ length: 20_000 }, (_, i) => encodeMuxOpen(i + 1, start(`flood-${i}`))),
    );
    await eventually(() => refusals.length === 20_000 - 8, { message: 'every refusal', timeout: 30_000 });
    assert.equal(streams.length, 8, 'streams made past the cap');
    assert.equal(session.streamCount, 8);
    await eventually(() => frames.filter((frame) => frame.type === 'reset').length === 20_000 - 8, { message: 'an RST per refused OPEN', timeout: 30_000 });
    const first = frames.find((frame) => frame.type === 'reset')!;
    assert.equal(first.id, 9);
    assert.match(first.text ?? '', /8 streams/);
    // A stream that ends makes room for the next OPEN.
    streams[0]!.destroy();
    await eventually(() => session.streamCount === 7, { message: 'the first stream retired' });
    raw.write(encodeMuxOpen(20_001, start('after')));
    await eventually(() => streams.length === 9, { message: 'the stream opened once there was room' });
    raw.destroy();
  });

  test('the opener resets a user past its own cap without sending an OPEN for it', async () => {
    const [near, raw] = await socketPair();
    raw.on('error', () => {});
    const frames = frameLog(raw);
    const opener = new MuxSession(near, 'opener', { onClosed: () => {} }, { maxStreams: 2, budgetBytes: minMuxBudgetBytes(2) });
    const opened = [opener.open(start('a')), opener.open(start('b')), opener.open(start('c'))];
    for (const stream of opened) stream.on('error', () => {});
    await eventually(() => opened[2]!.destroyed, { message: 'the third stream refused' });
    assert.match(String(opened[2]!.errored?.message), /2 streams, its cap/);
    await eventually(() => frames.length >= 2, { message: 'the two OPENs' });
    raw.write(encodeMuxFrame(MuxFrameType.fin, 1));
    await eventually(() => opener.streamCount === 2, { message: 'two streams open' });
    assert.deepEqual(
      frames.map((frame) => `${frame.type}:${frame.id}`),
      ['open:1', 'open:2'],
      'an OPEN or RST went out for the refused user',
    );
    opener.destroy('test over');
  });
});

describe('mux session budget and credit', { timeout: 60_000 }, () => {
  test('a reading stream grows its window only within the budget; streams that never read hold their initial window', async () => {
    const limits = { maxStreams: 4, budgetBytes: minMuxBudgetBytes(4) + 256 * 1024 };
    const [near, far] = await socketPair();
    const accepted: MuxStream[] = [];
    const acceptor = new MuxSession(far, 'acceptor', { onStream: (stream) => accepted.push(stream.on('error', () => {})), onClosed: () => {} }, limits);
    const opener = new MuxSession(near, 'opener', { onClosed: () => {} }, limits);
    const senders = [0, 1, 2].map((i) => opener.open(start(`s${i}`)).on('error', () => {}));
    await eventually(() => accepted.length === 3, { message: 'three streams' });
    const [fast, ...stalled] = accepted as [MuxStream, MuxStream, MuxStream];
    for (const stream of stalled) stream.pause();
    let fastBytes = 0;
    fast.on('data', (chunk: Buffer) => (fastBytes += chunk.length));
    const payload = randomBytes(16 * MiB);
    for (const sender of senders) sender.end(payload);
    await new Promise((resolve) => fast.once('end', resolve));
    assert.equal(fastBytes, payload.length);
    assert.ok(fast.window > MUX_INITIAL_WINDOW, `the reading stream's window stayed at ${fast.window}`);
    assert.ok(fast.window <= MUX_STREAM_WINDOW);
    for (const [i, stream] of stalled.entries()) {
      assert.equal(stream.window, MUX_INITIAL_WINDOW, 'a stream that never read grew its window');
      assert.equal(senders[i + 1]!.bytesWritten, MUX_INITIAL_WINDOW, 'a sender went past the initial window of a stream never read');
    }
    // Every window in use, and the two streams not yet open, fit the budget.
    const inUse = accepted.reduce((sum, stream) => sum + stream.window, 0) + (limits.maxStreams - acceptor.streamCount) * MUX_INITIAL_WINDOW;
    assert.ok(inUse <= limits.budgetBytes, `${inUse} bytes of windows against a budget of ${limits.budgetBytes}`);
    opener.destroy('test over');
  });

  test('credit granted a byte at a time is not spent a byte at a time; credit past the largest window resets the stream', async () => {
    const [near, raw] = await socketPair();
    raw.on('error', () => {});
    const frames = frameLog(raw);
    const opener = new MuxSession(near, 'opener', { onClosed: () => {} });
    const stream = opener.open(start('stingy')).on('error', () => {});
    stream.write(Buffer.alloc(MUX_INITIAL_WINDOW + 64 * 1024, 1));
    await eventually(() => stream.bytesWritten === MUX_INITIAL_WINDOW, { message: 'the initial window sent' });
    const dataFrames = (): number => frames.filter((frame) => frame.type === 'data').length;
    const sentBefore = dataFrames();
    raw.write(Buffer.concat(Array.from({ length: 4095 }, () => encodeMuxWindow(1, 1))));
    raw.write(encodeMuxWindow(1, 1));
    await eventually(() => stream.bytesWritten === MUX_INITIAL_WINDOW + 4096, { message: 'the 4 KiB granted byte by byte sent' });
    await eventually(() => dataFrames() > sentBefore, { message: 'its DATA' });
    // Counted as the decoder hands pieces on (a frame may come in a few); a byte per frame would be 4096.
    assert.ok(dataFrames() - sentBefore <= 8, `credit granted byte by byte was spent in ${dataFrames() - sentBefore} DATA pieces`);
    const reset = new Promise<Error | undefined>((resolve) => stream.once('close', () => resolve(stream.errored ?? undefined)));
    raw.write(encodeMuxWindow(1, MUX_STREAM_WINDOW + 1));
    assert.match(String((await reset)?.message), /granted more than/);
    opener.destroy('test over');
  });
});
