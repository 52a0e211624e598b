import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { after, describe, test } from 'node:test';
import { joinConns, type RelayResult } from '../../src/net/index.js';
import { kernelTcpState, readAll, readBytes, socketPair, streamEnding } from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

/**
 * A ⇄ outer ══joinConns══ inner ⇄ B, all real loopback sockets. A and B are the two far
 * ends (a user and a work conn's far side, say); outer and inner belong to the relay.
 */
interface Relay {
  a: Socket;
  outer: Socket;
  inner: Socket;
  b: Socket;
  result: Promise<RelayResult>;
}

const opened: Socket[] = [];
after(() => {
  for (const socket of opened) socket.destroy();
});

async function makeRelay(): Promise<Relay> {
  const [a, outer] = await socketPair();
  const [inner, b] = await socketPair();
  opened.push(a, outer, inner, b);
  // The test's own ends may see resets on purpose; the relay installs its own listeners.
  for (const socket of [a, b]) socket.on('error', () => {});
  return { a, outer, inner, b, result: joinConns(outer, inner) };
}

function closed(socket: Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : once(socket, 'close').then(() => undefined);
}

describe('joinConns on real sockets', () => {
  for (const first of ['A', 'B'] as const) {
    const second = first === 'A' ? 'B' : 'A';
    test(`${first} ends: ${second} sees the end, ${second} can still write back, then both close`, { timeout: 10_000 }, async () => {
      const relay = await makeRelay();
      const [early, late] = first === 'A' ? [relay.a, relay.b] : [relay.b, relay.a];
      const atLate = readAll(late);
      early.end(`${first} says hello and ends`);
      assert.equal((await atLate).toString(), `${first} says hello and ends`);

      // The reverse direction still flows after the FIN, in several writes.
      const atEarly = readAll(early);
      late.write('a late ');
      late.end(`answer from ${second}`);
      assert.equal((await atEarly).toString(), `a late answer from ${second}`);

      const { bytesIn, bytesOut, error } = await relay.result;
      assert.equal(error, undefined);
      const [fromA, fromB] =
        first === 'A' ? [`${first} says hello and ends`, `a late answer from ${second}`] : [`a late answer from ${second}`, `${first} says hello and ends`];
      assert.deepEqual([bytesIn, bytesOut], [fromA.length, fromB.length], 'bytesIn counts what A sent, bytesOut what A received');
      await Promise.all([closed(relay.outer), closed(relay.inner)]);
    });
  }

  for (const resetter of ['A', 'B'] as const) {
    test(`a reset from ${resetter} reaches the other side as a reset, promptly`, { timeout: 10_000 }, async () => {
      const relay = await makeRelay();
      const [from, to, farRelaySide] = resetter === 'A' ? [relay.a, relay.b, relay.inner] : [relay.b, relay.a, relay.outer];
      // Make sure the relay is carrying data before the reset.
      from.write('ping');
      assert.equal((await readBytes(to, 4)).toString(), 'ping');
      const otherEnding = streamEnding(to);
      from.resetAndDestroy();
      assert.equal((await otherEnding).ending, 'reset', 'the far end sees ECONNRESET, never a clean FIN');
      const { error, bytesIn, bytesOut } = await relay.result;
      assert.equal((error as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET', 'the relay reports the reset');
      assert.ok(farRelaySide.destroyed, 'the other relay socket is destroyed, not left half-open');
      assert.deepEqual([bytesIn, bytesOut], resetter === 'A' ? [4, 0] : [0, 4]);
    });
  }

  test('a relay socket destroyed with an error takes the other down and keeps that error', { timeout: 10_000 }, async () => {
    const { a, inner, outer, result } = await makeRelay();
    a.write('x');
    await once(outer, 'data'); // flowing
    outer.destroy(new Error('boom'));
    const { error } = await result;
    assert.equal(error?.message, 'boom');
    assert.ok(inner.destroyed);
  });

  test('a side already destroyed: both torn down at once, with an error', { timeout: 10_000 }, async () => {
    const [a, outer] = await socketPair();
    const [inner, b] = await socketPair();
    opened.push(a, outer, inner, b);
    b.on('error', () => {});
    const aEnded = streamEnding(a);
    inner.destroy();
    const { error } = await joinConns(outer, inner);
    assert.ok(error);
    assert.ok(outer.destroyed);
    assert.equal((await aEnded).ending, 'reset', 'a relay that could not start is a failure to its peer');
  });

  test('bytes already read off a socket and put back (unshift) are relayed first', { timeout: 10_000 }, async () => {
    const [a, outer] = await socketPair();
    const [inner, b] = await socketPair();
    opened.push(a, outer, inner, b);
    // What FrameReader.detach does with the user bytes that followed NewWorkConn.
    b.write('early bytes');
    const early = await readBytes(inner, 'early bytes'.length);
    inner.pause();
    inner.unshift(early);
    const result = joinConns(outer, inner);
    const atA = readAll(a);
    b.end(' then more');
    assert.equal((await atA).toString(), 'early bytes then more');
    a.end();
    assert.equal((await result).bytesOut, 'early bytes then more'.length);
  });
});

const MiB = 1024 * 1024;
const TOTAL = 64 * MiB;
const CHUNK = 64 * 1024;
/** Far above what a relay that respects backpressure holds (a few socket buffers). */
const RELAY_BUFFER_LIMIT = 4 * MiB;

/** What the relay process holds in user space: both relay sockets, both directions. */
function relayBuffered({ outer, inner }: Relay): number {
  return outer.readableLength + outer.writableLength + inner.readableLength + inner.writableLength;
}

/**
 * Writes TOTAL bytes as fast as `writer` accepts them (waiting for 'drain' only when
 * write() says so), each chunk stamped with its index so a reordering changes the hash.
 */
async function fastWriter(writer: Socket, sample: () => void): Promise<{ hash: string; refusals: number }> {
  const hash = createHash('sha256');
  const block = randomBytes(CHUNK);
  let refusals = 0;
  for (let i = 0; i < TOTAL / CHUNK; i++) {
    const chunk = Buffer.from(block);
    chunk.writeUInt32BE(i, 0);
    hash.update(chunk);
    sample();
    if (!writer.write(chunk)) {
      refusals++;
      await once(writer, 'drain');
    }
  }
  writer.end();
  return { hash: hash.digest('hex'), refusals };
}

/** Reads one chunk, then pauses for a timer tick before the next: much slower than loopback. */
function slowReader(reader: Socket, sample: () => void): Promise<{ hash: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    reader.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      sample();
      reader.pause();
      setTimeout(() => reader.resume(), 1);
    });
    reader.once('end', () => resolve({ hash: hash.digest('hex'), bytes }));
    reader.once('error', reject);
  });
}

