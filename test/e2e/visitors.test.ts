import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import type { ServerLink } from '../helpers/link.js';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connectTo, echoRoundTrip, freePortIn, readBytes, sha256, streamEnding, withDeadline, type StreamEnding } from '../helpers/net.js';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import {
  CliProcess,
  COMMONSERVER_BIN,
  ProcessSet,
  serverLinkOf,
  startCommonServerProcess,
  startGroupClientProcess,
  waitForGroupActive,
} from '../helpers/processes.js';
import { dig, redisBenchmark, skipWithoutDns, skipWithoutRedis, startDnsmasq, startRedis, type ChildProgram } from '../helpers/programs.js';
import { unusedUdpPort } from '../helpers/udp.js';

/**
 * Private apps reached only through visitors (frp's stcp / sudp), with real programs behind
 * them, over the default link (TLS, pinned fingerprint, mux): a redis-server of office-a that
 * has no public port, benchmarked through office-b's visitor port; a dnsmasq of office-a asked
 * with dig through office-b's UDP visitor; office-c, not in allowVisitors, refused, and both
 * clients and the server's metric say so.
 */
const TOKEN = 'visitors-admin-token-0123456789abcdef';
const VISITOR_SECRET = `visitor-secret-${randomSecret()}`;

const processes = new ProcessSet();
let config: TestConfigDir;
let server: CliProcess;
let link: ServerLink;
let adminUrl: string;
let owner: CliProcess;
let visitor: CliProcess;
let outsider: CliProcess;
let redis: ChildProgram & { port: number };
const ports = { redis: 0, dns: 0, badSecret: 0, outsider: 0, proxied: 0 };
/** A private app that asks for a PROXY v1 header: the first line each of its conns brought. */
let proxiedApp: Server;
const headers: string[] = [];

function writeGroup(name: string, body: Record<string, unknown>): void {
  writeFileSync(config.groupFile(name), stringify({ name, secret: randomSecret(), ...body }));
}

/** A public app nobody uses: a host file lists at least one app. */
const unused = [{ name: 'unused', local: '127.0.0.1:9', remotePort: 0 }];

