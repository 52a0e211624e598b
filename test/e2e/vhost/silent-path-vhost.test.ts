import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { unusedPort } from '../../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../../helpers/configs.js';
import { LINKS, type Link } from '../../helpers/link.js';
import { connectTo, endedByReset, streamEnding, withDeadline, type StreamEnding } from '../../helpers/net.js';
import { waitForGroupActive } from '../../helpers/processes.js';
import { RelayedPair } from '../../helpers/relayed-pair.js';
import { makeCertificate, rawGet, readResponse, startTrickleApp, writeVhostGroup, type TrickleApp } from '../../helpers/vhost.js';

const GROUP = 'web';
const HEARTBEAT_TIMEOUT_MS = 1000;
/** Slack for a loaded machine on top of the heartbeat timeout the issue demands. */
const MARGIN_MS = 4000;

/** A user conn watched from before its answer started: `ending` says how it ended. */
interface WatchedUser {
  socket: Socket;
  ending: Promise<StreamEnding>;
}

/**
 * Virtual-host apps when the path between the binaries dies silently (no FIN, no reset) and
 * the far process is then killed. The server must cut the users it relayed on the dead
 * session within its heartbeat timeout, in the way that tells them the answer is not whole
 * (a reset once bytes of the answer went out, a 502 page before that), answer the group's
 * names as offline at once, and serve them again once a client is back; the client must reset
 * its local apps' conns of those users within its own heartbeat timeout.
 */
