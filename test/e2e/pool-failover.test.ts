import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startBannerApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import { connectTo, readBytes, streamEnding } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive, type CliProcess } from '../helpers/processes.js';
import type { ServerLink } from '../helpers/link.js';

const MEMBERS = ['a', 'b', 'c'] as const;
const BANNER_BYTES = 'member a\n'.length;
// Timeouts generous enough that a busy machine's event-loop lag never fails a check of a live app.
const CHECK = { type: 'tcp', interval: '1s', timeout: '1s', failures: 2, successes: 2 } as const;
/** What the health checks alone take to mark a dead app: `failures` checks, the last one timing out. */
const HEALTH_WINDOW_MS = 2 * 1000 + 1000;
/** Failure guard for waits on a loaded 2-core machine; never a measured bound. */
const GUARD_MS = 30_000;

interface UserRecord {
  start: number;
  end: number;
  member?: string;
  error?: string;
}

/**
 * Users one after another on each of `workers` lanes, for the whole test: each reads its
 * member's banner, sends 1 KiB, expects it echoed exactly and a clean FIN. Anything else, a
 * reset, a short echo or no answer within 5 s, is a failed connection.
 */
class LoadClient {
  readonly records: UserRecord[] = [];
  private running = true;
  private readonly lanes: Promise<void>[] = [];

  constructor(
    private readonly port: number,
    workers: number,
  ) {
    for (let i = 0; i < workers; i++) this.lanes.push(this.lane());
  }

