import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  MAX_FRAME_BYTES,
  MESSAGE_TYPES,
  PROTOCOL_VERSION,
  ProtocolError,
  type Message,
  type MessageType,
  type ProtocolErrorCode,
} from '../../src/protocol/index.js';

/** One sample per message type: a type added to the union without a sample does not compile. */
const SAMPLES: { [T in MessageType]: Extract<Message, { type: T }> } = {
  Hello: { type: 'Hello', version: PROTOCOL_VERSION, group: 'office-a', clientId: 'client-1' },
  Challenge: { type: 'Challenge', nonce: 'bm9uY2Utbm9uY2Utbm9uY2U' },
  Login: {
    type: 'Login',
    proof: 'ab'.repeat(32),
    apps: [
      { name: 'ssh', remotePort: 6022 },
      { name: 'web', remotePort: 0 },
    ],
  },
  LoginResp: {
    type: 'LoginResp',
    sessionId: 'session-1',
    heartbeatIntervalMs: 10_000,
    heartbeatTimeoutMs: 30_000,
    apps: [
      { name: 'ssh', remotePort: 6022, state: 'listening' },
      { name: 'web', remotePort: 6080, state: 'failed', error: 'port 6080 is already in use' },
    ],
    warnings: ['app "db" is in the client\'s group file but not in the server\'s registry: it is not exposed'],
  },
  GroupApps: {
    type: 'GroupApps',
    apps: [
      { name: 'ssh', local: { host: '127.0.0.1', port: 22 }, remotePort: 6022 },
      { name: 'dns', local: { host: '::1', port: 53 }, type: 'udp', remotePort: 6053 },
    ],
  },
  AppsRefused: { type: 'AppsRefused', apps: [{ name: 'db', reason: 'local target 10.0.0.5:5432 is outside allowLocal (127.0.0.0/8, ::1)' }] },
  Ping: { type: 'Ping', seq: 7 },
  Pong: { type: 'Pong', seq: 7 },
  ReqWorkConn: { type: 'ReqWorkConn', app: 'ssh', pairingId: 'pairing-1' },
  ReqPooledWorkConns: { type: 'ReqPooledWorkConns', pairingIds: ['pool-1', 'pool-2', 'pool-3'] },
  ReqMuxConn: { type: 'ReqMuxConn', pairingId: 'mux-1' },
  StartWorkConn: {
    type: 'StartWorkConn',
    app: 'ssh',
    pairingId: 'pool-1',
    user: { remoteAddress: '2001:db8::7', remotePort: 51000, localAddress: '::1', localPort: 6022 },
  },
  AppsChanged: {
    type: 'AppsChanged',
    opened: [
      { name: 'metrics', remotePort: 6090, state: 'listening' },
      { name: 'admin', remotePort: 6091, state: 'failed', error: 'port 6091 is already in use' },
    ],
    closed: ['web'],
  },
  NewWorkConn: { type: 'NewWorkConn', sessionId: 'session-1', pairingId: 'pairing-1', proof: 'cd'.repeat(32) },
  // Non-ASCII on purpose: splitting the frame at every byte also splits a multi-byte character.
  WorkConnFailed: { type: 'WorkConnFailed', pairingId: 'pairing-1', reason: 'local app unreachable: café ☕ ECONNREFUSED' },
  HealthReport: { type: 'HealthReport', app: 'web', healthy: false, reason: '127.0.0.1:8080: ECONNREFUSED' },
  Goodbye: { type: 'Goodbye', code: 'SHUTDOWN', reason: 'the groupclient is stopping' },
  Visit: { type: 'Visit', visitId: 'visit-1', visitor: 'redis', group: 'office-a', app: 'redis', protocol: 'udp', proof: 'cd'.repeat(32) },
  VisitRefused: {
    type: 'VisitRefused',
    visitId: 'visit-1',
    visitorGroup: 'office-b',
    visitor: 'redis',
    group: 'office-a',
    app: 'redis',
    reason: 'not in allowVisitors',
  },
};

const samples = MESSAGE_TYPES.map((type) => SAMPLES[type]);

/** A frame with any body, bypassing encodeFrame's checks (what a hostile peer can send). */
function rawFrame(body: string | Buffer, length?: number): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(length ?? bytes.length, 0);
  return Buffer.concat([header, bytes]);
}

function decodeAll(decoder: FrameDecoder): Message[] {
  const out: Message[] = [];
  for (let message = decoder.next(); message !== undefined; message = decoder.next()) out.push(message);
  return out;
}

