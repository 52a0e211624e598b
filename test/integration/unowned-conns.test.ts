import assert from 'node:assert/strict';
import { ControlChannel } from '../../src/net/index.js';
import { loginProof, PROTOCOL_VERSION, type LoginRejectCode } from '../../src/protocol/index.js';
import { describe, test } from 'node:test';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import { startServer } from '../helpers/in-process.js';
import { dialServer, LINKS, type Link } from '../helpers/link.js';
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
 * - A login refused: the server used to end its side and wait for the peer's FIN without reading
 *   the conn any more; a peer that sent one more frame was never seen to end.
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

  describe(`a login refused over the ${link} link`, () => {
    test('the refusal reaches the peer, and a peer that sends one more frame before it leaves leaves no conn open', { timeout: 20_000 }, async () => {
      const secret = randomSecret();
      const started = await startServer(makeConfigDir([{ name: GROUP, secret, apps: [{ name: 'app', localPort: 1 }] }], { tls: link === 'tls' }));
      const { server } = started;
      try {
        const refusals: Array<[group: string, secret: string, code: LoginRejectCode]> = [
          [GROUP, 'not-the-secret', 'BAD_SECRET'],
          ['nobody', secret, 'UNKNOWN_GROUP'],
        ];
        for (const [group, proofSecret, code] of refusals) {
          const channel = new ControlChannel(await dialServer(started));
          channel.socket.on('error', () => {});
          const first = channel.next('Challenge', 'LoginResp');
          channel.send({ type: 'Hello', version: PROTOCOL_VERSION, group, clientId: 'refused' });
          let answer = await first;
          if (answer.type === 'Challenge') {
            const reply = channel.next('LoginResp');
            channel.send({ type: 'Login', proof: loginProof(proofSecret, answer.nonce, group, 'refused'), apps: [] });
            answer = await reply;
          }
          assert.equal(answer.type === 'LoginResp' ? answer.error?.code : undefined, code);
          // Read by no one: the server is done with this conn. Then the peer's FIN.
          channel.send({ type: 'Ping', seq: 1 });
          channel.socket.end();
        }
        await eventually(() => server.openConns === 0, { message: () => `every refused conn closed (${server.openConns} conns open)` });
      } finally {
        await server.close();
      }
    });
  });
}