  private async lane(): Promise<void> {
    while (this.running) {
      const start = Date.now();
      try {
        const member = await withDeadline(this.user(), 5000);
        this.records.push({ start, end: Date.now(), member });
      } catch (error) {
        this.records.push({ start, end: Date.now(), error: (error as Error).message });
      }
      // Pacing, so that three lanes of users leave the shared cores to the processes under test.
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  private async user(): Promise<string> {
    const socket = await connectTo(this.port);
    // A reset shows as the close that readBytes and streamEnding report; no uncaught error.
    socket.on('error', () => {});
    try {
      const banner = (await readBytes(socket, BANNER_BYTES)).toString();
      const member = /^member (\w)\n$/.exec(banner)?.[1];
      if (member === undefined) throw new Error(`bad banner ${JSON.stringify(banner)}`);
      const payload = randomBytes(1024);
      const ending = streamEnding(socket);
      socket.end(payload);
      const { ending: how, data } = await ending;
      if (how !== 'fin' || !data.equals(payload)) throw new Error(`member ${member}: ${how} after ${data.length} of ${payload.length} bytes`);
      return member;
    } finally {
      socket.destroy();
    }
  }

  /** Resolves once `count` more users than now succeeded, or with `member` if given. */
  async successes(count: number, member?: string): Promise<void> {
    const from = this.records.length;
    await eventually(() => this.records.slice(from).filter((r) => r.error === undefined && (member === undefined || r.member === member)).length >= count, {
      message: `${count} more users to ${member ? `reach ${member}` : 'succeed'}`,
      timeout: GUARD_MS,
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.lanes);
  }
}

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms}ms`)), ms)));
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Three groupclient processes serve pool `web` through a real commonserver over TLS with a
 * pinned fingerprint. A load client runs for the whole test. Faults: kill -9 of client b, then
 * c's local app stopped. The only users allowed to fail are those in flight from a fault until
 * the server says it acted on it (b left the pool; c marked unhealthy, which the health checks
 * must do within `HEALTH_WINDOW_MS` plus scheduling); every other user must succeed. Then
 * both members come back (c's app restarted passes its checks, b's client restarted) and get
 * users again.
 */
describe('pool failover with real processes', () => {
  const processes = new ProcessSet();
  let config: TestConfigDir;
  let server: CliProcess;
  let link: ServerLink;
  const apps = new Map<string, TestApp>();
  const clients = new Map<string, CliProcess>();
  let poolPort = 0;

  const startMemberClient = (name: string): CliProcess =>
    processes.add(startGroupClientProcess({ group: name, groupsDir: config.groupsDir, server: link, clientId: `agent-${name}` }));

  before(async () => {
    poolPort = await unusedPort();
    for (const name of MEMBERS) apps.set(name, await startBannerApp(`member ${name}\n`));
    config = makeConfigDir(
      MEMBERS.map((name) => ({
        name,
        secret: randomSecret(),
        apps: [{ name: 'web', localPort: apps.get(name)!.port, pool: 'web', healthCheck: { ...CHECK } }],
      })),
      // A killed client is seen by its closed conn, not by heartbeats: a long timeout keeps a busy
      // machine from dropping a live member.
      { heartbeatInterval: '500ms', heartbeatTimeout: '5s', extra: { pools: { web: { remotePort: poolPort } } } },
    );
    const started = await startCommonServerProcess(config.serverFile);
    server = processes.add(started.process);
    link = started;
    for (const name of MEMBERS) {
      clients.set(name, startMemberClient(name));
      assert.equal((await waitForGroupActive(clients.get(name)!, name)).get('web'), poolPort);
      await server.waitForLine(new RegExp(`pool web: ${name}/web joined`), { timeoutMs: GUARD_MS });
    }
  });

  after(async () => {
    await processes.stopAll();
    await Promise.all([...apps.values()].map((app) => app.close()));
  });

  test("kill -9 a client, stop another one's app: no failed user outside the fault windows; both come back", { timeout: 180_000 }, async (t) => {
    const load = new LoadClient(poolPort, 3);
    const windows: { from: number; to: number; what: string }[] = [];
    try {
      await load.successes(30);
      for (const name of MEMBERS)
        assert.ok(
          load.records.some((r) => r.member === name),
          `member ${name} served users before the faults`,
        );

      // Fault 1: kill -9 client b. Its session's conns close with the process: it leaves at once.
      let fromLine = server.lines.length;
      const killedAt = Date.now();
      await clients.get('b')!.killHard();
      await server.waitForLine(/pool web: b\/web left/, { fromLine, timeoutMs: GUARD_MS });
      windows.push({ from: killedAt, to: Date.now(), what: 'kill -9 of client b until it left the pool' });
      await load.successes(30);

      // Fault 2: c's local app stops; its client's checks fail twice and tell the server.
      fromLine = server.lines.length;
      const stoppedAt = Date.now();
      await apps.get('c')!.close();
      await server.waitForLine(/pool web: c\/web unhealthy/, { fromLine, timeoutMs: GUARD_MS });
      const markedAt = Date.now();
      windows.push({ from: stoppedAt, to: markedAt, what: "c's app stopped until c was marked unhealthy" });
      t.diagnostic(`c marked unhealthy ${markedAt - stoppedAt}ms after its app stopped (checks alone: ${HEALTH_WINDOW_MS}ms)`);
      await load.successes(30);
      const sinceMarked = load.records.filter((r) => r.start > markedAt && r.error === undefined);
      assert.ok(sinceMarked.length > 0 && sinceMarked.every((r) => r.member === 'a'), 'only a, the one live healthy member, gets users');

      // Recovery: c's app back on its port passes two checks; b's client logs in again.
      fromLine = server.lines.length;
      apps.set('c', await startBannerApp('member c\n', apps.get('c')!.port));
      await server.waitForLine(/pool web: c\/web healthy again/, { fromLine, timeoutMs: GUARD_MS });
      await load.successes(5, 'c');
      clients.set('b', startMemberClient('b'));
      await load.successes(5, 'b');
    } finally {
      await load.stop();
    }

    const inWindow = (r: UserRecord): boolean => windows.some((w) => r.end >= w.from && r.start <= w.to);
    const failed = load.records.filter((r) => r.error !== undefined);
    const outside = failed.filter((r) => !inWindow(r));
    const perMember = Object.fromEntries(MEMBERS.map((name) => [name, load.records.filter((r) => r.member === name).length]));
    t.diagnostic(
      `${load.records.length} users, ${failed.length} failed inside the fault windows (${windows.map((w) => `${w.what}: ${w.to - w.from}ms`).join('; ')}), per member ${JSON.stringify(perMember)}`,
    );
    assert.deepEqual(
      outside.map((r) => `${new Date(r.start).toISOString()}: ${r.error}`),
      [],
      'no user fails outside the fault windows',
    );
  });
});
