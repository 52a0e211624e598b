import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { V1ProxyProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import { loadGroupFile } from '../../src/config/index.js';
import { startApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestAppEntry } from '../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../helpers/in-process.js';
import { readAll, readBytes, streamEnding, waitForEvent } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';
import { NGINX, skipWithout, startNginx, type Nginx } from '../helpers/programs.js';

const skip = skipWithout(NGINX, 'nginx');
const BANNER = '220 smtp.example ready\r\n';

/** Connects to a public port from `localAddress` (a loopback address of the test's choosing). */
function connectFrom(host: string, port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, localAddress, allowHalfOpen: true });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** An HTTP request as the user sends it; nginx's answer is the address its header named. */
async function askNginx(host: string, port: number, localAddress: string): Promise<{ answer: string; user: { address: string; port: number } }> {
  const socket = await connectFrom(host, port, localAddress);
  const user = { address: socket.localAddress!, port: socket.localPort! };
  socket.end('GET / HTTP/1.0\r\nHost: test\r\n\r\n');
  const response = (await readAll(socket)).toString();
  assert.match(response, /^HTTP\/1\.1 200 /, response);
  return { answer: response.slice(response.indexOf('\r\n\r\n') + 4).trim(), user };
}

/**
 * Server-speaks-first, PROXY-protocol aware like Postfix's postscreen: writes its banner on
 * connect without waiting, then keeps everything it receives (the header, then the user's bytes)
 * and, at the user's FIN, answers with how many bytes that was.
 */
async function startRecordingBannerApp(received: Buffer[]): Promise<TestApp> {
  return startApp((socket) => {
    socket.write(BANNER);
    void readAll(socket).then((data) => {
      received.push(data);
      socket.end(`got ${data.length}`);
    });
  });
}

/** Through the real CLIs with nginx behind them: pooled work conns, or each asked for on demand. */
function throughNginx(pool: 'pooled' | 'on-demand'): void {
  const processes = new ProcessSet();
  const received: Buffer[] = [];
  let nginx: Nginx | undefined;
  let banner: TestApp | undefined;
  let ports = new Map<string, number>();
  const nginxPorts: number[] = [];

  before(async () => {
    nginxPorts.push(await unusedPort(), await unusedPort());
    nginx = await startNginx(nginxPorts);
    banner = await startRecordingBannerApp(received);
    const apps: TestAppEntry[] = [
      { name: 'web-v1', localPort: nginxPorts[0]!, extra: { proxyProtocol: 'v1' } },
      { name: 'web-v2', localPort: nginxPorts[1]!, extra: { proxyProtocol: 'v2' } },
      { name: 'smtp', localPort: banner.port, extra: { proxyProtocol: 'v2' } },
    ];
    const config = makeConfigDir([{ name: 'proxied', secret: randomSecret(), apps }], { workConnPool: pool === 'pooled' ? 4 : 0 });
    const server = await startCommonServerProcess(config.serverFile);
    processes.add(server.process);
    const client = processes.add(startGroupClientProcess({ group: 'proxied', groupsDir: config.groupsDir, server }));
    ports = await waitForGroupActive(client, 'proxied');
  });

  after(async () => {
    await processes.stopAll();
    await nginx?.stop();
    await banner?.close();
  });

  for (const [app, version] of [
    ['web-v1', 'v1'],
    ['web-v2', 'v2'],
  ] as const) {
    test(`${version}: nginx sees the user's own address and port (127.0.0.2), not the tunnel's`, async () => {
      const { answer, user } = await askNginx('127.0.0.1', ports.get(app)!, '127.0.0.2');
      assert.equal(answer, `127.0.0.2 ${user.port}`);
      const nginxPort = nginxPorts[version === 'v1' ? 0 : 1]!;
      assert.ok(nginx!.accessLog().includes(`127.0.0.2 ${user.port} ${nginxPort}`), nginx!.accessLog().join('\n'));
    });
  }

  test('users one after another each get their own header (a reused work conn carries no stale one)', async () => {
    const answers = [];
    for (const from of ['127.0.0.3', '127.0.0.4', '127.0.0.3']) {
      const { answer, user } = await askNginx('127.0.0.1', ports.get('web-v2')!, from);
      answers.push(answer === `${from} ${user.port}`);
    }
    assert.deepEqual(answers, [true, true, true]);
  });

  test("an app that speaks first gets the header before the user's bytes; its banner reaches the user unasked", async () => {
    const before = received.length;
    const user = await connectFrom('127.0.0.1', ports.get('smtp')!, '127.0.0.5');
    const userPort = user.localPort; // read now: a closed socket forgets it
    // The user has written nothing yet: the banner comes because the app spoke first.
    assert.equal((await readBytes(user, BANNER.length)).toString(), BANNER);
    user.end('EHLO user.example\r\n');
    const reply = (await readAll(user)).toString();
    const data = received[before]!;
    const header = V2ProxyProtocol.parse(data);
    const address = header.proxyAddress as unknown as { sourceAddress: { address: number[] }; sourcePort: number };
    assert.deepEqual([address.sourceAddress.address.join('.'), address.sourcePort], ['127.0.0.5', userPort]);
    const headerBytes = 16 + 12;
    assert.equal(data.subarray(headerBytes).toString(), 'EHLO user.example\r\n', "the user's bytes follow the header, untouched");
    assert.equal(reply, `got ${data.length}`);
  });

  // Last: it stops nginx. A header is no reason to hide a dead app behind an empty answer.
  test('nginx stopped: the user of a proxyProtocol app is reset, never answered with a clean empty stream', async () => {
    await nginx!.stop();
    // With a pooled work conn the reset can come so soon that it meets the user's connect.
    const outcome = await connectFrom('127.0.0.1', ports.get('web-v1')!, '127.0.0.2').then(
      async (user) => {
        const ending = streamEnding(user);
        user.write('GET / HTTP/1.0\r\n\r\n');
        const { ending: how, bytes } = await ending;
        return [how, bytes];
      },
      (error: NodeJS.ErrnoException) => [error.code === 'ECONNRESET' ? 'reset' : String(error.code), 0],
    );
    assert.deepEqual(outcome, ['reset', 0]);
    // The tunnel itself is fine: the app that speaks first still answers.
    const other = await connectFrom('127.0.0.1', ports.get('smtp')!, '127.0.0.6');
    assert.equal((await readBytes(other, BANNER.length)).toString(), BANNER);
    other.end();
    await readAll(other);
  });
}

