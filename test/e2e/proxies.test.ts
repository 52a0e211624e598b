import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_WEBSOCKET_PATH } from '../../src/config/index.js';
import { startEchoApp, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { connectTo, echoRoundTrip, readBytes, sha256 } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive, type CliProcess } from '../helpers/processes.js';
import { NamespacedClients, netnsUnavailable } from '../helpers/netns.js';
import { NGINX, skipWithout } from '../helpers/programs.js';
import {
  dialsDirectly,
  MICROSOCKS,
  peersOf,
  PROXY_SIDE,
  startMicrosocks,
  startNginxWebSocketProxy,
  startTinyproxy,
  TINYPROXY,
  type RunningProxy,
} from '../helpers/proxies.js';

/*
 * A groupclient that reaches the commonserver only through a real proxy: tinyproxy (HTTP
 * CONNECT with Basic credentials), microsocks (SOCKS5, user/password) and nginx terminating
 * TLS and passing the WebSocket upgrade on (transport: wss). The client runs in a network
 * namespace of its own (`unshare -n`) where loopback holds only a bridge to its proxy and one
 * to its local app: the common port is not there at all (a client without the proxy is shown
 * refused), so every byte crosses the proxy. Each proxy's conns to the server leave from
 * PROXY_SIDE (127.0.0.2), and every conn the common port holds comes from there. The server's
 * certificate stays pinned throughout: the TLS that checks it runs inside the proxy's tunnel.
 */

const skip = skipWithout(TINYPROXY, 'tinyproxy') || skipWithout(MICROSOCKS, 'microsocks') || skipWithout(NGINX, 'nginx') || netnsUnavailable();
const GROUPS = ['via-http', 'via-socks', 'via-wss', 'refused', 'no-route'] as const;

