import assert from 'node:assert/strict';
import { createServer, get, type Server } from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { VirtualTimeScheduler } from 'rxjs';
import { checkOnce, nextVerdict } from '../../src/client/health-checks.js';
import { traceServer } from '../../src/trace/index.js';
import { loadGroupFile, type HealthCheckSpec } from '../../src/config/index.js';
import { startApp, startBannerApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../helpers/in-process.js';
import { rawLogin } from '../helpers/raw-client.js';
import { closedWithin, connectTo, fromNow, readBytes, streamEnding, waitForEvent } from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';
import { advance, settle } from '../helpers/virtual-clock.js';

const HTTP_CHECK: HealthCheckSpec = { type: 'http', path: '/health', intervalMs: 100, timeoutMs: 100, failures: 2, successes: 2 };

test('verdicts flip only after `failures` or `successes` results in a row', () => {
  let verdict = { healthy: true, streak: 0, reason: 'start' };
  const fail = { ok: false as const, reason: 'down' };
  verdict = nextVerdict(verdict, fail, HTTP_CHECK);
  assert.equal(verdict.healthy, true, 'one failure is not enough');
  verdict = nextVerdict(verdict, { ok: true }, HTTP_CHECK);
  verdict = nextVerdict(verdict, fail, HTTP_CHECK);
  assert.equal(verdict.healthy, true, 'a pass in between starts the count again');
  verdict = nextVerdict(verdict, fail, HTTP_CHECK);
  assert.deepEqual(verdict, { healthy: false, streak: 0, reason: 'down' });
  verdict = nextVerdict(verdict, { ok: true }, HTTP_CHECK);
  assert.equal(verdict.healthy, false, 'one pass is not enough to come back');
  verdict = nextVerdict(verdict, { ok: true }, HTTP_CHECK);
  assert.equal(verdict.healthy, true);
});

describe('health checks against real local targets', () => {
  let http: Server;
  let status = 200;
  let silent: TestApp;
  before(async () => {
    http = createServer((req, res) => {
      res.statusCode = req.url === '/health' ? status : 404;
      res.end();
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    // Accepts and never answers: only the timeout ends the check.
    silent = await startApp(() => {});
  });
  after(async () => {
    await new Promise((resolve) => http.close(resolve));
    await silent.close();
  });

  test('http: 2xx passes, anything else fails with the status, no answer fails at the timeout', async () => {
    const target = { host: '127.0.0.1', port: (http.address() as AddressInfo).port };
    // A generous timeout where an answer is expected: the machine may be busy.
    const patient = { ...HTTP_CHECK, timeoutMs: 5000 };
    assert.deepEqual(await checkOnce(target, patient), { ok: true });
    status = 503;
    assert.deepEqual(await checkOnce(target, patient), { ok: false, reason: `127.0.0.1:${target.port}: GET /health answered HTTP 503` });
    assert.deepEqual(await checkOnce(target, { ...patient, path: '/other' }), { ok: false, reason: `127.0.0.1:${target.port}: GET /other answered HTTP 404` });
    const started = Date.now();
    const quiet = await checkOnce({ host: '127.0.0.1', port: silent.port }, HTTP_CHECK);
    assert.deepEqual(quiet, { ok: false, reason: `127.0.0.1:${silent.port}: no answer within 100ms` });
    assert.ok(Date.now() - started < 2000);
  });

  test("the check's deadline, on its clock: no answer fails it at timeout, not a ms before, and its conn is closed", { timeout: 10_000 }, async (t) => {
    const requests: Socket[] = [];
    // Takes the request and never answers.
    const mute = await startApp((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => requests.push(socket));
    });
    t.after(() => mute.close());
    const clock = new VirtualTimeScheduler();
    let result: unknown;
    void checkOnce({ host: '127.0.0.1', port: mute.port }, { ...HTTP_CHECK, timeoutMs: 10_000 }, undefined, clock).then((r) => (result = r));
    await eventually(() => requests.length === 1, { message: "the check's request arrived" });
    advance(clock, 9_999);
    await settle();
    assert.equal(result, undefined, 'still waiting a ms before its timeout');
    assert.equal(requests[0]!.destroyed, false);
    advance(clock, 1);
    await eventually(() => result !== undefined, { message: 'the check settled' });
    assert.deepEqual(result, { ok: false, reason: `127.0.0.1:${mute.port}: no answer within 10s` });
    await closedWithin(requests[0]!);
    assert.equal(clock.actions.length, 0, 'no timer of the check is left');
  });

  test('http on a proxyProtocol app: the request follows a header naming no user (v1 UNKNOWN, v2 LOCAL)', async () => {
    const seen: Buffer[] = [];
    // Answers only after the header, as nginx with `listen ... proxy_protocol` does.
    const app = await startApp((socket) => {
      socket.on('error', () => {});
      let got = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        if (!got.includes('\r\n\r\n')) return;
        seen.push(got);
        socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
      });
    });
    after(() => app.close());
    const target = { host: '127.0.0.1', port: app.port };
    const patient = { ...HTTP_CHECK, timeoutMs: 5000 };
    assert.deepEqual(await checkOnce(target, patient, 'v1'), { ok: true });
    assert.match(seen[0]!.toString('latin1'), /^PROXY UNKNOWN\r\nGET \/health HTTP\/1\.1\r\n/);
    assert.deepEqual(await checkOnce(target, patient, 'v2'), { ok: true });
    const v2 = seen[1]!;
    // The v2 signature, then version 2 / command LOCAL (0x20), family unspecified, no addresses.
    assert.deepEqual(v2.subarray(0, 12), Buffer.from('0d0a0d0a000d0a515549540a', 'hex'));
    assert.equal(v2[12], 0x20);
    assert.match(v2.subarray(16).toString('latin1'), /^GET \/health HTTP\/1\.1\r\n/);
  });

  test('tcp: a listening port passes, a closed one fails', async () => {
    const tcp: HealthCheckSpec = { type: 'tcp', intervalMs: 5000, timeoutMs: 5000, failures: 1, successes: 1 };
    assert.deepEqual(await checkOnce({ host: '127.0.0.1', port: silent.port }, tcp), { ok: true });
    const closed = await unusedPort();
    assert.deepEqual(await checkOnce({ host: '127.0.0.1', port: closed }, tcp), { ok: false, reason: `127.0.0.1:${closed}: ECONNREFUSED` });
  });
});

