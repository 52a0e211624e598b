import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { startApp, type TestApp } from '../helpers/apps.js';
import { parsePrometheus, type PromSample } from '../helpers/admin.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { connectTo, echoRoundTrip, endedByReset, sha256, streamEnding, withDeadline } from '../helpers/net.js';
import { CliProcess, COMMONSERVER_BIN, ProcessSet, serverLinkOf, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';
import type { ServerLink } from '../helpers/link.js';
import { eventually } from '../helpers/eventually.js';

const TOKEN = 'accounting-admin-token-0123456789abcdef';
/** What the flood app writes per turn: enough to fill every buffer between it and a user that reads nothing. */
const FLOOD_CHUNK = randomBytes(64 * 1024);
const STALLED_USERS = 4;

/**
 * A local app that floods a user who sends `F` (it writes until its socket is closed, as fast
 * as the path takes it) and echoes one who sends anything else.
 */
function startFloodOrEchoApp(): Promise<TestApp> {
  return startApp((socket) => {
    socket.once('data', (first: Buffer) => {
      if (first[0] !== 0x46) {
        socket.write(first);
        socket.pipe(socket);
        return;
      }
      const flood = (): void => {
        while (!socket.destroyed && socket.write(FLOOD_CHUNK));
      };
      socket.on('drain', flood);
      flood();
    });
  });
}

/** The counters of a /metrics page (histogram buckets included), by name and labels. */
function counters(text: string): Map<string, number> {
  const { samples, types } = parsePrometheus(text);
  const counted = (sample: PromSample): boolean =>
    types.get(sample.name) === 'counter' || types.get(sample.name.replace(/_(bucket|count|sum)$/, '')) === 'histogram';
  return new Map(samples.filter(counted).map((sample) => [`${sample.name}${JSON.stringify(sample.labels)}`, sample.value]));
}

/**
 * Every counter of `before` is in `later` with a value at least as high, and no observer
 * failed: a count that went backwards would be refused by prom-client, and counted there.
 */
function assertNoneWentBack(before: Map<string, number>, later: Map<string, number>): void {
  for (const [key, value] of before) {
    const now = later.get(key);
    assert.ok(now !== undefined && now >= value, `${key} went from ${value} to ${now}`);
  }
  const failures = [...later].filter(([key]) => key.startsWith('ntp_internal_errors_total'));
  assert.deepEqual(failures, [], 'no observer failed');
}

/**
 * Users torn down while bytes are still queued for them (a user that stops reading and resets,
 * a client killed with kill -9 under a slow reader) must not end a server whose admin section
 * is on: bytes are counted where they left, so no counter can go backwards.
 */
function accountingSuite(mux: boolean): void {
  describe(`traffic accounting (TLS, mux ${mux ? 'on' : 'off'})`, () => {
    const processes = new ProcessSet();
    let app: TestApp;
    let config: TestConfigDir;
    let server: CliProcess;
    let link: ServerLink;
    let adminUrl: string;
    let client: CliProcess;
    let publicPort: number;

    const metrics = async (): Promise<string> => {
      const res = await fetch(`${adminUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(res.status, 200);
      return res.text();
    };
    /** The app's totals as the dashboard shows them (the admin state's own sum of the samples). */
    const dashboardBytesOut = async (): Promise<number> => {
      const res = await fetch(`${adminUrl}/api/groups/acct`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return ((await res.json()) as { group: { bytesOut: number } }).group.bytesOut;
    };
    const bytesOut = async (): Promise<number> =>
      parsePrometheus(await metrics()).samples.find((s) => s.name === 'ntp_bytes_out_total' && s.labels.app === 'flood')?.value ?? 0;

    /**
     * Users that ask for the flood and read nothing; resolves once their bytes stall and were
     * sampled. Several, since whether a chunk still waits in a user's socket (rather than with
     * the kernel) when it stalls depends on how the chunks fell.
     */
    async function stalledUsers(): Promise<Socket[]> {
      const users = await Promise.all(Array.from({ length: STALLED_USERS }, () => connectTo(publicPort)));
      for (const user of users) {
        user.on('error', () => {});
        user.pause();
        user.write('F');
      }
      // Sampled once a second: two equal non-zero reads a sample apart say every buffer on the
      // path is full and the server's count includes what waits in the users' sockets.
      let last = -1;
      await eventually(
        async () => {
          const now = await bytesOut();
          const stalled = now > 0 && now === last;
          last = now;
          return stalled;
        },
        { message: () => `the flood to stall (bytes out ${last})`, timeout: 15_000, interval: 1100 },
      );
      return users;
    }

    async function assertServesNewUser(): Promise<void> {
      assert.equal(server.running, true, `the server exited:\n${server.output}`);
      const payload = randomBytes(32 * 1024);
      assert.equal(sha256(await echoRoundTrip(publicPort, Buffer.concat([Buffer.from('E'), payload]))), sha256(Buffer.concat([Buffer.from('E'), payload])));
    }

    before(async () => {
      app = await startFloodOrEchoApp();
      config = makeConfigDir([{ name: 'acct', secret: randomSecret(), apps: [{ name: 'flood', localPort: app.port }] }], {
        extra: { mux, admin: { bind: '127.0.0.1:0', token: '${NTP_TEST_ADMIN_TOKEN}' } },
      });
      server = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile], { NTP_TEST_ADMIN_TOKEN: TOKEN }));
      link = await serverLinkOf(server);
      adminUrl = (await server.waitForLine(/admin listening on (http:\/\/\S+) \(token required\)/))[1]!;
      client = processes.add(startGroupClientProcess({ groupsDir: config.groupsDir, group: 'acct', server: link }));
      publicPort = (await waitForGroupActive(client, 'acct')).get('flood')!;
    });
    after(async () => {
      await processes.stopAll();
      await app.close();
    });

    test('a user that stops reading while the app floods it, then resets: the server survives and no counter goes back', { timeout: 40_000 }, async () => {
      const users = await stalledUsers();
      const before = counters(await metrics());
      const shownBefore = await dashboardBytesOut();
      for (const user of users) user.resetAndDestroy();
      // The reset conn's end is sampled at once, and so is the new user's.
      await assertServesNewUser();
      assertNoneWentBack(before, counters(await metrics()));
      assert.ok((await dashboardBytesOut()) >= shownBefore, 'the dashboard total never goes back');
    });

    test('the client killed with kill -9 under a user reading slowly: the server survives and no counter goes back', { timeout: 40_000 }, async () => {
      const users = await stalledUsers();
      const before = counters(await metrics());
      const shownBefore = await dashboardBytesOut();
      await client.killHard();
      await server.waitForLine(/group acct deactivated/, { timeoutMs: 15_000 });
      // Read only now: until the server tore it down, its bytes waited in the server's socket.
      for (const user of users) {
        const ending = streamEnding(user);
        user.resume();
        assert.ok(endedByReset(await withDeadline(ending, 10_000, 'the user seeing its end')), 'the user sees a reset, never a clean end');
      }
      client = processes.add(startGroupClientProcess({ groupsDir: config.groupsDir, group: 'acct', server: link }));
      publicPort = (await waitForGroupActive(client, 'acct')).get('flood')!;
      await assertServesNewUser();
      assertNoneWentBack(before, counters(await metrics()));
      assert.ok((await dashboardBytesOut()) >= shownBefore, 'the dashboard total never goes back');
    });
  });
}

accountingSuite(true);
accountingSuite(false);
