import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { MuxResetError, MuxSession, type MuxStream } from '../../src/net/index.js';
import {
  encodeMuxFrame,
  encodeMuxHeader,
  encodeMuxOpen,
  encodeMuxReset,
  encodeMuxWindow,
  MuxDecoder,
  MuxFrameType,
  MUX_INITIAL_WINDOW,
  MUX_STREAM_WINDOW,
  type ProtocolError,
  type StartWorkConn,
} from '../../src/protocol/index.js';
import { kernelTcpState, socketPair, withDeadline } from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

/** A mux conn on a real loopback TCP pair: the server's end opens, the client's accepts. */
interface MuxPair {
  opener: MuxSession;
  acceptor: MuxSession;
  /** Streams the acceptor was given, in order, with their StartWorkConn. */
  accepted: Array<{ stream: MuxStream; start: StartWorkConn }>;
  nextAccepted(): Promise<{ stream: MuxStream; start: StartWorkConn }>;
  openerClosed: Promise<{ reason: string; error?: ProtocolError }>;
  acceptorClosed: Promise<{ reason: string; error?: ProtocolError }>;
}

async function muxPair(): Promise<MuxPair> {
  const [near, far] = await socketPair();
  const accepted: MuxPair['accepted'] = [];
  const waiting: Array<(entry: MuxPair['accepted'][number]) => void> = [];
  let openerClosed!: (value: { reason: string; error?: ProtocolError }) => void;
  let acceptorClosed!: (value: { reason: string; error?: ProtocolError }) => void;
  const pair: MuxPair = {
    opener: new MuxSession(near, 'opener', { onClosed: (reason, error) => openerClosed({ reason, ...(error ? { error } : {}) }) }),
    acceptor: new MuxSession(far, 'acceptor', {
      onStream: (stream, start) => {
        // As the relay does: a stream's error is an outcome to see, never a crash.
        stream.on('error', () => {});
        const entry = { stream, start };
        const waiter = waiting.shift();
        if (waiter) waiter(entry);
        else accepted.push(entry);
      },
      onClosed: (reason, error) => acceptorClosed({ reason, ...(error ? { error } : {}) }),
    }),
    accepted,
    nextAccepted: () => {
      const ready = accepted.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
    },
    openerClosed: new Promise((resolve) => (openerClosed = resolve)),
    acceptorClosed: new Promise((resolve) => (acceptorClosed = resolve)),
  };
  const open = pair.opener.open.bind(pair.opener);
  pair.opener.open = (start) => open(start).on('error', () => {});
  return pair;
}

function start(pairingId: string): StartWorkConn {
  return { type: 'StartWorkConn', app: 'echo', pairingId };
}

/** Everything a stream delivers until its end, or the error that ended it. */
function collect(stream: MuxStream): Promise<{ data: Buffer; error?: Error }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve({ data: Buffer.concat(chunks) }));
    stream.once('error', (error) => resolve({ data: Buffer.concat(chunks), error }));
  });
}

function closed(stream: MuxStream): Promise<void> {
  return new Promise((resolve) => (stream.closed ? resolve() : stream.once('close', () => resolve())));
}

