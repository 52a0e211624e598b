import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { LINKS, type Link } from '../helpers/link.js';
import { waitForGroupActive } from '../helpers/processes.js';
import { RelayedPair } from '../helpers/relayed-pair.js';
import { canBindUdp, expectUdpRefused, startUdpEchoApp, unusedUdpPort, UdpUser, type UdpTestApp } from '../helpers/udp.js';

const GROUP = 'datagrams';
const HEARTBEAT_TIMEOUT_MS = 1000;
/** Slack for a loaded machine on top of the heartbeat timeout the issue demands. */
const MARGIN_MS = 4000;

/**
 * A UDP app when the path between the binaries dies silently (no FIN, no reset: a frozen host,
 * a black-holed route) and the far process is then killed: only heartbeats can tell. Each side
 * must give up the session within its heartbeat timeout, close what it holds for the app's
 * users (the public port on the server, the local sockets on the client), and serve again
 * once the other side is back.
 */
function silentPathUdp(link: Link): void {
  const users: UdpUser[] = [];
  let echo: UdpTestApp;
  let pair: RelayedPair;
  /** The app's fixed public port: freed on deactivation, the same again after a restart. */
  let publicPort = 0;

  async function user(): Promise<UdpUser> {
    const opened = await UdpUser.open();
    users.push(opened);
    return opened;
  }

  /** Relays a datagram both ways; returns the groupclient's local socket the echo app saw. */
  async function assertServes(u: UdpUser): Promise<string> {
    const payload = `through ${publicPort} at ${Date.now()}`;
    const reply = (await u.request(publicPort, payload)).toString();
    const bar = reply.indexOf('|');
    assert.equal(reply.slice(bar + 1), payload);
    return reply.slice(0, bar);
  }

  before(async () => {
    echo = await startUdpEchoApp();
    const commonPort = await unusedPort();
    publicPort = await unusedUdpPort();
    const config = makeConfigDir(
      [{ name: GROUP, secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port, remotePort: publicPort, type: 'udp' }] }],
      {
        bindPort: commonPort,
        heartbeatInterval: '200ms',
        heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS}ms`,
        tls: link === 'tls',
        extra: { logLevel: 'debug' },
      },
    );
    pair = new RelayedPair(config, commonPort, GROUP);
    await pair.startServer();
  });

  after(async () => {
    await pair.close();
    await Promise.all(users.map((u) => u.close()));
    await echo.close();
  });

  test(
    "the client's path goes silent and the client is killed: the group is deactivated by heartbeat, its UDP port closed and freed; a restarted client serves there again",
    { timeout: 30_000 },
    async () => {
      assert.equal((await pair.startClientViaRelay()).get('echo'), publicPort);
      const { server } = pair;
      const u = await user();
      await assertServes(u);

      const fromLine = await pair.killClientBehindDeadPath(HEARTBEAT_TIMEOUT_MS + MARGIN_MS);
      // The user's session went with the group (printed before the deactivation line).
      await server.waitForLine(new RegExp(`udp session of 127\\.0\\.0\\.1:${u.port} on ${GROUP}/echo closed`), { fromLine, timeoutMs: 1000 });
      // Nobody holds the public port: the kernel answers a datagram there with ICMP port
      // unreachable, and another program can bind it.
      await expectUdpRefused(publicPort);
      assert.equal(await canBindUdp(publicPort), true, `UDP port ${publicPort} cannot be bound again`);

      // A healthy path again: the restarted client is given the same port, and the same user is served.
      assert.equal((await pair.startClientViaRelay()).get('echo'), publicPort);
      await assertServes(u);
    },
  );

  test(
    "the server's path goes silent and the server is killed: the client notices by heartbeat and closes its local UDP sockets; it serves again once a server is back",
    { timeout: 40_000 },
    async () => {
      // The client of the previous test, through a relay that still carries everything.
      const { relay, client } = pair;
      const u = await user();
      const localSocket = await assertServes(u);
      const localPort = Number(localSocket.split(':')[1]);

      const fromLine = await pair.killServerBehindDeadPath(HEARTBEAT_TIMEOUT_MS + MARGIN_MS);
      await client.waitForLine(/udp session of echo closed \(the session ended: no heartbeat from the server/, { fromLine, timeoutMs: 1000 });
      // The local socket the app answered is gone: a datagram the app sends there is refused,
      // and the port is free.
      await expectUdpRefused(localPort);
      assert.equal(await canBindUdp(localPort), true, `the client's local UDP socket ${localSocket} is still bound`);

      await pair.startServer();
      relay.heal();
      // The client's backoff (capped) decides when it tries again: a generous deadline.
      assert.equal((await waitForGroupActive(client, GROUP, { fromLine, timeoutMs: 25_000 })).get('echo'), publicPort);
      assert.notEqual(await assertServes(u), localSocket, 'a new session on a new local socket');
    },
  );
}

for (const link of LINKS) describe(`a silently dead path with a UDP app over the ${link} link`, () => silentPathUdp(link));
