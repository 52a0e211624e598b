import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { MuxSession } from '../../src/net/index.js';
import type { CommonServer } from '../../src/server/index.js';
import { makeConfigDir, randomSecret, type TestServerSettings } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import { startServer, type StartedServer } from '../helpers/in-process.js';
import { LINKS, type Link } from '../helpers/link.js';
import { closeWaitOf, fromNow, waitForEvent } from '../helpers/net.js';
import { ProcessSet, startGroupClientProcess, waitForGroupActive, type CliProcess } from '../helpers/processes.js';

/**
 * Conns the server ends must be closed by the groupclient too. A socket the client never reads
 * again never sees the server's FIN: it stays in CLOSE-WAIT, one descriptor each, for as long
 * as the client runs (ten of them were found in a client after a long test run). The client is
 * the real program, its sockets counted by the kernel (ss), the server in this process so that
 * the test can lose its end of a conn at will.
 */
const GROUP = 'waiter';

/** The server's end of the group's mux conn, while it is up. */
function muxSessionOf(server: CommonServer): MuxSession | undefined {
  const session = server.inUseGroup.get(GROUP)?.['muxLink']?.['session'];
  return session?.isClosed === false ? session : undefined;
}

async function startPair(link: Link, settings: TestServerSettings = {}): Promise<{ started: StartedServer; client: CliProcess }> {
  const config = makeConfigDir([{ name: GROUP, secret: randomSecret(), apps: [{ name: 'app', localPort: 1 }] }], { tls: link === 'tls', ...settings });
  const started = await startServer(config);
  const processes = new ProcessSet();
  const client = processes.add(startGroupClientProcess({ group: GROUP, groupsDir: config.groupsDir, server: started, clientId: 'waiter-host' }));
  after(async () => {
    await processes.stopAll();
    await started.server.close();
  });
  await waitForGroupActive(client, GROUP);
  return { started, client };
}

async function noCloseWait(client: CliProcess, port: number): Promise<void> {
  await eventually(() => closeWaitOf(client.pid, port).length === 0, {
    message: () => `no socket of the client in CLOSE-WAIT; still there:\n${closeWaitOf(client.pid, port).join('\n')}`,
  });
}

for (const link of LINKS) {
  describe(`the groupclient's conns to the server over the ${link} link`, () => {
    test('a mux conn the server lost, or a session it ended, is closed at the client: none left in CLOSE-WAIT', { timeout: 60_000 }, async () => {
      const { started, client } = await startPair(link);
      const { server, port } = started;
      for (let lost = 0; lost < 3; lost++) {
        const before = await eventually(() => muxSessionOf(server) ?? false, { message: 'the mux conn to be up', timeout: 10_000 });
        // The server loses its end (an error, a hostile frame): the client gets a FIN and must close too.
        (before.conn as { destroy(): void }).destroy();
        await eventually(() => (muxSessionOf(server) ?? before) !== before, { message: 'the client to bring a new mux conn', timeout: 10_000 });
      }
      // The session itself ended by the server: its mux conn goes with it, as the client learns from a FIN and a Goodbye.
      const back = waitForEvent(fromNow(started.events), (e) => e.type === 'group-activated', 'the client to log in again', 15_000);
      server.inUseGroup.get(GROUP)!.deactivate('KICKED', 'kicked by the test');
      await back;
      await eventually(() => muxSessionOf(server) ?? false, { message: 'the new session to have its mux conn', timeout: 10_000 });
      await noCloseWait(client, port);
    });

    test('pooled work conns (mux off) the server closes are closed at the client: none left in CLOSE-WAIT', { timeout: 60_000 }, async () => {
      const { started, client } = await startPair(link, { workConnPool: 4, extra: { mux: false } });
      const { server, port } = started;
      for (let kicked = 0; kicked < 2; kicked++) {
        await eventually(() => (server.inUseGroup.get(GROUP)?.['pool']?.idleCount ?? 0) === 4, { message: 'the pool to be full', timeout: 10_000 });
        const back = waitForEvent(fromNow(started.events), (e) => e.type === 'group-activated', 'the client to log in again', 15_000);
        // The pool's idle conns are closed with the session: the client holds them waiting for a StartWorkConn.
        server.inUseGroup.get(GROUP)!.deactivate('KICKED', 'kicked by the test');
        await back;
      }
      assert.equal(muxSessionOf(server), undefined, 'a mux conn with mux off');
      await noCloseWait(client, port);
    });
  });
}
