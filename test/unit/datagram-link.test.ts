import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { DatagramLink, MAX_DATAGRAM_BACKLOG_BYTES } from '../../src/net/index.js';
import { socketPair } from '../helpers/net.js';

/** Resolves once the event loop has run a full turn (the link uncorks in the check phase). */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a far end that stops reading: datagrams are dropped once the backlog is full, never queued past it', { timeout: 20_000 }, async () => {
  const [near, far] = await socketPair();
  far.pause(); // reads nothing: the kernel buffers fill, then our own queue
  const closed: string[] = [];
  const link = new DatagramLink(near, { onDatagram: () => {}, onClosed: (how) => closed.push(how) });
  const payload = randomBytes(1400);
  let accepted = 0;
  let refused = 0;
  // Far more than the kernel buffers and the backlog together (~40 MB offered).
  for (let round = 0; round < 300; round++) {
    for (let i = 0; i < 100; i++) {
      if (link.send(payload)) accepted++;
      else refused++;
    }
    assert.ok(near.writableLength <= MAX_DATAGRAM_BACKLOG_BYTES + 1402, `queued ${near.writableLength} bytes`);
    await nextTurn();
  }
  assert.ok(refused > 0, 'some datagrams were dropped');
  assert.ok(accepted * 1402 < 40_000_000, `accepted ${accepted}`);
  // Once the far end reads again, what was accepted arrives whole and in order, and the link takes more.
  let received = 0;
  let farLink: DatagramLink | undefined;
  await new Promise<void>((resolve) => {
    farLink = new DatagramLink(far, {
      onDatagram: (datagram) => {
        assert.deepEqual(datagram, payload);
        if (++received === accepted) resolve();
      },
      onClosed: () => {},
    });
  });
  assert.equal(link.send(payload), true);
  link.close(true);
  farLink!.close(true);
  assert.deepEqual(closed, []);
});

test("the far end's FIN is reported as end, a reset as error, once each", { timeout: 10_000 }, async () => {
  const [a, b] = await socketPair();
  const ends: string[] = [];
  new DatagramLink(a, { onDatagram: () => {}, onClosed: (how) => ends.push(how) });
  b.end();
  await new Promise((resolve) => a.once('close', resolve));
  assert.deepEqual(ends, ['end']);

  const [c, d] = await socketPair();
  const errors: string[] = [];
  new DatagramLink(c, { onDatagram: () => {}, onClosed: (how) => errors.push(how) });
  d.resetAndDestroy();
  await new Promise((resolve) => c.once('close', resolve));
  assert.deepEqual(errors, ['error']);
});