async function metric(name: string): Promise<string> {
  const res = await fetch(`${adminUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return (await res.text()).split('\n').find((line) => line.startsWith(name)) ?? '';
}

/** The TCP ports a process listens on, as the kernel lists them. */
function listeningPorts(pid: number): number[] {
  const lines = execFileSync('ss', ['-Hltnp'], { encoding: 'utf8' }).split('\n');
  return lines.filter((line) => line.includes(`pid=${pid},`)).map((line) => Number(/:(\d+)\s/.exec(line)?.[1]));
}

/** How a user of a visitor port is ended, watched from before its connect (a refusal may reset it first). */
function visitorUserEnding(port: number): Promise<StreamEnding> {
  const user = connect({ host: '127.0.0.1', port });
  user.on('connect', () => user.write('PING\r\n'));
  return streamEnding(user);
}

describe('private apps and visitors (TLS, pinned, mux)', { skip: skipWithoutRedis || skipWithoutDns }, () => {
  before(async () => {
    config = makeConfigDir([], { extra: { admin: { bind: '127.0.0.1:0', token: '${NTP_TEST_ADMIN_TOKEN}' } } });
    redis = await startRedis();
    const dns = await startDnsmasq(config.dir, ['address=/test.example/10.1.2.3']);
    processes.add(dns.dnsmasq);
    ports.redis = await freePortIn(40_001, 50_000);
    ports.badSecret = await freePortIn(40_001, 50_000);
    ports.outsider = await freePortIn(40_001, 50_000);
    ports.dns = await unusedUdpPort();
    ports.proxied = await freePortIn(40_001, 50_000);
    proxiedApp = createServer((conn) => {
      conn.once('data', (chunk) => {
        headers.push(chunk.toString('latin1').split('\r\n')[0]!);
        conn.end();
      });
      conn.on('error', () => {});
    });
    await new Promise<void>((resolve) => proxiedApp.listen(0, '127.0.0.1', resolve));
    writeGroup('office-a', {
      apps: [
        { name: 'redis', local: `127.0.0.1:${redis.port}`, visibility: 'private', allowVisitors: ['office-b'], visitorSecret: VISITOR_SECRET },
        { name: 'dns', local: `127.0.0.1:${dns.port}`, type: 'udp', visibility: 'private', allowVisitors: ['office-b'] },
        {
          name: 'proxied',
          local: `127.0.0.1:${(proxiedApp.address() as AddressInfo).port}`,
          visibility: 'private',
          allowVisitors: ['office-b'],
          proxyProtocol: 'v1',
        },
      ],
    });
    writeGroup('office-b', {
      apps: unused,
      visitors: [
        { name: 'redis', group: 'office-a', app: 'redis', bind: `127.0.0.1:${ports.redis}`, secret: VISITOR_SECRET },
        { name: 'redis-bad-secret', group: 'office-a', app: 'redis', bind: `127.0.0.1:${ports.badSecret}`, secret: 'not-the-visitor-secret-at-all' },
        { name: 'dns', group: 'office-a', app: 'dns', bind: `127.0.0.1:${ports.dns}`, type: 'udp' },
        { name: 'proxied', group: 'office-a', app: 'proxied', bind: `127.0.0.1:${ports.proxied}` },
      ],
    });
    writeGroup('office-c', {
      apps: unused,
      visitors: [{ name: 'redis', group: 'office-a', app: 'redis', bind: `127.0.0.1:${ports.outsider}`, secret: VISITOR_SECRET }],
    });
    server = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile], { NTP_TEST_ADMIN_TOKEN: TOKEN }));
    link = await serverLinkOf(server);
    assert.ok(link.fingerprint, 'the default link is TLS');
    adminUrl = (await server.waitForLine(/admin listening on (http:\/\/\S+) \(token required\)/))[1]!;
    const start = (group: string): CliProcess => processes.add(startGroupClientProcess({ groupsDir: config.groupsDir, group, server: link }));
    owner = start('office-a');
    visitor = start('office-b');
    outsider = start('office-c');
    await Promise.all([waitForGroupActive(owner, 'office-a'), waitForGroupActive(visitor, 'office-b'), waitForGroupActive(outsider, 'office-c')]);
    await visitor.waitForLine(/visitor redis listening on tcp/);
    await visitor.waitForLine(/visitor dns listening on udp/);
  });

  after(async () => {
    await processes.stopAll();
    await redis?.stop();
    proxiedApp?.close();
  });

  test('a private app opens no public port: the server listens only on its common and admin ports', { timeout: 20_000 }, async () => {
    assert.match((await owner.waitForLine(/group office-a active on .*/))[0], /redis private \(visitors only, no public port\), dns private\/udp/);
    // The common port, the admin port, and office-b's and office-c's unused public apps: nothing for office-a.
    const listening = listeningPorts(server.pid);
    assert.equal(listening.length, 4, `the server listens on ${listening.join(', ')}`);
  });

  test('redis-benchmark through the visitor port: SET and GET on the private redis', { timeout: 60_000 }, async () => {
    const { code, output } = await redisBenchmark(ports.redis, ['-n', '2000', '-t', 'set,get']);
    assert.equal(code, 0, output);
    assert.match(output, /SET: [\d.]+ requests per second/);
    assert.match(output, /GET: [\d.]+ requests per second/);
    // Counted as the private app's users, where a public app's are: metrics and the admin API (the dashboard's source).
    assert.match(await metric('ntp_connections_total{group="office-a",app="redis"}'), /\} [1-9]/);
    await eventually(
      async () => {
        const res = await fetch(`${adminUrl}/api/groups/office-a`, { headers: { authorization: `Bearer ${TOKEN}` } });
        const { group } = (await res.json()) as { group: { apps: Array<{ name: string; visibility?: string; publicPort: number; bytesIn: number }> } };
        const app = group.apps.find((one) => one.name === 'redis');
        return app?.visibility === 'private' && app.publicPort === 0 && app.bytesIn > 0;
      },
      { message: 'the private app and its bytes in the admin API', timeout: 5000 },
    );
  });

  test('dig through the UDP visitor port: the private dnsmasq answers', { timeout: 30_000 }, async () => {
    assert.deepEqual(await dig(ports.dns, 'test.example'), { ok: true, answer: '10.1.2.3' });
    // Several resolvers at once, each from its own source port: each its own stream.
    const answers = await Promise.all(Array.from({ length: 5 }, () => dig(ports.dns, 'test.example')));
    for (const answer of answers) assert.deepEqual(answer, { ok: true, answer: '10.1.2.3' });
  });

  test("PROXY protocol for a visitor: the source is the visiting host's address, as the server sees its control conn", { timeout: 20_000 }, async () => {
    const ending = await visitorUserEnding(ports.proxied);
    assert.equal(ending.ending, 'fin', JSON.stringify(ending));
    // Its control conn to the common port: the visiting client's address and port, the server's common port.
    assert.match(headers[0] ?? '', new RegExp(`^PROXY TCP4 127\\.0\\.0\\.1 127\\.0\\.0\\.1 \\d+ ${link.port}$`));
  });

  test('a visitor whose group is not in allowVisitors is reset; both clients and the server say why, the metric counts', { timeout: 30_000 }, async () => {
    const ending = await visitorUserEnding(ports.outsider);
    assert.equal(ending.ending, 'reset', `the visitor's user is reset, not ended: ${JSON.stringify(ending)}`);
    const said = 'visitor office-c/redis refused by group office-a app redis: not in allowVisitors';
    await outsider.waitForLine(new RegExp(said));
    await owner.waitForLine(new RegExp(said));
    await server.waitForLine(/visitor office-c\/redis refused by office-a\/redis: not in allowVisitors/);
    await eventually(
      async () => /ntp_visitors_refused_total\{visitor_group="office-c"\} [1-9]/.test(await metric('ntp_visitors_refused_total{visitor_group="office-c"}')),
      {
        message: 'the refusal counted',
        timeout: 5000,
      },
    );
  });

  test('a visitor with the wrong visitorSecret is refused, and the secret is never printed', { timeout: 30_000 }, async () => {
    const ending = await visitorUserEnding(ports.badSecret);
    assert.equal(ending.ending, 'reset');
    await visitor.waitForLine(/visitor office-b\/redis-bad-secret refused by group office-a app redis: the visitor secret does not match/);
    for (const process of [server, owner, visitor, outsider]) assert.doesNotMatch(process.output, new RegExp(VISITOR_SECRET));
  });
});