function assertProtocolError(fn: () => unknown, code: ProtocolErrorCode): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  });
}

function decodeOne(frame: Buffer): Message | undefined {
  const decoder = new FrameDecoder();
  decoder.push(frame);
  return decoder.next();
}

describe('FrameDecoder fed raw bytes', () => {
  test('every message type survives an encode/decode round trip', () => {
    for (const sample of samples) assert.deepEqual(decodeOne(encodeFrame(sample)), sample, sample.type);
  });

  test('a frame split at every byte boundary decodes once, and only when complete', () => {
    for (const sample of samples) {
      const frame = encodeFrame(sample);
      for (let cut = 1; cut < frame.length; cut++) {
        const decoder = new FrameDecoder();
        decoder.push(frame.subarray(0, cut));
        assert.equal(decoder.next(), undefined, `${sample.type} cut at ${cut}`);
        decoder.push(frame.subarray(cut));
        assert.deepEqual(decoder.next(), sample, `${sample.type} cut at ${cut}`);
        assert.equal(decoder.next(), undefined);
        assert.equal(decoder.bufferedBytes, 0);
      }
    }
  });

  test('a frame fed one byte at a time', () => {
    const frame = encodeFrame(SAMPLES.WorkConnFailed);
    const decoder = new FrameDecoder();
    const seen: Message[] = [];
    for (const byte of frame) {
      decoder.push(Buffer.from([byte]));
      seen.push(...decodeAll(decoder));
    }
    assert.deepEqual(seen, [SAMPLES.WorkConnFailed]);
  });

  test('several frames in one chunk come out one by one, in order', () => {
    const decoder = new FrameDecoder();
    const all = Buffer.concat(samples.map((sample) => encodeFrame(sample)));
    // The last frame is left incomplete: everything before it must still come out.
    decoder.push(all.subarray(0, all.length - 3));
    assert.deepEqual(decodeAll(decoder), samples.slice(0, -1));
    decoder.push(all.subarray(all.length - 3));
    assert.deepEqual(decodeAll(decoder), samples.slice(-1));
  });

  test('an oversized length is rejected as soon as the header is complete, before any body', () => {
    const decoder = new FrameDecoder();
    const header = rawFrame(Buffer.alloc(0), MAX_FRAME_BYTES + 1);
    decoder.push(header.subarray(0, 3));
    assert.equal(decoder.next(), undefined, 'three header bytes are not a length yet');
    decoder.push(header.subarray(3));
    assertProtocolError(() => decoder.next(), 'FRAME_TOO_LARGE');

    const huge = new FrameDecoder();
    huge.push(rawFrame(Buffer.alloc(0), 0xffffffff));
    assertProtocolError(() => huge.next(), 'FRAME_TOO_LARGE');
  });

  test('the maximum is inclusive: a body of exactly the limit passes, one byte more does not', () => {
    const body = (size: number): string => {
      const prefix = '{"type":"Ping","seq":1,"pad":"';
      return `${prefix}${'x'.repeat(size - prefix.length - 2)}"}`;
    };
    const atLimit = new FrameDecoder(200);
    atLimit.push(rawFrame(body(200)));
    assert.deepEqual(atLimit.next(), { type: 'Ping', seq: 1 });

    const over = new FrameDecoder(200);
    over.push(rawFrame(body(201)).subarray(0, FRAME_HEADER_BYTES));
    assertProtocolError(() => over.next(), 'FRAME_TOO_LARGE');
  });

  test('encodeFrame refuses to build a frame over the limit', () => {
    const message: Message = {
      type: 'Login',
      proof: 'ab',
      apps: Array.from({ length: 3000 }, (_, i) => ({ name: `app-${i}-padding-padding`, remotePort: 1 })),
    };
    assertProtocolError(() => encodeFrame(message), 'FRAME_TOO_LARGE');
  });

  test('a zero length is a bad message', () => {
    assertProtocolError(() => decodeOne(rawFrame('')), 'BAD_MESSAGE');
  });

  test('a body that is not JSON is BAD_JSON', () => {
    for (const body of ['{"type":"Ping",', 'not json', '\u0000\u0001', '{"type":"Ping","seq":1}}']) {
      assertProtocolError(() => decodeOne(rawFrame(body)), 'BAD_JSON');
    }
  });

  test('valid JSON that is not a known message is BAD_MESSAGE', () => {
    for (const body of ['{"type":"StartWorkConn"}', '{"type":"ping","seq":1}', '{"seq":1}', '{"type":42}', '42', 'null', '[]', '"Ping"']) {
      assertProtocolError(() => decodeOne(rawFrame(body)), 'BAD_MESSAGE');
    }
  });

  // Each case starts from a sample that decodes, changes one field, and must then fail:
  // so the failure is caused by that field and nothing else.
  const fieldCases: Array<[MessageType, (m: Record<string, unknown>) => void]> = [
    ['Hello', (m) => delete m.version],
    ['Hello', (m) => (m.version = '1')],
    ['Hello', (m) => (m.group = 7)],
    ['Hello', (m) => (m.clientId = 'x'.repeat(129))],
    ['Challenge', (m) => delete m.nonce],
    ['Login', (m) => (m.apps = 'ssh')],
    ['Login', (m) => (m.apps = [{ name: 'ssh', remotePort: 70_000 }])],
    ['Login', (m) => (m.apps = [{ name: 'ssh' }])],
    ['LoginResp', (m) => delete m.sessionId],
    ['LoginResp', (m) => (m.apps = [{ name: 'ssh', remotePort: 6022, state: 'open' }])],
    ['LoginResp', (m) => (m.error = { code: 'NOPE', reason: 'x' })],
    ['LoginResp', (m) => (m.error = 'BAD_SECRET')],
    ['Ping', (m) => (m.seq = -1)],
    ['Ping', (m) => (m.seq = 1.5)],
    ['Pong', (m) => (m.seq = null)],
    ['ReqWorkConn', (m) => delete m.pairingId],
    ['StartWorkConn', (m) => (m.user = '192.0.2.7:51000')],
    ['StartWorkConn', (m) => ((m.user as Record<string, unknown>).remotePort = 70_000)],
    ['StartWorkConn', (m) => delete (m.user as Record<string, unknown>).localAddress],
    ['StartWorkConn', (m) => ((m.user as Record<string, unknown>).remoteAddress = 'x'.repeat(65))],
    ['NewWorkConn', (m) => (m.proof = ['ab'])],
    ['WorkConnFailed', (m) => (m.reason = { text: 'x' })],
    ['WorkConnFailed', (m) => (m.pairingId = 7)],
    ['Goodbye', (m) => (m.code = 'BYE')],
  ];
  test('a missing or mistyped field is BAD_MESSAGE', () => {
    for (const [type, mutate] of fieldCases) {
      const message = structuredClone(SAMPLES[type]) as unknown as Record<string, unknown>;
      assert.deepEqual(decodeOne(rawFrame(JSON.stringify(message))), SAMPLES[type]);
      mutate(message);
      assertProtocolError(() => decodeOne(rawFrame(JSON.stringify(message))), 'BAD_MESSAGE');
    }
  });

  test('a rejected LoginResp round-trips without the success fields', () => {
    const rejected: Message = { type: 'LoginResp', error: { code: 'BAD_SECRET', reason: 'wrong secret for group "office-a"' } };
    assert.deepEqual(decodeOne(encodeFrame(rejected)), rejected);
  });

  test('takeRemainder after a frame returns exactly the raw bytes that followed it', () => {
    const frame = encodeFrame(SAMPLES.NewWorkConn);
    const userBytes = Buffer.from('SSH-2.0-OpenSSH\r\n\u0000\u00ff raw user data');
    // Same chunk as the frame, and more bytes in later chunks.
    const decoder = new FrameDecoder();
    decoder.push(Buffer.concat([frame, userBytes.subarray(0, 5)]));
    decoder.push(userBytes.subarray(5, 9));
    assert.deepEqual(decoder.next(), SAMPLES.NewWorkConn);
    decoder.push(userBytes.subarray(9));
    assert.deepEqual(decoder.takeRemainder(), userBytes);
    assert.equal(decoder.bufferedBytes, 0);
    assert.equal(decoder.takeRemainder().length, 0);

    // Bytes that look like a frame header are still raw user data after takeRemainder.
    const lookalike = new FrameDecoder();
    lookalike.push(Buffer.concat([frame, rawFrame('{"type":"Ping","seq":1}')]));
    assert.deepEqual(lookalike.next(), SAMPLES.NewWorkConn);
    assert.deepEqual(lookalike.takeRemainder(), rawFrame('{"type":"Ping","seq":1}'));
  });
});