describe('joinConns backpressure', () => {
  for (const direction of ['A → B', 'B → A'] as const) {
    test(`64 MiB ${direction} to a slow reader: the relay's buffers stay bounded`, { timeout: 30_000 }, async () => {
      const relay = await makeRelay();
      const [writer, reader] = direction === 'A → B' ? [relay.a, relay.b] : [relay.b, relay.a];
      let maxBuffered = 0;
      let maxWriterBuffered = 0;
      const sample = (): void => {
        maxBuffered = Math.max(maxBuffered, relayBuffered(relay));
        maxWriterBuffered = Math.max(maxWriterBuffered, writer.writableLength);
      };
      const received = slowReader(reader, sample);
      const sent = await fastWriter(writer, sample);
      const got = await received;
      reader.end();
      const result = await relay.result;

      assert.equal(got.bytes, TOTAL);
      assert.equal(got.hash, sent.hash);
      assert.ok(sent.refusals > 0, 'the writer was told to wait (write() returned false)');
      assert.ok(maxBuffered < RELAY_BUFFER_LIMIT, `the relay buffered up to ${maxBuffered} bytes`);
      assert.ok(maxWriterBuffered < RELAY_BUFFER_LIMIT, `the writer buffered up to ${maxWriterBuffered} bytes`);
      assert.equal(result.error, undefined);
      assert.deepEqual([result.bytesIn, result.bytesOut], direction === 'A → B' ? [TOTAL, 0] : [0, TOTAL], 'byte counts match what was sent');
    });
  }
});