describe("visitors at the visiting session's stream cap (limits.maxMuxStreams: 2)", () => {
  const capped = new ProcessSet();
  let echo: TestApp;
  let bind = 0;
  let visiting: CliProcess;
  let owning: CliProcess;
  const users: Socket[] = [];

  before(async () => {
    echo = await startEchoApp();
    const dir = makeConfigDir([], { extra: { limits: { maxMuxStreams: 2 } } });
    bind = await freePortIn(40_001, 50_000);
    const write = (name: string, body: Record<string, unknown>): void =>
      writeFileSync(dir.groupFile(name), stringify({ name, secret: randomSecret(), ...body }));
    write('office-a', { apps: [{ name: 'echo', local: `127.0.0.1:${echo.port}`, visibility: 'private', allowVisitors: ['office-b'] }] });
    write('office-b', { apps: unused, visitors: [{ name: 'echo', group: 'office-a', app: 'echo', bind: `127.0.0.1:${bind}` }] });
    const started = await startCommonServerProcess(dir.serverFile);
    capped.add(started.process);
    const start = (group: string): CliProcess => capped.add(startGroupClientProcess({ groupsDir: dir.groupsDir, group, server: started }));
    owning = start('office-a');
    visiting = start('office-b');
    await Promise.all([waitForGroupActive(owning, 'office-a'), waitForGroupActive(visiting, 'office-b')]);
  });

  after(async () => {
    for (const user of users) user.destroy();
    await capped.stopAll();
    await echo.close();
  });

  test('a visit past the cap is refused at once (never queued), the users within it keep being served', { timeout: 20_000 }, async () => {
    // "Active" is said before the visiting session's mux conn is up, and a visit without one is
    // refused (reset): the first user tries until it is served; a refused try holds no stream.
    const served = async (i: number): Promise<Socket | false> => {
      const user = await connectTo(bind);
      user.on('error', () => user.destroy());
      const answer = readBytes(user, 5);
      user.write(`held${i}`);
      const ok = await answer.then((bytes) => bytes.toString() === `held${i}`).catch(() => false);
      if (!ok) user.destroy();
      return ok ? user : false;
    };
    users.push(await eventually(() => served(0), { message: 'a first visitor user served', timeout: 10_000, interval: 100 }));
    const second = await served(1);
    assert.ok(second, 'a second user within the cap is served');
    users.push(second);
    const ending = await visitorUserEnding(bind);
    assert.equal(ending.ending, 'reset', JSON.stringify(ending));
    await visiting.waitForLine(/visitor office-b\/echo refused by group office-a app echo: the visitor's mux conn refused a stream: .*2 streams, its cap/);
    const answer = readBytes(users[0]!, 4);
    users[0]!.write('more');
    assert.equal((await answer).toString(), 'more');
  });

  test("the owner's client killed with -9 while a visitor's user is live: that user is reset, never ended cleanly", { timeout: 30_000 }, async () => {
    // A user the previous test left live, served through the visitor's stream.
    const live = users[0]!;
    const ending = streamEnding(live);
    live.write('just before the crash');
    owning.kill('SIGKILL');
    const seen = await ending;
    assert.equal(seen.ending, 'reset', `the visitor's user saw ${JSON.stringify({ ending: seen.ending, bytes: seen.bytes, code: seen.code })}`);
  });
});

describe("a visitor route when the owner's side fails (TLS, pinned, mux)", () => {
  const failing = new ProcessSet();
  let echo: TestApp;
  let server: CliProcess;
  let owning: CliProcess;
  let visiting: CliProcess;
  const binds = { echo: 0, down: 0 };
  let publicEcho = 0;
  const users: Socket[] = [];

  before(async () => {
    echo = await startEchoApp();
    // The default heartbeat of the tests (500 ms, lost after 5 s): a stopped owner is declared lost after 5 s.
    const dir = makeConfigDir([]);
    binds.echo = await freePortIn(40_001, 50_000);
    binds.down = await freePortIn(40_001, 50_000);
    const write = (name: string, body: Record<string, unknown>): void =>
      writeFileSync(dir.groupFile(name), stringify({ name, secret: randomSecret(), ...body }));
    write('office-a', {
      apps: [
        { name: 'echo', local: `127.0.0.1:${echo.port}`, visibility: 'private', allowVisitors: ['office-b'] },
        // Nothing listens there: the owner's client is refused when it dials.
        { name: 'down', local: `127.0.0.1:${await unusedPort()}`, visibility: 'private', allowVisitors: ['office-b'] },
        { name: 'public-echo', local: `127.0.0.1:${echo.port}`, remotePort: 0 },
      ],
    });
    write('office-b', {
      apps: unused,
      visitors: [
        { name: 'echo', group: 'office-a', app: 'echo', bind: `127.0.0.1:${binds.echo}` },
        { name: 'down', group: 'office-a', app: 'down', bind: `127.0.0.1:${binds.down}` },
      ],
    });
    const started = await startCommonServerProcess(dir.serverFile);
    server = failing.add(started.process);
    const start = (group: string): CliProcess => failing.add(startGroupClientProcess({ groupsDir: dir.groupsDir, group, server: started }));
    owning = start('office-a');
    visiting = start('office-b');
    publicEcho = (await waitForGroupActive(owning, 'office-a')).get('public-echo')!;
    await waitForGroupActive(visiting, 'office-b');
    await visiting.waitForLine(/visitor down listening on tcp/);
  });

  after(async () => {
    for (const user of users) user.destroy();
    owning?.kill('SIGCONT');
    await failing.stopAll();
    await echo.close();
  });

  /** A visitor user of office-a's echo that echoed once and stays open; tried until served (see the cap test). */
  function servedVisitor(): Promise<Socket> {
    return eventually(
      async () => {
        const user = await connectTo(binds.echo);
        user.on('error', () => user.destroy());
        const answer = readBytes(user, 5);
        user.write('hello');
        const ok = await answer.then((bytes) => bytes.toString() === 'hello').catch(() => false);
        if (!ok) user.destroy();
        else users.push(user);
        return ok ? user : false;
      },
      { message: 'a visitor user served', timeout: 20_000, interval: 100 },
    );
  }

  test(
    "the owner's private app is down: the visitor's user is reset at once; the owner's group and other users keep working",
    { timeout: 30_000 },
    async () => {
      const live = await servedVisitor();
      const ending = await withDeadline(visitorUserEnding(binds.down), 5000, "the visitor's user of the down app ended (not left hanging)");
      assert.equal(ending.ending, 'reset', `the visitor's user is reset, not ended: ${JSON.stringify({ ...ending, data: undefined })}`);
      const answer = readBytes(live, 4);
      live.write('more');
      assert.equal((await answer).toString(), 'more', 'the live visitor user is still served');
      const payload = randomBytes(64 * 1024);
      assert.equal(sha256(await echoRoundTrip(publicEcho, payload)), sha256(payload), "the owner's public app still serves");
      assert.ok(!server.lines.some((line) => /group office-a deactivated/.test(line)), "the owner's group stayed active");
    },
  );

  test(
    "the owner's client stopped (SIGSTOP): the visitor's user is reset once the server declares the owner lost; after SIGCONT it is served again",
    { timeout: 60_000 },
    async () => {
      const live = await servedVisitor();
      const ending = streamEnding(live);
      const serverFrom = server.lines.length;
      const ownerFrom = owning.lines.length;
      owning.kill('SIGSTOP');
      try {
        const seen = await ending;
        assert.equal(seen.ending, 'reset', `the visitor's user is reset, not ended: ${JSON.stringify({ ...seen, data: undefined })}`);
        await server.waitForLine(/group office-a deactivated \(HEARTBEAT_TIMEOUT\)/, { fromLine: serverFrom });
      } finally {
        owning.kill('SIGCONT');
      }
      await waitForGroupActive(owning, 'office-a', { fromLine: ownerFrom, timeoutMs: 30_000 });
      await servedVisitor();
    },
  );
});
