import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import { startApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../helpers/in-process.js';
import { connectTo, readAll, waitForEvent } from '../helpers/net.js';

const MEMBERS = ['a', 'b'] as const;
/** Per member, from the app towards its users: the limit each member's users share. */
const RATE = 64 * 1024;
const BODY = 128 * 1024;

/**
 * A member's local app: reads the PROXY v1 line the groupclient writes first, then answers with
 * its name, that line and BODY bytes, and ends.
 */
function startHeaderApp(name: string): Promise<TestApp> {
  return startApp((socket) => {
    socket.on('error', () => {});
    let got = '';
    const onData = (chunk: Buffer): void => {
      got += chunk.toString('latin1');
      const end = got.indexOf('\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.write(`member ${name}\n${got.slice(0, end)}\n`);
      socket.end(Buffer.alloc(BODY, 0x61));
    };
    socket.on('data', onData);
  });
}

/** One user of the pool: which member served it, the header its app got, its bytes and how long they took. */
async function visit(port: number): Promise<{ member: string; header: string; user: Socket; bytes: number; ms: number }> {
  const started = Date.now();
  const user = await connectTo(port);
  const answer = (await readAll(user)).toString('latin1');
  const [first, header] = answer.split('\n', 2) as [string, string];
  return { member: first.replace('member ', ''), header, user, bytes: answer.length - first.length - header.length - 2, ms: Date.now() - started };
}

describe('pooled apps keep their per-app fields: the user address for the app (PROXY v1) and a bandwidth limit per member', () => {
  let started: StartedServer;
  const apps: TestApp[] = [];
  const clients: StartedClient[] = [];
  let port = 0;

  before(async () => {
    port = await unusedPort();
    const groups = [];
    for (const name of MEMBERS) {
      const app = await startHeaderApp(name);
      apps.push(app);
      groups.push({
        name,
        secret: randomSecret(),
        apps: [{ name: 'web', localPort: app.port, pool: 'web', extra: { proxyProtocol: 'v1', bandwidth: { out: '64KB' } } }],
      });
    }
    const config = makeConfigDir(groups, { heartbeatInterval: '500ms', heartbeatTimeout: '5s', extra: { pools: { web: { remotePort: port } } } });
    started = await startServer(config);
    for (const name of MEMBERS) {
      clients.push(startClient(loadGroupFile(config.groupFile(name)), started));
      await waitForEvent(started.events, (e) => e.type === 'pool-member-joined' && e.group === name, `${name} joining pool web`, 15_000);
    }
  });

  after(async () => {
    for (const { client } of clients) client.stop();
    await started.server.close();
    await Promise.all(apps.map((app) => app.close()));
  });

  test('each member writes its user address; each member shapes its own users to its limit', { timeout: 60_000 }, async () => {
    // Round robin: two users at once, one per member.
    const users = await Promise.all([visit(port), visit(port)]);
    assert.deepEqual(users.map((u) => u.member).sort(), ['a', 'b']);
    for (const { header, user, bytes, ms } of users) {
      assert.equal(header, `PROXY TCP4 127.0.0.1 127.0.0.1 ${user.localPort} ${port}`, 'the header names the user and the pool port it reached');
      assert.equal(bytes, BODY);
      // After a 250 ms burst the bucket lets RATE through per second: a lower bound holds on any machine.
      const least = ((BODY - RATE / 4) / RATE) * 1000 * 0.8;
      assert.ok(ms >= least, `${BODY} bytes at ${RATE} B/s took ${ms} ms (at least ${Math.round(least)} expected)`);
    }
    const views = started.server.pools.views().find((pool) => pool.name === 'web')!.members;
    assert.deepEqual(
      views.map((member) => member.usersRouted),
      [1, 1],
    );
  });
});