describe('clients behind proxies', { skip }, () => {
  const processes = new ProcessSet();
  const proxies: RunningProxy[] = [];
  const namespaced = new NamespacedClients();
  let echo: TestApp;
  let config: TestConfigDir;
  let server: { port: number; fingerprint?: string };

  before(async () => {
    echo = await startEchoApp();
    config = makeConfigDir(GROUPS.map((name) => ({ name, secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] })));
    const started = await startCommonServerProcess(config.serverFile);
    processes.add(started.process);
    server = started;
  });

  after(async () => {
    await processes.stopAll();
    namespaced.stop();
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await echo.close();
  });

  /** The host file of `group` with client-side lines added (the registry's copy stays as it is). */
  function hostFile(group: string, lines: string[]): string {
    const file = join(mkdtempSync(join(tmpdir(), 'ntp-host-')), `${group}.yaml`);
    copyFileSync(config.groupFile(group), file);
    appendFileSync(file, `${lines.join('\n')}\n`);
    return file;
  }

  /**
   * A groupclient of `group` in a namespace of its own, whose loopback holds only its proxy's
   * port (`routePort`) and its local app's: `args` add to its file, server and pin.
   */
  function isolatedClient(file: string, serverPort: number, routePort: number, args: string[] = [], env: NodeJS.ProcessEnv = {}): CliProcess {
    const bridges = [...(routePort === 0 ? [] : [{ port: routePort, to: routePort }]), { port: echo.port, to: echo.port }];
    return processes.add(
      namespaced.start(['--config', file, '--server', `127.0.0.1:${serverPort}`, '--server-fingerprint', server.fingerprint!, ...args], bridges, env),
    );
  }

  /** A groupclient of `group` (the registry's file as it is), given the proxy with --proxy. */
  function clientWithProxyFlag(group: string, proxy: string): CliProcess {
    return processes.add(
      startGroupClientProcess({
        configFile: config.groupFile(group),
        serverPort: server.port,
        link: { fingerprint: server.fingerprint! },
        extraArgs: ['--proxy', proxy],
      }),
    );
  }

  /**
   * Echo through the public port (the user keeps its side open: a user who comes before the mux
   * conn is up rides a single-use work conn, and tinyproxy closes a tunnel at its first FIN),
   * then: every conn on the common port came from the proxy, none from the client.
   */
  async function provesTheRoute(client: CliProcess, group: string): Promise<number> {
    const ports = await waitForGroupActive(client, group);
    const payload = randomBytes(256 * 1024);
    const user = await connectTo(ports.get('echo')!);
    user.write(payload);
    assert.equal(sha256(await readBytes(user, payload.length)), sha256(payload));
    user.destroy();
    const peers = peersOf(server.port);
    assert.ok(peers.length > 0, 'the common port holds the session conns');
    assert.deepEqual([...new Set(peers)], [PROXY_SIDE], `every conn on the common port comes from the proxy's side: ${peers.join(', ')}`);
    assert.equal(dialsDirectly(client.pid, server.port), false, 'the groupclient holds no conn to the common port itself');
    return ports.get('echo')!;
  }

  test('through tinyproxy (CONNECT, Basic credentials from --proxy): echo crosses, the password is never printed', { timeout: 30_000 }, async () => {
    // Not recorded for the suite's secret scan: the test's own log of the command line shows it.
    const password = `tp-${randomBytes(6).toString('hex')}`;
    const tinyproxy = await startTinyproxy(server.port, 'tpuser', password);
    proxies.push(tinyproxy);
    const client = isolatedClient(config.groupFile('via-http'), server.port, tinyproxy.port, [
      '--proxy',
      `http://tpuser:${password}@127.0.0.1:${tinyproxy.port}`,
    ]);
    await provesTheRoute(client, 'via-http');
    assert.match(tinyproxy.log(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${server.port} HTTP/1\\.1`));
    await client.waitForLine(new RegExp(`reaching the server over tcp through http://tpuser@127\\.0\\.0\\.1:${tinyproxy.port}`));
    assert.ok(![...client.lines, ...client.stderr].some((line) => line.includes(password)));
    await client.stop();
  });

  test('through microsocks (SOCKS5, user/password from ${VAR} in the host file): echo crosses', { timeout: 30_000 }, async () => {
    const password = `sk-${randomBytes(6).toString('hex')}`;
    const socks = await startMicrosocks('skuser', password);
    proxies.push(socks);
    const file = hostFile('via-socks', [`proxy: socks5://skuser:\${NTP_TEST_PROXY_PASSWORD}@127.0.0.1:${socks.port}`]);
    const client = isolatedClient(file, server.port, socks.port, [], { NTP_TEST_PROXY_PASSWORD: password });
    await provesTheRoute(client, 'via-socks');
    await client.waitForLine(new RegExp(`reaching the server over tcp through socks5://skuser@127\\.0\\.0\\.1:${socks.port}`));
    assert.ok(![...client.lines, ...client.stderr].some((line) => line.includes(password)));
    await client.stop();
  });

  test(
    'through nginx terminating TLS and passing the upgrade on (transport: wss): echo crosses, our pin still checked inside',
    { timeout: 30_000 },
    async () => {
      const nginx = await startNginxWebSocketProxy(server.port, DEFAULT_WEBSOCKET_PATH);
      proxies.push(nginx);
      const file = hostFile('via-wss', ['transport: wss']);
      // nginx's own certificate, trusted as a reverse proxy's would be through the system's CAs.
      const client = isolatedClient(file, nginx.port, nginx.port, [], { NODE_EXTRA_CA_CERTS: nginx.certFile });
      const echoPort = await provesTheRoute(client, 'via-wss');
      // A Close frame ends one direction only (the TCP FIN waits for the other's), so a user's
      // half-close crosses nginx whether it rides the mux or a single-use work conn.
      const payload = randomBytes(256 * 1024);
      assert.equal(sha256(await echoRoundTrip(echoPort, payload)), sha256(payload));
      assert.match(nginx.log(), new RegExp(`"GET ${DEFAULT_WEBSOCKET_PATH} HTTP/1\\.1" 101 `));
      await client.stop();

      // The same route with another pin: refused inside the WebSocket, whatever nginx's certificate says.
      const wrongPin = processes.add(
        startGroupClientProcess({
          configFile: file,
          serverPort: nginx.port,
          link: { fingerprint: `sha256:${'ab'.repeat(32)}` },
          env: { NODE_EXTRA_CA_CERTS: nginx.certFile },
        }),
      );
      assert.equal((await wrongPin.exited).code, 3);
      assert.ok(
        wrongPin.stderr.some((line) => line.includes('fingerprint')),
        wrongPin.stderr.join('\n'),
      );
    },
  );

  test('a proxy that refuses (403) gives a line naming it and its status, and the client retries with backoff', { timeout: 30_000 }, async () => {
    const password = `rf-${randomBytes(6).toString('hex')}`;
    // CONNECT allowed to port 1 only: the common port is refused.
    const tinyproxy = await startTinyproxy(1, 'rfuser', password);
    proxies.push(tinyproxy);
    const client = clientWithProxyFlag('refused', `http://rfuser:${password}@127.0.0.1:${tinyproxy.port}`);
    const refusal = new RegExp(
      `connection to the server failed \\(attempt (\\d+)\\): proxy http://rfuser@127\\.0\\.0\\.1:${tinyproxy.port} refused CONNECT to 127\\.0\\.0\\.1:${server.port}: 403 Access violation; retrying in`,
    );
    await client.waitForLine(refusal);
    await client.waitForLine(new RegExp(refusal.source.replace('(\\d+)', '2')));
    assert.ok(![...client.lines, ...client.stderr].some((line) => line.includes(password)));
    await client.stop();
  });

  test('in the same kind of namespace without a proxy, the client cannot reach the common port at all', { timeout: 30_000 }, async () => {
    const client = isolatedClient(config.groupFile('no-route'), server.port, 0);
    await client.waitForLine(new RegExp(`connection to the server failed \\(attempt 1\\): 127\\.0\\.0\\.1:${server.port}: ECONNREFUSED`));
    await client.stop();
  });
});