describe('joinConns and the kernel', () => {
  test('a reset Linux reads as an end of stream (it met unread bytes) is still passed on as a reset', { timeout: 10_000 }, async () => {
    const [a, outer] = await socketPair();
    const [inner, b] = await socketPair();
    opened.push(a, outer, inner, b);
    b.on('error', () => {});
    // A's last bytes and its reset are in outer's kernel before the relay reads anything.
    const outerState = kernelTcpState(outer);
    a.on('error', () => {});
    a.write('x');
    a.resetAndDestroy();
    await eventually(() => outerState() === undefined, { message: 'the reset to reach the kernel' });
    const atB = streamEnding(b);
    const result = await joinConns(outer, inner);
    assert.match(result.error?.message ?? '', /ECONNRESET/);
    // B may read that reset as an end of stream too (the relayed 'x' was unread): the kernel's TCP
    // table tells them apart, it keeps a conn that got a real FIN.
    const atBEnd = await atB;
    assert.ok(atBEnd.ending === 'reset' || atBEnd.kernelState === undefined, `passed on as a clean end: ${JSON.stringify(atBEnd)}`);
  });
});

/** An inner conn the test pushes chunks into, several in one turn (as a mux stream hands on a frame that came in several reads). */
class BurstConn extends Duplex {
  bytesRead = 0;
  bytesWritten = 0;
  setNoDelay(): this {
    return this;
  }
  resetAndDestroy(): this {
    return this.destroy();
  }
  override _read(): void {}
  override _write(_chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    callback();
  }
}

describe('joinConns writing out', () => {
  test('chunks passed in one turn reach the outer socket as one write', { timeout: 10_000 }, async () => {
    const [a, outer] = await socketPair();
    opened.push(a, outer);
    a.on('error', () => {});
    const inner = new BurstConn();
    const writes: number[] = [];
    const write = outer._write.bind(outer);
    const writev = outer._writev!.bind(outer);
    outer._write = (chunk: Buffer, encoding, callback) => (writes.push(1), write(chunk, encoding, callback));
    outer._writev = (chunks, callback) => (writes.push(chunks.length), writev(chunks, callback));
    const result = joinConns(outer, inner);
    after(() => inner.destroy());
    const pieces = [randomBytes(16_000), randomBytes(16_000), randomBytes(9)];
    const atA = readBytes(a, 32_009);
    await new Promise((resolve) => setImmediate(resolve));
    for (const piece of pieces) inner.push(piece);
    assert.deepEqual(await atA, Buffer.concat(pieces));
    assert.deepEqual(writes, [3], 'one writev of the three chunks');
    inner.destroy();
    await result;
  });

  test('toward a socket that does not read, at most 64 KiB plus one chunk is queued before the source pauses', { timeout: 20_000 }, async () => {
    const [stalled, outer] = await socketPair();
    opened.push(stalled, outer);
    stalled.on('error', () => {});
    stalled.pause();
    // A source that always has more: one 64 KiB chunk each time it is read, several per turn.
    const chunk = randomBytes(64 * 1024);
    class Flood extends BurstConn {
      override _read(): void {
        for (let i = 0; i < 3; i++) this.push(chunk);
      }
    }
    const inner = new Flood();
    const result = joinConns(outer, inner);
    after(() => inner.destroy());
    // Once the kernel's buffers are full the relay pauses the source for good.
    await eventually(() => inner.isPaused() && outer.writableLength > 0, { message: 'the flood to pause behind the stalled socket', timeout: 15_000 });
    assert.ok(outer.writableLength <= 64 * 1024 + chunk.length, `${outer.writableLength} bytes queued toward the stalled socket`);
    inner.destroy();
    await result;
  });
});