/** In-process clients for `names`, each started once the previous one joined its pool. */
async function startMembers(config: TestConfigDir, started: StartedServer, names: string[]): Promise<StartedClient[]> {
  const clients: StartedClient[] = [];
  for (const name of names) {
    clients.push(startClient(loadGroupFile(config.groupFile(name)), started));
    await waitForEvent(started.events, (e) => e.type === 'pool-member-joined' && e.group === name, `${name} joining`);
  }
  return clients;
}

/** A member's local app: GET / answers its name, GET /health the status its switch says. */
async function memberApp(name: string): Promise<{ server: Server; port: number; healthy: boolean }> {
  const app = { server: createServer(), port: 0, healthy: true };
  app.server.on('request', (req, res) => {
    if (req.url === '/health') res.statusCode = app.healthy ? 204 : 503;
    res.end(req.url === '/health' ? '' : name);
  });
  await new Promise<void>((resolve) => app.server.listen(0, '127.0.0.1', resolve));
  app.port = (app.server.address() as AddressInfo).port;
  return app;
}

/** One user of the pool: a plain HTTP GET / on a fresh connection; resolves with the member's name. */
function memberOf(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/**
 * Two members of pool `web` over the default link (TLS), each an HTTP app: x checked by HTTP
 * (GET /health, 2 failures / 2 successes), y by TCP. Group z (its client started last) pools
 * only its app "web" in the registry, while its client's own file pools "other" too.
 */
describe("a pool following its members' health", () => {
  let started: StartedServer;
  let x: Awaited<ReturnType<typeof memberApp>>;
  let y: Awaited<ReturnType<typeof memberApp>>;
  let z: Awaited<ReturnType<typeof memberApp>>;
  const traceFile = join(mkdtempSync(join(tmpdir(), 'ntp-pool-trace-')), 'server.mmd');
  let trace: { close(): Promise<void> } | undefined;
  let poolPort = 0;
  const clients: StartedClient[] = [];
  const check = { interval: '500ms', timeout: '500ms', failures: 2, successes: 2 };

  before(async () => {
    poolPort = await unusedPort();
    x = await memberApp('x');
    y = await memberApp('y');
    z = await memberApp('z');
    const config = makeConfigDir(
      [
        {
          name: 'x',
          secret: randomSecret(),
          apps: [{ name: 'web', localPort: x.port, pool: 'web', remotePort: poolPort, healthCheck: { ...check, type: 'http', path: '/health' } }],
        },
        { name: 'y', secret: randomSecret(), apps: [{ name: 'web', localPort: y.port, pool: 'web', healthCheck: check }] },
        {
          name: 'z',
          secret: randomSecret(),
          apps: [
            { name: 'web', localPort: z.port, pool: 'web' },
            { name: 'other', localPort: await unusedPort(), remotePort: await unusedPort() },
          ],
        },
      ],
      { pairingTimeout: '10s' },
    );
    started = await startServer(config);
    trace = traceServer(started.server.events$, traceFile, started.server.internalErrors.report);
    clients.push(...(await startMembers(config, started, ['x', 'y'])));
  });

  after(async () => {
    for (const { client } of clients) client.stop();
    await started.server.close();
    await Promise.all([x, y, z].map((app) => new Promise((resolve) => app.server.close(resolve))));
    await trace?.close();
  });

  test('an unhealthy member gets no new users; it gets them again once it passes', { timeout: 20_000 }, async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await memberOf(poolPort));
    assert.deepEqual([...seen].sort(), ['x', 'y']);

    const after = fromNow(started.events);
    x.healthy = false;
    const down = await waitForEvent(after, (e) => e.type === 'pool-member-health' && e.group === 'x', 'x unhealthy', 10_000);
    assert.deepEqual(down, {
      type: 'pool-member-health',
      pool: 'web',
      group: 'x',
      app: 'web',
      healthy: false,
      reason: `127.0.0.1:${x.port}: GET /health answered HTTP 503`,
    });
    const during: string[] = [];
    for (let i = 0; i < 10; i++) during.push(await memberOf(poolPort));
    assert.deepEqual(new Set(during), new Set(['y']), 'x, still serving but unhealthy, gets nobody');

    const recovery = fromNow(started.events);
    x.healthy = true;
    await waitForEvent(recovery, (e) => e.type === 'pool-member-health' && e.group === 'x' && e.healthy, 'x healthy again', 10_000);
    const again = new Set<string>();
    for (let i = 0; i < 6; i++) again.add(await memberOf(poolPort));
    assert.deepEqual([...again].sort(), ['x', 'y']);
    // --trace draws the same story: members joining, users routed, the reports.
    const drawn = readFileSync(traceFile, 'utf8');
    for (const step of [
      'x/web joins pool web',
      'routed to y',
      'Client ->> appGroup: HealthReport (web unhealthy: 127.0.0.1',
      'HealthReport (web healthy: check passed)',
    ]) {
      assert.ok(drawn.includes(step), `the trace shows "${step}"`);
    }
  });

  test('a user arriving when no member is healthy is reset at once, not held until the pairing deadline', { timeout: 20_000 }, async () => {
    const events = fromNow(started.events);
    const bothDown = Promise.all(
      ['x', 'y'].map((name) => waitForEvent(events, (e) => e.type === 'pool-member-health' && e.group === name && !e.healthy, `${name} unhealthy`, 10_000)),
    );
    x.healthy = false;
    y.server.close();
    y.server.closeAllConnections();
    await bothDown;
    assert.ok(
      started.server.pools
        .get('web')!
        .view()
        .members.every((m) => !m.healthy),
      'both members unhealthy',
    );
    const connectedAt = Date.now();
    // The reset may come before or after the connect completes here: either way it is the first thing the user sees.
    const outcome = await new Promise<string>((resolve) => {
      const user = connect({ host: '127.0.0.1', port: poolPort });
      user.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      user.once('data', () => resolve('data'));
      user.once('end', () => resolve('fin'));
    });
    const ms = Date.now() - connectedAt;
    assert.equal(outcome, 'ECONNRESET');
    assert.ok(ms < 5000, `reset after ${ms}ms (the pairing deadline is 10 s)`);
    const refused = await waitForEvent(started.events, (e) => e.type === 'pool-user-refused', 'the refusal');
    assert.match((refused as { reason: string }).reason, /none of its 2 members is healthy/);
  });

  // Our groupclient runs the checks the server sends (its own file's are overridden), so only an
  // older or hostile client reports on an app the registry does not pool: played here frame by frame.
  test("a client's HealthReport on an app its registry entry does not pool is ignored; its member and session stay", { timeout: 20_000 }, async (t) => {
    const joined = waitForEvent(fromNow(started.events), (e) => e.type === 'pool-member-joined' && e.group === 'z', 'z joining');
    const zSpec = started.server.readyGroup.get('z')!;
    const raw = await rawLogin(started, 'z', zSpec.secret.reveal());
    t.after(() => raw.channel.destroy());
    await joined;
    raw.channel.send({ type: 'HealthReport', app: 'other', healthy: false, reason: 'a check the registry never asked for' });
    // Frames are handled in order: a Pong after the report means the server has read it.
    const pong = waitForEvent(raw.channel.messages$, (message) => message.type === 'Pong', 'the Pong after the report');
    raw.channel.release();
    raw.channel.send({ type: 'Ping', seq: 1 });
    await pong;
    const seenHealth: unknown[] = [];
    started.events
      .subscribe((e) => {
        if (e.type === 'pool-member-health' && e.group === 'z') seenHealth.push(e);
      })
      .unsubscribe();
    assert.deepEqual(seenHealth, []);
    const zMember = started.server.pools
      .get('web')!
      .view()
      .members.find((m) => m.group === 'z');
    assert.equal(zMember?.app, 'web');
    assert.equal(zMember?.healthy, true, "a report on another app does not touch z's member");
    assert.equal(started.server.inUseGroup.get('z')?.isActive, true);
  });
});