function silentPathVhost(link: Link): void {
  const users: Socket[] = [];
  let site: TrickleApp;
  let shop: TrickleApp;
  let certificate: { cert: string; key: string };
  let pair: RelayedPair;
  let httpPort = 0;
  let httpsPort = 0;

  /** Starts (or restarts) the server and reads the vhost ports it listens on. */
  async function startServer(): Promise<void> {
    const server = await pair.startServer();
    httpPort = Number((await server.waitForLine(/http vhost listening on 127\.0\.0\.1:(\d+)/))[1]);
    httpsPort = Number((await server.waitForLine(/https vhost listening on 127\.0\.0\.1:(\d+)/))[1]);
  }

  /** A groupclient through a fresh relay, its two apps routed on the vhost ports. */
  async function startClientViaRelay(): Promise<void> {
    const ports = await pair.startClientViaRelay();
    assert.deepEqual([ports.get('site'), ports.get('shop')], [httpPort, httpsPort]);
  }

  /** A TLS session with the private host's app through the HTTPS vhost, verified against its own certificate. */
  async function openShopSession(): Promise<TLSSocket> {
    const socket = connectTls({ host: '127.0.0.1', port: httpsPort, servername: 'shop.test', ca: readFileSync(certificate.cert) });
    users.push(socket);
    await once(socket, 'secureConnect');
    return socket;
  }

  async function openSiteConn(): Promise<Socket> {
    const socket = await connectTo(httpPort);
    users.push(socket);
    return socket;
  }

  /**
   * Sends `GET /stream` for `host` on `socket` and waits until the head and some of the body
   * have arrived: a user in the middle of a long answer. Returns the user and, for the app's
   * end of the same request, its conn.
   */
  async function midAnswer(app: TrickleApp, socket: Socket, host: string): Promise<{ user: WatchedUser; appConn: Socket }> {
    const request = app.nextRequest('/stream');
    const ending = streamEnding(socket);
    const bodyStarted = new Promise<void>((resolve) => {
      let seen = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        seen = Buffer.concat([seen, chunk]);
        const headEnd = seen.indexOf('\r\n\r\n');
        if (headEnd < 0 || seen.length <= headEnd + 4) return;
        socket.off('data', onData);
        resolve();
      };
      socket.on('data', onData);
    });
    socket.write(`GET /stream HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    await withDeadline(bodyStarted, 5000, `the start of the answer from ${host}`);
    return { user: { socket, ending }, appConn: (await request).socket };
  }

  /** A request answered whole, through both vhost ports. */
  async function assertServes(): Promise<void> {
    const plain = await rawGet(httpPort, 'site.test', '/hello');
    assert.deepEqual([plain.status, plain.body.toString()], [200, 'ok']);
    const secure = await openShopSession();
    secure.write('GET /hello HTTP/1.1\r\nHost: shop.test\r\n\r\n');
    const answer = await readResponse(secure);
    assert.deepEqual([answer.status, answer.body.toString()], [200, 'ok']);
    secure.destroy();
  }

  before(async () => {
    certificate = makeCertificate('shop.test');
    site = await startTrickleApp();
    shop = await startTrickleApp(certificate);
    const commonPort = await unusedPort();
    const config = makeConfigDir([], {
      bindPort: commonPort,
      heartbeatInterval: '200ms',
      heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS}ms`,
      // Far beyond the deadlines below: a user left waiting for a work conn would show as a hang.
      pairingTimeout: '60s',
      tls: link === 'tls',
      // A keep-alive user idle across the kill must not be closed for idleness meanwhile.
      extra: { logLevel: 'debug', vhost: { http: '127.0.0.1:0', https: '127.0.0.1:0', headersTimeout: '30s' } },
    });
    writeVhostGroup(config, GROUP, randomSecret(), [
      { name: 'site', type: 'http', localPort: site.port, domains: ['site.test'] },
      { name: 'shop', type: 'https', localPort: shop.port, domains: ['shop.test'] },
    ]);
    pair = new RelayedPair(config, commonPort, GROUP);
    await startServer();
  });

  after(async () => {
    await pair.close();
    for (const socket of users) socket.destroy();
    await Promise.all([site.close(), shop.close()]);
  });

  test(
    "the client's path goes silent and the client is killed: its vhost users are cut as faults, its names answer offline at once, and a restarted client serves them",
    { timeout: 40_000 },
    async () => {
      await startClientViaRelay();
      const { server } = pair;
      await assertServes();
      // An HTTP user in the middle of a long answer, one whose request the app has not answered
      // yet, and an HTTPS user in the middle of an answer inside its own TLS session.
      const streaming = (await midAnswer(site, await openSiteConn(), 'site.test')).user;
      const waiter = await openSiteConn();
      const waiting = site.nextRequest('/wait');
      const waiterEnding = streamEnding(waiter);
      waiter.write('GET /wait HTTP/1.1\r\nHost: site.test\r\n\r\n');
      await withDeadline(waiting, 5000, 'the app to get the request it never answers');
      const secure = (await midAnswer(shop, await openShopSession(), 'shop.test')).user;
      // And a keep-alive user between two answers, its conn to the app idle.
      const between = await openSiteConn();
      assert.equal((await rawGet(httpPort, 'site.test', '/hello', [], between)).status, 200);

      const fromLine = await pair.killClientBehindDeadPath(HEARTBEAT_TIMEOUT_MS + MARGIN_MS);
      const [cut, answered, secureCut] = await withDeadline(
        Promise.all([streaming.ending, waiterEnding, secure.ending]),
        MARGIN_MS,
        'every user of the dead session to see its end',
      );
      assert.ok(
        endedByReset(cut),
        `the HTTP user mid-answer: ${cut.ending} (${cut.code ?? cut.kernelState}) after ${cut.bytes} bytes; a truncated answer must not end cleanly`,
      );
      // Nothing of the answer had gone out: the vhost's own complete 502 page, then its FIN.
      assert.equal(answered.ending, 'fin', `the HTTP user waiting for its answer: ${answered.ending} (${answered.code})`);
      assert.match(answered.data.toString(), /^HTTP\/1\.1 502 Bad Gateway\r\n[^]*Connection: close\r\n\r\n<!doctype html>[^]*<\/p>\n$/);
      assert.ok(
        endedByReset(secureCut),
        `the HTTPS user mid-answer: ${secureCut.ending} (${secureCut.code ?? secureCut.kernelState}) after ${secureCut.bytes} bytes`,
      );

      // Nothing of the keep-alive user's was cut short: its conn stays, and its next request is
      // answered like any other while the group is offline.
      const next = await withDeadline(rawGet(httpPort, 'site.test', '/hello', [], between), MARGIN_MS, "the keep-alive user's next answer");
      assert.equal(next.status, 503);

      // While the group is offline, its names are answered at once: 503 on HTTP, a reset after
      // the ClientHello on HTTPS (TLS is not ours to terminate). The deadline is far below the
      // pairing timeout a user held for a work conn would wait.
      const offline = await withDeadline(rawGet(httpPort, 'site.test', '/hello'), MARGIN_MS, 'an answer for an offline name');
      assert.equal(offline.status, 503);
      const refused = await withDeadline(
        openShopSession().then(
          () => 'connected',
          (error: NodeJS.ErrnoException) => error.code,
        ),
        MARGIN_MS,
        'the HTTPS vhost to refuse an offline name',
      );
      assert.equal(refused, 'ECONNRESET');
      await server.waitForLine(/http vhost user \S+ refused: 503: offline name site\.test/, { fromLine });
      await server.waitForLine(/https vhost user \S+ refused: OFFLINE: offline name shop\.test/, { fromLine });

      await startClientViaRelay();
      await assertServes();
    },
  );

  test(
    "the server's path goes silent and the server is killed: the client resets its local apps' conns of the vhost users, and serves again once a server is back",
    { timeout: 40_000 },
    async () => {
      // The client of the previous test, through a relay that still carries everything.
      const { relay, client } = pair;
      const plain = await midAnswer(site, await openSiteConn(), 'site.test');
      const secure = await midAnswer(shop, await openShopSession(), 'shop.test');
      const atApps = [streamEnding(plain.appConn), streamEnding(secure.appConn)];

      const fromLine = await pair.killServerBehindDeadPath(HEARTBEAT_TIMEOUT_MS + MARGIN_MS);
      const [siteSaw, shopSaw] = await withDeadline(Promise.all(atApps), MARGIN_MS, "the local apps' conns to end");
      assert.ok(endedByReset(siteSaw), `the web app's conn: ${siteSaw.ending} (${siteSaw.code ?? siteSaw.kernelState})`);
      assert.ok(endedByReset(shopSaw), `the TLS app's conn: ${shopSaw.ending} (${shopSaw.code ?? shopSaw.kernelState})`);

      await startServer();
      relay.heal();
      // The client's backoff (capped) decides when it tries again: a generous deadline.
      const ports = await waitForGroupActive(client, GROUP, { fromLine, timeoutMs: 25_000 });
      assert.deepEqual([ports.get('site'), ports.get('shop')], [httpPort, httpsPort]);
      await assertServes();
    },
  );
}

for (const link of LINKS) describe(`a silently dead path with vhost apps over the ${link} link`, () => silentPathVhost(link));