const digest = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
const turn = (ms = 20): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('mux conn on real sockets', () => {
  test('a stream carries bytes both ways, each direction half-closed on its own, and ends without a reset', async () => {
    const { opener, acceptor, nextAccepted } = await muxPair();
    const server = opener.open(start('p1'));
    const { stream: client, start: announced } = await nextAccepted();
    assert.deepEqual(announced, start('p1'));
    const fromServer = collect(client);
    server.write('request');
    server.end();
    const seen = await fromServer;
    assert.equal(seen.data.toString(), 'request');
    assert.equal(seen.error, undefined);
    // The other direction still flows after the first one ended.
    const fromClient = collect(server);
    client.write('answer after the FIN');
    client.end();
    const back = await fromClient;
    assert.equal(back.data.toString(), 'answer after the FIN');
    assert.equal(back.error, undefined);
    await Promise.all([closed(server), closed(client)]);
    assert.equal(opener.streamCount, 0, 'the opener retired the stream');
    assert.equal(acceptor.streamCount, 0, 'the acceptor retired the stream');
    opener.destroy('test over');
  });

  test('a stream whose reader stops holds at most its window, and delivers every byte once read again, while another stream flows', async () => {
    const { opener, nextAccepted } = await muxPair();
    const slow = opener.open(start('slow'));
    const fast = opener.open(start('fast'));
    const { stream: slowEnd } = await nextAccepted();
    const { stream: fastEnd } = await nextAccepted();
    slowEnd.pause();
    const payload = randomBytes(8 * MUX_STREAM_WINDOW);
    slow.end(payload);
    await eventually(() => slow.bytesWritten >= MUX_INITIAL_WINDOW, { message: 'the window to fill' });
    await turn(100);
    assert.equal(slow.bytesWritten, MUX_INITIAL_WINDOW, 'the sender stops at the initial window while the reader never read');
    assert.ok(slowEnd.readableLength <= MUX_INITIAL_WINDOW, `the receiver holds ${slowEnd.readableLength} bytes, more than the window`);
    // Not held up behind the stalled stream.
    const fastSeen = collect(fastEnd);
    fast.end('not held up');
    assert.equal((await fastSeen).data.toString(), 'not held up');
    const slowSeen = collect(slowEnd);
    slowEnd.resume();
    const { data, error } = await slowSeen;
    assert.equal(error, undefined);
    assert.equal(data.length, payload.length);
    assert.equal(digest(data), digest(payload));
    opener.destroy('test over');
  });

  test('a destroyed stream reaches the far end as a reset naming why; the other streams flow on', async () => {
    const { opener, nextAccepted } = await muxPair();
    const doomed = opener.open(start('doomed'));
    const other = opener.open(start('other'));
    const { stream: doomedEnd } = await nextAccepted();
    const { stream: otherEnd } = await nextAccepted();
    const doomedSeen = collect(doomedEnd);
    doomed.write('partial');
    await eventually(() => doomedEnd.bytesRead === 7, { message: 'the partial bytes' });
    doomed.resetAndDestroy('the user reset');
    const { error } = await doomedSeen;
    assert.ok(error instanceof MuxResetError, `expected a reset, got ${String(error)}`);
    assert.equal(error.code, 'ECONNRESET');
    assert.equal(error.byPeer, true);
    assert.match(error.message, /the user reset/);
    const otherSeen = collect(other);
    otherEnd.end('still here');
    assert.equal((await otherSeen).data.toString(), 'still here');
    opener.destroy('test over');
  });

  test("a stream destroyed after its own FIN but before the far end's is still a reset there", async () => {
    const { opener, nextAccepted } = await muxPair();
    const server = opener.open(start('p'));
    const { stream: client } = await nextAccepted();
    const clientSeen = collect(client);
    server.end('all of it');
    await eventually(() => client.readableEnded || client.bytesRead === 9, { message: 'the bytes' });
    // The far end's direction is still open: ending now loses whatever it had left to send.
    server.destroy();
    await clientSeen;
    const writeError = await new Promise<Error | undefined>((resolve) => {
      client.once('error', resolve);
      client.once('close', () => resolve(undefined));
    });
    assert.ok(writeError instanceof MuxResetError || client.errored instanceof MuxResetError, 'the far end saw no reset');
    opener.destroy('test over');
  });

  for (const role of ['opener', 'acceptor'] as const) {
    test(`the far end's FIN alone closes the ${role}'s end of the mux conn too: nothing left in CLOSE-WAIT`, async () => {
      const pair = await muxPair();
      const stream = pair.opener.open(start('a'));
      const [ours, theirs] = role === 'opener' ? [pair.opener, pair.acceptor] : [pair.acceptor, pair.opener];
      const conn = ours.conn as Socket;
      const kernelState = kernelTcpState(conn);
      const seen = collect(role === 'opener' ? stream : (await pair.nextAccepted()).stream);
      try {
        (theirs.conn as Socket).end();
        await withDeadline(
          new Promise((resolve) => (conn.closed ? resolve(undefined) : conn.once('close', resolve))),
          5000,
          "our end of the mux conn to close after the far end's FIN",
        );
        assert.match((await (role === 'opener' ? pair.openerClosed : pair.acceptorClosed)).reason, /ended/);
        assert.ok((await seen).error instanceof MuxResetError, 'a stream of the ended mux conn was not reset');
        await eventually(() => kernelState() !== 'CLOSE_WAIT', { message: 'the kernel to let the conn go' });
      } finally {
        conn.destroy();
      }
    });
  }

  test('a lost mux conn resets every stream on both ends, never a clean end', async () => {
    const { opener, nextAccepted, acceptorClosed, openerClosed } = await muxPair();
    const streams = [opener.open(start('a')), opener.open(start('b'))];
    const ends = [(await nextAccepted()).stream, (await nextAccepted()).stream];
    const seen = [...streams, ...ends].map(collect);
    streams[0]!.write('half way');
    (opener.conn as Socket).destroy();
    for (const outcome of await Promise.all(seen)) {
      assert.ok(outcome.error instanceof MuxResetError, `a stream ended with ${String(outcome.error)} instead of a reset`);
      assert.equal(outcome.error.byPeer, false);
    }
    assert.match((await acceptorClosed).reason, /mux conn/);
    assert.equal((await openerClosed).error, undefined);
  });
});

