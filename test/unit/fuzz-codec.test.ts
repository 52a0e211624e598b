import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  MAX_FRAME_BYTES,
  MESSAGE_TYPES,
  ProtocolError,
  validateMessage,
  type Message,
} from '../../src/protocol/index.js';
import { chunked } from '../helpers/chunks.js';

const RUNS = 2000;

/** Feeds chunks to a fresh decoder; returns the messages, or the ProtocolError it stopped on. */
function decodeAll(chunks: Buffer[]): { messages: Message[]; error?: ProtocolError; maxBuffered: number } {
  const decoder = new FrameDecoder();
  const messages: Message[] = [];
  let maxBuffered = 0;
  try {
    for (const chunk of chunks) {
      decoder.push(chunk);
      for (let message = decoder.next(); message !== undefined; message = decoder.next()) messages.push(message);
      // Left waiting for more bytes after a drain: at most one unfinished frame.
      maxBuffered = Math.max(maxBuffered, decoder.bufferedBytes);
    }
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error; // anything else is a bug
    return { messages, error, maxBuffered };
  }
  return { messages, maxBuffered };
}

const text = (max: number) => fc.string({ maxLength: max });
const validMessage: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant('Hello' as const), version: fc.nat(), group: text(64), clientId: text(64) }),
  fc.record({ type: fc.constant('Challenge' as const), nonce: text(64) }),
  fc.record({
    type: fc.constant('Login' as const),
    proof: fc.hexaString({ maxLength: 64 }),
    apps: fc.array(fc.record({ name: text(32), remotePort: fc.integer({ min: 0, max: 65535 }) }), { maxLength: 5 }),
  }),
  fc.record({ type: fc.constantFrom('Ping' as const, 'Pong' as const), seq: fc.nat() }),
  fc.record(
    {
      type: fc.constantFrom('ReqWorkConn' as const, 'StartWorkConn' as const),
      app: text(32),
      pairingId: text(32),
      user: fc.record({
        remoteAddress: text(64),
        remotePort: fc.integer({ min: 0, max: 65535 }),
        localAddress: text(64),
        localPort: fc.integer({ min: 0, max: 65535 }),
      }),
    },
    { requiredKeys: ['type', 'app', 'pairingId'] },
  ),
  fc.record({ type: fc.constant('NewWorkConn' as const), sessionId: text(32), pairingId: text(32), proof: fc.hexaString({ maxLength: 64 }) }),
  fc.record({ type: fc.constant('WorkConnFailed' as const), pairingId: text(32), reason: text(200) }),
  fc.record({ type: fc.constant('HealthReport' as const), app: text(32), healthy: fc.boolean(), reason: text(200) }),
  fc.record({ type: fc.constant('Goodbye' as const), code: fc.constantFrom('TAKEN_OVER' as const, 'SHUTDOWN' as const, 'KICKED' as const), reason: text(200) }),
);

test('fuzz: valid frames split at arbitrary points decode to exactly what was sent', { timeout: 60_000 }, () => {
  let frames = 0;
  fc.assert(
    fc.property(fc.array(validMessage, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (messages, cuts) => {
      frames += messages.length;
      const wire = Buffer.concat(messages.map((message) => encodeFrame(message)));
      const { messages: decoded, error } = decodeAll(chunked(wire, cuts));
      assert.equal(error, undefined);
      assert.deepEqual(
        decoded,
        messages.map((message) => validateMessage(JSON.parse(JSON.stringify(message)))),
      );
    }),
    { numRuns: RUNS },
  );
  console.log(`fuzz: ${RUNS} runs, ${frames} valid frames split at random points, all decoded intact`);
});

test('fuzz: arbitrary bytes never crash the decoder and never make it buffer past one frame', { timeout: 60_000 }, () => {
  let errors = 0;
  let bytes = 0;
  const header = fc.integer({ min: 0, max: 0xffffffff }).map((length) => {
    const head = Buffer.alloc(FRAME_HEADER_BYTES);
    head.writeUInt32BE(length, 0);
    return head;
  });
  const garbage = fc.oneof(
    fc.uint8Array({ maxLength: 2048 }).map((array) => Buffer.from(array)),
    // A plausible header followed by junk: huge lengths, zero lengths, truncated bodies.
    fc.tuple(header, fc.uint8Array({ maxLength: 512 })).map(([head, body]) => Buffer.concat([head, Buffer.from(body)])),
    // A real frame with one byte flipped.
    fc.tuple(validMessage, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([message, at, flip]) => {
      const frame = Buffer.from(encodeFrame(message));
      frame[at % frame.length]! ^= flip;
      return frame;
    }),
  );
  fc.assert(
    fc.property(fc.array(garbage, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 8 }), (parts, cuts) => {
      const wire = Buffer.concat(parts);
      bytes += wire.length;
      const { error, maxBuffered } = decodeAll(chunked(wire, cuts));
      if (error) errors++;
      // Whatever it waits on is one frame no larger than the limit (a bigger length was refused).
      assert.ok(maxBuffered < FRAME_HEADER_BYTES + MAX_FRAME_BYTES);
    }),
    { numRuns: RUNS },
  );
  console.log(`fuzz: ${RUNS} runs, ${bytes} random bytes fed to FrameDecoder, ${errors} rejected with a ProtocolError, 0 crashes`);
});

test('fuzz: validateMessage turns any JSON value into a Message or a BAD_MESSAGE, nothing else', { timeout: 60_000 }, () => {
  let accepted = 0;
  let rejected = 0;
  const nearlyValid = fc
    .tuple(validMessage, fc.constantFrom(...MESSAGE_TYPES, 'Nope', ''), fc.dictionary(text(12), fc.jsonValue(), { maxKeys: 4 }))
    .map(([message, type, extra]) => ({ ...message, ...extra, type }) as unknown);
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), nearlyValid, fc.anything()), (value) => {
      let message: Message;
      try {
        message = validateMessage(value);
      } catch (error) {
        assert.ok(error instanceof ProtocolError, `threw ${String(error)}`);
        assert.equal(error.code, 'BAD_MESSAGE');
        rejected++;
        return;
      }
      accepted++;
      assert.ok((MESSAGE_TYPES as readonly string[]).includes(message.type));
      // What passed re-encodes within the frame limit and validates to itself.
      assert.deepEqual(validateMessage(JSON.parse(JSON.stringify(message))), message);
    }),
    { numRuns: RUNS * 2 },
  );
  console.log(`fuzz: validateMessage ${RUNS * 2} runs: ${accepted} accepted, ${rejected} rejected with BAD_MESSAGE, 0 crashes`);
});
