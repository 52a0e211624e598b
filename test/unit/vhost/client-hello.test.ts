import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { test } from 'node:test';
import fc from 'fast-check';
import { readClientHello } from '../../../src/vhost/index.js';

/** The first bytes a real TLS client (Node's OpenSSL) sends for `servername`. */
async function capturedClientHello(servername: string): Promise<Buffer> {
  let received = Buffer.alloc(0);
  const server = createServer((socket) => {
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (readClientHello(received).kind !== 'incomplete') socket.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername, rejectUnauthorized: false });
  await new Promise<void>((resolve) => client.once('error', () => resolve()).once('close', () => resolve()));
  server.close();
  return received;
}

/** The handshake message of `hello` re-cut into TLS records of the given sizes. */
function rerecord(hello: Buffer, sizes: number[]): Buffer {
  const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const records: Buffer[] = [];
  let offset = 0;
  for (let i = 0; offset < body.length; i++) {
    const size = Math.min(sizes[i % sizes.length]!, body.length - offset);
    const header = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    header.writeUInt16BE(size, 3);
    records.push(header, body.subarray(offset, offset + size));
    offset += size;
  }
  return Buffer.concat(records);
}

test('a real ClientHello gives its server name, however it is cut into records and segments', { timeout: 30_000 }, async () => {
  const hello = await capturedClientHello('shop.example.test');
  assert.deepEqual(readClientHello(hello), { kind: 'hello', serverName: 'shop.example.test' });
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 8 }), fc.nat(), (sizes, cutSeed) => {
      const stream = rerecord(hello, sizes);
      assert.deepEqual(readClientHello(stream), { kind: 'hello', serverName: 'shop.example.test' });
      // Any strict prefix (a TCP segment boundary) is incomplete: never an early or wrong verdict.
      const cut = cutSeed % stream.length;
      const prefix = readClientHello(stream.subarray(0, cut));
      assert.equal(prefix.kind, 'incomplete', `prefix of ${cut} of ${stream.length} bytes`);
    }),
    { numRuns: 500 },
  );
});

test('arbitrary and mutated bytes never throw and never yield a name that is not a host name', { timeout: 30_000 }, async () => {
  const hello = await capturedClientHello('a.test');
  const check = (data: Buffer): void => {
    const result = readClientHello(data);
    if (result.kind === 'hello' && result.serverName !== undefined) assert.match(result.serverName, /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/);
  };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => check(Buffer.from(bytes))),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (flips) => {
      const copy = Buffer.from(hello);
      for (const [at, value] of flips) copy[at % copy.length] = value;
      check(copy);
    }),
    { numRuns: 2000 },
  );
  // A record header that announces a huge ClientHello is refused before the bytes arrive.
  const huge = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0xff, 0xff, 0xff]);
  assert.equal(readClientHello(huge).kind, 'invalid');
});
