import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { startApp, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { LINKS, type Link } from '../helpers/link.js';
import { connectTo, hashUntilEnd, randomStream, readAll } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

const BULK_BYTES = 100 * 1024 * 1024;

/** The relay path as users run it (TLS, the default link) and its explicit plaintext variant. */
function bulkAndHalfClose(link: Link): void {
  const processes = new ProcessSet();
  const apps: TestApp[] = [];
  let ports = new Map<string, number>();

  /** What each app saw, per connection, for the test to inspect. */
  const sinkResults: Promise<{ bytes: number; sha256: string }>[] = [];
  const userEndsFirstSeen: Promise<string>[] = [];
  const appEndsFirstSeen: Promise<string>[] = [];

  before(async () => {
    // Hashes everything the user sends and, after the user's FIN, answers with the digest.
    const sink = await startApp((socket) => {
      const result = hashUntilEnd(socket);
      sinkResults.push(result);
      void result.then(
        ({ bytes, sha256 }) => socket.end(`${bytes} ${sha256}`),
        () => socket.destroy(),
      );
    });
    // Replies only once it has seen the user's FIN: proves the FIN arrived and the way back still flows.
    const userEndsFirst = await startApp((socket) => {
      const seen = readAll(socket).then((data) => {
        socket.end(`app saw EOF after "${data.toString()}"`);
        return data.toString();
      });
      userEndsFirstSeen.push(seen);
    });
    // Says its piece and sends its FIN first, then keeps reading what the user still sends.
    const appEndsFirst = await startApp((socket) => {
      appEndsFirstSeen.push(readAll(socket).then((data) => data.toString()));
      socket.end('app is done talking');
    });
    apps.push(sink, userEndsFirst, appEndsFirst);
    const config = makeConfigDir(
      [
        {
          name: 'bulk',
          secret: randomSecret(),
          apps: [
            { name: 'sink', localPort: sink.port },
            { name: 'user-ends-first', localPort: userEndsFirst.port },
            { name: 'app-ends-first', localPort: appEndsFirst.port },
          ],
        },
      ],
      { tls: link === 'tls' },
    );
    const server = await startCommonServerProcess(config.serverFile);
    processes.add(server.process);
    const client = processes.add(startGroupClientProcess({ group: 'bulk', groupsDir: config.groupsDir, server }));
    ports = await waitForGroupActive(client, 'bulk');
  });

  after(async () => {
    await processes.stopAll();
    await Promise.all(apps.map((app) => app.close()));
  });

  test('100 MB through one tunneled connection arrive intact (sha-256)', { timeout: 60_000 }, async () => {
    const user = await connectTo(ports.get('sink')!);
    const reply = readAll(user);
    const source = randomStream(BULK_BYTES);
    // pipeline ends the user's side after the last byte: the FIN tells the sink it has it all.
    await pipeline(source.stream, user, { end: true });
    const [bytes, digest] = (await reply).toString().split(' ');
    assert.equal(Number(bytes), BULK_BYTES);
    assert.equal(digest, source.sha256());
    assert.equal(sinkResults.length, 1);
    user.destroy();
  });

  test('half-close, user first: the app sees EOF and can still answer', { timeout: 10_000 }, async () => {
    const user = await connectTo(ports.get('user-ends-first')!);
    const reply = readAll(user);
    user.end('hello from the user');
    assert.equal((await reply).toString(), 'app saw EOF after "hello from the user"');
    assert.equal(await userEndsFirstSeen[0], 'hello from the user');
    user.destroy();
  });

  test('half-close, app first: the user sees EOF and can still send', { timeout: 10_000 }, async () => {
    const user: Socket = await connectTo(ports.get('app-ends-first')!);
    const fromApp = readAll(user);
    assert.equal((await fromApp).toString(), 'app is done talking');
    // The user's side is still writable after the app's FIN reached it.
    assert.equal(user.writable, true);
    user.end('the user still had something to say');
    assert.equal(await appEndsFirstSeen[0], 'the user still had something to say');
    if (!user.destroyed) await once(user, 'close');
  });
}

for (const link of LINKS) describe(`bulk and half-close over the ${link} link`, () => bulkAndHalfClose(link));
