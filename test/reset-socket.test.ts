import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { resetSocket } from '../src/net/index.js';
import { kernelTcpState, socketPair, streamEnding } from './helpers/net.js';

const openDescriptors = (): number => readdirSync('/proc/self/fd').length;

function closed(socket: Socket, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.closed) return resolve();
    const timer = setTimeout(() => reject(new Error(`${what} never closed`)), 5000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Whether the kernel dropped the far end's connection: it does so at once on a reset, while a
 * FIN alone leaves it in CLOSE_WAIT. Polled, because the reset may follow the FIN.
 */
async function resetReached(far: Socket): Promise<string | undefined> {
  const state = kernelTcpState(far);
  const deadline = Date.now() + 5000;
  while (state() !== undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  return state();
}

describe('resetSocket', () => {
  test('a socket reset in the same tick as its end() still closes, and its peer gets the reset after the FIN', async () => {
    const [near, far] = await socketPair();
    far.on('error', () => {});
    const seen = streamEnding(far, { keepOpen: true });
    near.write('last words');
    near.end();
    resetSocket(near);
    await closed(near, 'the reset socket');
    const ending = await seen;
    assert.equal(ending.data.toString(), 'last words');
    assert.equal(await resetReached(far), undefined, 'the far end should have got a reset, not a FIN alone');
  });

  test('ending and resetting many sockets leaks no file descriptor', async () => {
    const before = openDescriptors();
    for (let round = 0; round < 100; round++) {
      const [near, far] = await socketPair();
      far.on('error', () => {});
      far.resume();
      near.end();
      resetSocket(near);
      resetSocket(near); // a second reset of the same socket, as two teardown paths may do
      await closed(near, `socket ${round}`);
      far.destroy();
      await closed(far, `far end ${round}`);
    }
    assert.ok(openDescriptors() <= before + 2, `${openDescriptors() - before} descriptors more than before`);
  });

  test('a socket with bytes still queued is reset at once, the queued bytes dropped', async () => {
    const [near, far] = await socketPair();
    far.pause();
    far.on('error', () => {});
    near.write(Buffer.alloc(16 << 20));
    near.end();
    assert.ok(near.writableLength > 0, 'the write should still be queued');
    resetSocket(near);
    await closed(near, 'the reset socket');
    assert.equal(await resetReached(far), undefined, 'the far end should have got a reset');
    far.destroy();
  });
});
