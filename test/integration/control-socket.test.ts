import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { eventually } from '../helpers/eventually.js';
import { askControlSocket, CONTROL_MAX_CLIENTS, CONTROL_MAX_REQUEST_BYTES, ControlSocket } from '../../src/client/index.js';

function connected(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Everything the control socket sends until it closes the conn. */
function answerUntilEnd(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('close', () => resolve(text));
  });
}

test(
  'the control socket is bounded: an oversized request, too many clients and a failing command are answered with an error, and it keeps serving',
  { timeout: 10_000 },
  async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ntp-control-')), 'c.sock');
    const errors: Error[] = [];
    const { socket: control } = await ControlSocket.open(
      path,
      {
        status: () => ({ ok: true, result: { state: 'active' } }),
        reload: () => {
          throw new Error('reload blew up');
        },
      },
      (error) => errors.push(error),
    );
    const open: Socket[] = [];
    after(() => {
      for (const socket of open) socket.destroy();
      control.close();
    });

    const oversized = await connected(path);
    const oversizedAnswer = answerUntilEnd(oversized);
    oversized.write('x'.repeat(CONTROL_MAX_REQUEST_BYTES + 1));
    assert.match(await oversizedAnswer, new RegExp(`"request longer than ${CONTROL_MAX_REQUEST_BYTES} bytes"`));

    assert.deepEqual(await askControlSocket(path, 'reload'), { ok: false, error: 'reload blew up' });
    assert.equal(errors[0]?.message, 'reload blew up', 'reported, not thrown');

    for (let i = 0; i < CONTROL_MAX_CLIENTS; i++) open.push(await connected(path));
    const refused = await connected(path);
    assert.match(await answerUntilEnd(refused), new RegExp(`busy: ${CONTROL_MAX_CLIENTS} control clients at once`));
    for (const socket of open.splice(0)) socket.destroy();
    // Their slots free once the socket has seen them close.
    await eventually(
      async () => {
        assert.deepEqual(await askControlSocket(path, 'status'), { ok: true, result: { state: 'active' } });
        return true;
      },
      { message: 'a free slot after the clients left' },
    );

    const unknown = await connected(path);
    const unknownAnswer = answerUntilEnd(unknown);
    unknown.end('{"command":"shutdown"}\n');
    assert.deepEqual(JSON.parse(await unknownAnswer), { ok: false, error: 'unknown command "shutdown": expected one of status, reload' });
  },
);

test('a second client on the same path takes the live socket over; the first, closing later, leaves the new file alone', { timeout: 10_000 }, async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'ntp-control-')), 'c.sock');
  const handlers = (who: string) => ({ status: () => ({ ok: true as const, result: who }), reload: () => ({ ok: true as const, result: who }) });
  const first = await ControlSocket.open(path, handlers('first'), () => {});
  assert.equal(first.tookOver, false);
  const second = await ControlSocket.open(path, handlers('second'), () => {});
  after(() => second.socket.close());
  assert.equal(second.tookOver, true, 'a live client answered there');
  first.socket.close();
  assert.ok(statSync(path).isSocket(), "the first client's close did not remove the second's socket");
  assert.deepEqual(await askControlSocket(path, 'status'), { ok: true, result: 'second' });
  second.socket.close();
  assert.equal(statSync(path, { throwIfNoEntry: false }), undefined, 'removed by its owner');
});