describe('mux conn against a hostile peer', () => {
  /** The client's end of a mux conn, fed raw bytes by the test as the server. */
  async function acceptorWithRawServer() {
    const [raw, far] = await socketPair();
    raw.on('error', () => {});
    const streams: MuxStream[] = [];
    let closedWith!: (value: { reason: string; error?: ProtocolError }) => void;
    const closedPromise = new Promise<{ reason: string; error?: ProtocolError }>((resolve) => (closedWith = resolve));
    const session = new MuxSession(far, 'acceptor', {
      onStream: (stream) => streams.push(stream.on('error', () => {})),
      onClosed: (reason, error) => closedWith({ reason, ...(error ? { error } : {}) }),
    });
    return { raw, session, streams, closed: closedPromise };
  }

  const formatBreaks: Array<[string, Buffer]> = [
    ['an unknown frame type', encodeMuxHeader(9 as 1, 1, 0)],
    ['a DATA frame over the size limit', encodeMuxHeader(MuxFrameType.data, 1, 300 * 1024)],
    ['a frame for stream 0', encodeMuxFrame(MuxFrameType.fin, 0)],
    ['a frame for a stream never opened', encodeMuxFrame(MuxFrameType.data, 5, Buffer.from('x'))],
    ['an OPEN that is not JSON', encodeMuxFrame(MuxFrameType.open, 1, Buffer.from('{nope'))],
    ['an OPEN carrying another message', encodeMuxFrame(MuxFrameType.open, 1, Buffer.from(JSON.stringify({ type: 'Ping', seq: 1 })))],
    ['a WINDOW of 0', Buffer.concat([encodeMuxOpen(1, start('p')), encodeMuxWindow(1, 0)])],
    ['a stream id reused', Buffer.concat([encodeMuxOpen(2, start('p')), encodeMuxOpen(2, start('q'))])],
  ];
  for (const [what, bytes] of formatBreaks) {
    test(`${what} closes the mux conn with a protocol error naming it`, async () => {
      const { raw, streams, closed } = await acceptorWithRawServer();
      raw.write(bytes);
      const { error } = await closed;
      assert.ok(error !== undefined, 'no protocol error');
      for (const stream of streams) assert.ok(stream.destroyed, 'a stream outlived its conn');
      raw.destroy();
    });
  }

  test('the client opening a stream is a protocol error on the server', async () => {
    const [near, raw] = await socketPair();
    raw.on('error', () => {});
    const closedPromise = new Promise<ProtocolError | undefined>((resolve) => new MuxSession(near, 'opener', { onClosed: (_reason, error) => resolve(error) }));
    raw.write(encodeMuxOpen(1, start('p')));
    const error = await closedPromise;
    assert.match(error?.message ?? '', /only the server opens streams/);
  });

  test('DATA past the window resets that stream alone; the conn and the other streams carry on', async () => {
    const { raw, session, streams } = await acceptorWithRawServer();
    raw.write(Buffer.concat([encodeMuxOpen(1, start('greedy')), encodeMuxOpen(2, start('fair'))]));
    await eventually(() => streams.length === 2, { message: 'both streams' });
    const greedy = streams[0]!;
    greedy.pause();
    const greedySeen = new Promise<Error | undefined>((resolve) => greedy.once('error', resolve));
    const chunk = Buffer.alloc(256 * 1024, 1);
    for (let sent = 0; sent <= MUX_STREAM_WINDOW; sent += chunk.length) raw.write(Buffer.concat([encodeMuxHeader(MuxFrameType.data, 1, chunk.length), chunk]));
    const error = await greedySeen;
    assert.match(error?.message ?? '', /window/);
    // The reset went back to the sender.
    const frames: Array<{ type: string; id: number; text?: string }> = [];
    const decoder = new MuxDecoder({
      onOpen: () => frames.push({ type: 'open', id: 0 }),
      onData: (id) => frames.push({ type: 'data', id }),
      onFin: (id) => frames.push({ type: 'fin', id }),
      onReset: (id, text) => frames.push({ type: 'reset', id, text }),
      onWindow: (id) => frames.push({ type: 'window', id }),
    });
    raw.on('data', (bytes: Buffer) => decoder.push(bytes));
    const fair = streams[1]!;
    const fairSeen = collect(fair);
    raw.write(Buffer.concat([encodeMuxFrame(MuxFrameType.data, 2, Buffer.from('fine')), encodeMuxFrame(MuxFrameType.fin, 2)]));
    assert.equal((await fairSeen).data.toString(), 'fine');
    await eventually(() => frames.some((frame) => frame.type === 'reset' && frame.id === 1), { message: 'the RST of stream 1' });
    assert.equal(session.isClosed, false);
    raw.destroy();
  });

  test('a DATA frame that arrives in several reads reaches the reader once whole, in one burst', { timeout: 10_000 }, async () => {
    const { raw, session, streams } = await acceptorWithRawServer();
    // A failed assertion must not leave the conn holding the test process open.
    try {
      await splitFrameArrivesWhole(raw, session, streams);
    } finally {
      raw.destroy();
      session.destroy('test over');
    }
  });

  async function splitFrameArrivesWhole(raw: Socket, session: MuxSession, streams: MuxStream[]): Promise<void> {
    const open = encodeMuxOpen(1, start('split'));
    raw.write(open);
    await eventually(() => streams.length === 1, { message: 'the stream' });
    // Which read of the mux conn each piece the reader got came in (this listener runs after the session's).
    let reads = 0;
    session.conn.on('data', () => reads++);
    const seen: Array<{ bytes: number; read: number }> = [];
    streams[0]!.on('data', (chunk: Buffer) => seen.push({ bytes: chunk.length, read: reads }));
    const payload = randomBytes(40_000);
    raw.write(Buffer.concat([encodeMuxHeader(MuxFrameType.data, 1, payload.length), payload.subarray(0, 10_000)]));
    await eventually(() => session.conn.bytesRead >= open.length + 9 + 10_000, { message: 'the first part read' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(seen.length, 0, 'part of a frame was handed on before the frame was whole');
    raw.write(payload.subarray(10_000));
    await eventually(() => seen.reduce((sum, piece) => sum + piece.bytes, 0) === payload.length, { message: 'the whole frame' });
    assert.equal(new Set(seen.map((piece) => piece.read)).size, 1, `the frame's pieces came out of several reads: ${JSON.stringify(seen)}`);
  }

  test("an RST from the server resets the client's stream with its reason", async () => {
    const { raw, streams } = await acceptorWithRawServer();
    raw.write(encodeMuxOpen(1, start('p')));
    await eventually(() => streams.length === 1, { message: 'the stream' });
    const seen = collect(streams[0]!);
    raw.write(encodeMuxReset(1, 'user went away'));
    const { error } = await seen;
    assert.ok(error instanceof MuxResetError);
    assert.match(error.message, /user went away/);
    raw.destroy();
  });
});

describe('mux decoder', () => {
  test('frames split at every byte boundary decode to the same events', () => {
    const wire = Buffer.concat([
      encodeMuxOpen(1, start('p')),
      encodeMuxFrame(MuxFrameType.data, 1, Buffer.from('hello world')),
      encodeMuxWindow(1, 4096),
      encodeMuxFrame(MuxFrameType.fin, 1),
      encodeMuxReset(1, 'why not'),
    ]);
    const events = (pieces: Buffer[]): string[] => {
      const seen: string[] = [];
      let data = '';
      const decoder = new MuxDecoder({
        onOpen: (id, message) => seen.push(`open ${id} ${message.pairingId}`),
        onData: (_id, piece) => (data += piece.toString()),
        onFin: (id) => seen.push(`data ${data}`, `fin ${id}`),
        onReset: (id, reason) => seen.push(`reset ${id} ${reason}`),
        onWindow: (id, increment) => seen.push(`window ${id} ${increment}`),
      });
      for (const piece of pieces) decoder.push(piece);
      return seen;
    };
    const whole = events([wire]);
    assert.deepEqual(whole, ['open 1 p', 'window 1 4096', 'data hello world', 'fin 1', 'reset 1 why not']);
    for (let cut = 1; cut < wire.length; cut++) assert.deepEqual(events([wire.subarray(0, cut), wire.subarray(cut)]), whole, `cut at ${cut}`);
    assert.deepEqual(events([...wire].map((byte) => Buffer.from([byte]))), whole);
  });
});
