import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_WEBSOCKET_PATH } from '../../src/config/index.js';
import { startEchoApp, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import type { Socket } from 'node:net';
import { eventually } from '../helpers/eventually.js';
import { connectTo, echoRoundTrip, endedByReset, readBytes, sha256, streamEnding } from '../helpers/net.js';
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
 * Each proxy is also killed with -9 under a live user, then restarted on its port.
 */

const skip = skipWithout(TINYPROXY, 'tinyproxy') || skipWithout(MICROSOCKS, 'microsocks') || skipWithout(NGINX, 'nginx') || netnsUnavailable();
const GROUPS = ['via-http', 'via-socks', 'via-wss', 'refused', 'no-route', 'killed-http', 'killed-socks', 'killed-wss'] as const;

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

  /** An echo of `bytes` through the public port on a user that stays open. */
  async function liveUser(port: number, bytes: number): Promise<Socket> {
    const user = await connectTo(port);
    user.on('error', () => {});
    const payload = randomBytes(bytes);
    user.write(payload);
    assert.equal(sha256(await readBytes(user, payload.length)), sha256(payload));
    return user;
  }

  /**
   * The proxy killed with -9 while a user is live on the mux conn it carries: the user is reset
   * (its stream went with the proxy: never a clean end, as if the app had finished); the client,
   * refused while the proxy is down, comes back through it once it is restarted on its port and
   * serves a new user, every conn on the common port again from the proxy's side.
   */
  async function killAndRestart(client: CliProcess, group: string, proxy: RunningProxy): Promise<void> {
    const port = (await waitForGroupActive(client, group)).get('echo')!;
    // "Active" comes before the mux conn is up, and a user before it rides a single-use work
    // conn: the live user is one the client saw arrive on the mux (the default path).
    const user = await eventually(
      async () => {
        const fromLine = client.lines.length;
        const candidate = await liveUser(port, 64 * 1024);
        const how = await client.waitForLine(/a user of echo (arrived on a stream of the mux conn|asked for a work conn|arrived on a pooled work conn)/, {
          fromLine,
        });
        if (how[1] === 'arrived on a stream of the mux conn') return candidate;
        candidate.destroy();
        return false;
      },
      { message: 'a user on the mux conn', timeout: 10_000, interval: 100 },
    );
    const ending = streamEnding(user);
    const fromLine = client.lines.length;
    proxy.child.kill('SIGKILL');
    const seen = await ending;
    assert.ok(endedByReset(seen), `the live user is reset when the proxy dies, never ended cleanly: ${JSON.stringify({ ...seen, data: undefined })}`);
    await client.waitForLine(/connection to the server failed \(attempt \d+\): .*; retrying in/, { fromLine, timeoutMs: 20_000 });

    proxies.push(await proxy.again());
    const ports = await waitForGroupActive(client, group, { fromLine, timeoutMs: 30_000 });
    (await liveUser(ports.get('echo')!, 256 * 1024)).destroy();
    assert.deepEqual([...new Set(peersOf(server.port))], [PROXY_SIDE], 'every conn on the common port comes from the restarted proxy');
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

  // Its debug lines say which path each user took.
  const DEBUG = ['--log-level', 'debug'];

  for (const { program, group, scheme, user, start } of [
    {
      program: 'tinyproxy',
      group: 'killed-http',
      scheme: 'http',
      user: 'tpuser',
      start: (password: string) => startTinyproxy(server.port, 'tpuser', password),
    },
    { program: 'microsocks', group: 'killed-socks', scheme: 'socks5', user: 'skuser', start: (password: string) => startMicrosocks('skuser', password) },
  ]) {
    test(`${program} killed with -9 under a live user: the user is reset, the client comes back through it on restart`, { timeout: 90_000 }, async () => {
      const password = `${user.slice(0, 2)}-${randomBytes(6).toString('hex')}`;
      const proxy = await start(password);
      proxies.push(proxy);
      const file = hostFile(group, [`proxy: ${scheme}://${user}:\${NTP_TEST_PROXY_PASSWORD}@127.0.0.1:${proxy.port}`]);
      const client = isolatedClient(file, server.port, proxy.port, DEBUG, { NTP_TEST_PROXY_PASSWORD: password });
      await killAndRestart(client, group, proxy);
      await client.stop();
    });
  }

  test(
    'nginx carrying the WebSocket (wss) killed with -9 under a live user: the user is reset, the client comes back on restart',
    { timeout: 90_000 },
    async () => {
      const nginx = await startNginxWebSocketProxy(server.port, DEFAULT_WEBSOCKET_PATH);
      proxies.push(nginx);
      // The WebSocket conn ends with nginx's FIN and no Close frame: a failure, never a clean end.
      const client = isolatedClient(hostFile('killed-wss', ['transport: wss']), nginx.port, nginx.port, DEBUG, { NODE_EXTRA_CA_CERTS: nginx.certFile });
      await killAndRestart(client, 'killed-wss', nginx);
      await client.stop();
    },
  );
});
