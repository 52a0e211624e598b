import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DATAGRAM_HEADER_BYTES, DatagramDecoder, encodeDatagram, validateMessage } from '../../src/protocol/index.js';
import { chunked } from '../helpers/chunks.js';

function decodeAll(chunks: Buffer[]): { datagrams: Buffer[]; maxHeld: number } {
  const decoder = new DatagramDecoder();
  const datagrams: Buffer[] = [];
  let maxHeld = 0;
  for (const chunk of chunks) {
    // Copied at once: a view into a chunk is only valid until the callback returns.
    decoder.push(chunk, (payload) => datagrams.push(Buffer.from(payload)));
    maxHeld = Math.max(maxHeld, decoder.bufferedBytes);
  }
  assert.equal(decoder.bufferedBytes, 0, 'nothing left over after whole frames');
  return { datagrams, maxHeld };
}

test('datagrams survive any split of the stream: never merged, never split, order kept', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 3000 }), { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (payloads, cuts) => {
      const stream = Buffer.concat(payloads.map((payload) => encodeDatagram(payload)));
      const { datagrams, maxHeld } = decodeAll(chunked(stream, cuts));
      assert.deepEqual(
        datagrams.map((d) => d.toString('hex')),
        payloads.map((p) => Buffer.from(p).toString('hex')),
      );
      // At most one frame is ever held, header included.
      assert.ok(maxHeld <= DATAGRAM_HEADER_BYTES + Math.max(0, ...payloads.map((p) => p.length)));
    }),
    { numRuns: 1000 },
  );
});

test('the largest UDP payload frames and decodes byte by byte; a larger one cannot be framed', () => {
  const payload = Buffer.alloc(65_507, 7);
  const frame = encodeDatagram(payload);
  assert.equal(frame.readUInt16BE(0), 65_507);
  const { datagrams } = decodeAll([...frame].map((byte) => Buffer.from([byte])));
  assert.deepEqual(datagrams, [payload]);
  assert.throws(() => encodeDatagram(Buffer.alloc(65_536)), RangeError);
});

test('an empty datagram is a frame of its own (UDP allows it)', () => {
  const stream = Buffer.concat([encodeDatagram(Buffer.alloc(0)), encodeDatagram(Buffer.from('x')), encodeDatagram(Buffer.alloc(0))]);
  assert.deepEqual(
    decodeAll([stream]).datagrams.map((d) => d.toString()),
    ['', 'x', ''],
  );
});

test('protocol: udp is the only protocol mark a message may carry', () => {
  assert.deepEqual(validateMessage({ type: 'StartWorkConn', app: 'dns', pairingId: 'p', protocol: 'udp' }), {
    type: 'StartWorkConn',
    app: 'dns',
    pairingId: 'p',
    protocol: 'udp',
  });
  assert.deepEqual(validateMessage({ type: 'ReqWorkConn', app: 'dns', pairingId: 'p' }), { type: 'ReqWorkConn', app: 'dns', pairingId: 'p' });
  // Not silently taken for TCP: an unknown protocol is a bad message.
  assert.throws(() => validateMessage({ type: 'ReqWorkConn', app: 'dns', pairingId: 'p', protocol: 'sctp' }), { code: 'BAD_MESSAGE' });
  assert.throws(
    () =>
      validateMessage({
        type: 'LoginResp',
        sessionId: 's',
        heartbeatIntervalMs: 1,
        heartbeatTimeoutMs: 2,
        apps: [{ name: 'a', remotePort: 1, state: 'listening', protocol: 'tcp' }],
      }),
    { code: 'BAD_MESSAGE' },
  );
});
