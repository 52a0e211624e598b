import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import { startServer } from '../helpers/in-process.js';
import { LINKS, type Link } from '../helpers/link.js';
import { fromNow, waitForEvent, withDeadline } from '../helpers/net.js';
import { rawLogin, rawWorkConn } from '../helpers/raw-client.js';
import { endedByServer } from '../helpers/raw-peer.js';

/**
 * Conns of the common port that the server is done with are closed by the server, whatever the
 * peer does: each one left open is a descriptor held for as long as the server runs (and a
 * shutdown that waits for it). Counted by the server itself (`openConns`: every conn the common
 * port accepted and still open), which keeps running meanwhile.
 *
 * - A mux conn its client ends (dropped, or its process gone and its kernel sent the FIN) while
 *   the session lives on, or just before the session ends: the server used to keep its end open,
 *   half-closed, unread and owned by no one.
 */
const GROUP = 'ender';

/** A server and a raw client logged in with its mux conn up: the server's two conns of the session. */
async function sessionWithMuxConn(link: Link) {
  const secret = randomSecret();
  // The raw client sends no pings: the session must outlive the test.
  const config = makeConfigDir([{ name: GROUP, secret, apps: [{ name: 'app', localPort: 1 }] }], {
    tls: link === 'tls',
    heartbeatInterval: '5s',
    heartbeatTimeout: '60s',
  });
  const started = await startServer(config);
  const session = await rawLogin(started, GROUP, secret, { mux: true });
  const { pairingId } = await session.channel.next('ReqMuxConn');
  const up = waitForEvent(fromNow(started.events), (e) => e.type === 'mux-conn' && e.state === 'up', 'the mux conn to be up');
  const muxConn = await rawWorkConn(started, session, pairingId, secret);
  await up;
  assert.equal(started.server.openConns, 2, 'the control conn and the mux conn');
  return {
    ...started,
    session,
    muxConn,
    async close(): Promise<void> {
      muxConn.destroy();
      session.channel.destroy();
      await started.server.close();
    },
  };
}

for (const link of LINKS) {
  describe(`a mux conn its client ended, over the ${link} link`, () => {
    test('the server closes its end and keeps serving the session: no conn left open without an owner', { timeout: 20_000 }, async () => {
      const { server, session, muxConn, close } = await sessionWithMuxConn(link);
      try {
        muxConn.end(); // a FIN, as a client that drops it (or a kernel whose process is gone) sends
        await withDeadline(endedByServer(muxConn), 5000, 'the server to close its end of the ended mux conn');
        await eventually(() => server.openConns === 1, { message: () => `only the control conn open (${server.openConns} conns open)` });
        assert.equal(server.inUseGroup.get(GROUP)?.isActive, true, 'the session was lost with its mux conn');
        // Still serving: it asks for a new mux conn.
        await session.channel.next('ReqMuxConn');
      } finally {
        await close();
      }
    });

    test("a client that leaves, its mux conn's FIN read before its control conn closed, leaves nothing open", { timeout: 20_000 }, async () => {
      const { server, events, session, muxConn, close } = await sessionWithMuxConn(link);
      try {
        // The order a leaving client's two FINs may be read in: the mux conn's first, then the session's end.
        const lost = waitForEvent(fromNow(events), (e) => e.type === 'mux-conn' && e.state === 'lost', 'the mux conn to be lost');
        muxConn.end();
        await lost;
        session.channel.destroy();
        await eventually(() => server.openConns === 0, { message: () => `every conn of the session closed (${server.openConns} conns open)` });
        assert.equal(server.inUseGroup.has(GROUP), false);
      } finally {
        await close();
      }
    });
  });
}