/**
 * With no pooled work conns (workConnPool: 0) every user is held, unread, until its member's
 * client answers: a member whose local app is down (its checks not failed yet: 10 s apart)
 * fails the dial, and the user is tried once on another member instead of being reset.
 */
describe('a user a member fails before anything was read is retried once on another member', () => {
  let started: StartedServer;
  let q: TestApp;
  let poolPort = 0;
  const clients: StartedClient[] = [];

  before(async () => {
    poolPort = await unusedPort();
    q = await startBannerApp('q\n');
    const config = makeConfigDir(
      [
        {
          name: 'p',
          secret: randomSecret(),
          apps: [{ name: 'web', localPort: await unusedPort(), pool: 'web', remotePort: poolPort, healthCheck: { interval: '10s', failures: 3 } }],
        },
        { name: 'q', secret: randomSecret(), apps: [{ name: 'web', localPort: q.port, pool: 'web', healthCheck: { interval: '10s', failures: 3 } }] },
      ],
      // Users are held (and so can be retried) only without mux and without pooled work conns.
      { workConnPool: 0, extra: { mux: false } },
    );
    started = await startServer(config);
    clients.push(...(await startMembers(config, started, ['p', 'q'])));
  });

  after(async () => {
    for (const { client } of clients) client.stop();
    await started.server.close();
    await q.close();
  });

  test('every user succeeds on q; once q is down too, a user is reset after one retry', { timeout: 20_000 }, async () => {
    const retries: unknown[] = [];
    const subscription = fromNow(started.events).subscribe((e) => {
      if (e.type === 'pool-user-routed' && e.retriedFrom !== undefined) retries.push(e);
    });
    for (let i = 0; i < 8; i++) {
      const socket = await connectTo(poolPort);
      assert.equal((await readBytes(socket, 2)).toString(), 'q\n', `user ${i}`);
      socket.destroy();
    }
    assert.equal(retries.length, 4, 'round robin sent every other user to p, each retried on q');
    assert.equal(
      started.server.pools
        .get('web')!
        .view()
        .members.every((m) => m.healthy),
      true,
      "p's checks have not failed yet",
    );

    await q.close();
    const socket = await connectTo(poolPort);
    const ending = await streamEnding(socket);
    assert.notEqual(ending.ending, 'fin', 'a user no member could serve is reset, not ended cleanly');
    assert.equal(ending.bytes, 0);
    subscription.unsubscribe();
    assert.equal(retries.length, 5, 'one retry, then the reset');
  });
});