describe('PROXY protocol through nginx, pooled work conns (TLS)', { skip, timeout: 60_000 }, () => throughNginx('pooled'));
describe('PROXY protocol through nginx, work conns on demand (TLS)', { skip, timeout: 60_000 }, () => throughNginx('on-demand'));

/**
 * An IPv6 user: the server binds its ports on ::1 and the header names TCP6 (v1) or AF_INET6
 * (v2). In-process, since the CLIs' helpers dial 127.0.0.1; the link is TLS as everywhere.
 */
describe('PROXY protocol for an IPv6 user', { skip, timeout: 60_000 }, () => {
  const received: Buffer[] = [];
  let nginx: Nginx | undefined;
  let banner: TestApp | undefined;
  let server: StartedServer | undefined;
  let client: StartedClient | undefined;
  let ports = new Map<string, number>();

  before(async () => {
    const nginxPort = await unusedPort();
    nginx = await startNginx([nginxPort]);
    banner = await startRecordingBannerApp(received);
    const config = makeConfigDir([
      {
        name: 'proxied6',
        secret: randomSecret(),
        apps: [
          { name: 'web', localPort: nginxPort, extra: { proxyProtocol: 'v2' } },
          { name: 'raw-v1', localPort: banner.port, extra: { proxyProtocol: 'v1' } },
        ],
      },
    ]);
    server = await startServer(config, { bind: { host: '::1', port: 0 } });
    client = startClient(loadGroupFile(config.groupFile('proxied6')), { ...server, port: server.port }, { server: { host: '::1', port: server.port } });
    await waitForEvent(server.events, (event) => event.type === 'group-activated', 'group activated');
    for (const name of ['web', 'raw-v1']) ports.set(name, server.server.inUseGroup.get('proxied6')!.apps.get(name)!.port);
  });

  after(async () => {
    client?.client.stop();
    await client?.done;
    await server?.server.close();
    await nginx?.stop();
    await banner?.close();
  });

  test("v2: nginx reads the user's IPv6 address and port", async () => {
    const { answer, user } = await askNginx('::1', ports.get('web')!, '::1');
    assert.equal(answer, `::1 ${user.port}`);
  });

  test('v1: the local app reads "PROXY TCP6 ::1 ::1 <user port> <public port>"', async () => {
    const before = received.length;
    const user = await connectFrom('::1', ports.get('raw-v1')!, '::1');
    const userPort = user.localPort; // read now: a closed socket forgets it
    await readBytes(user, BANNER.length);
    user.end();
    await readAll(user);
    const line = received[before]!.toString('ascii');
    assert.equal(line, `PROXY TCP6 ::1 ::1 ${userPort} ${ports.get('raw-v1')}\r\n`);
    assert.equal(V1ProxyProtocol.parse(line).source.port, userPort);
  });
});
