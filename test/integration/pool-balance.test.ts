import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ServerMetrics } from '../../src/admin/index.js';
import { loadGroupFile } from '../../src/config/index.js';
import { startBannerApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../helpers/in-process.js';
import { connectTo, readBytes, streamEnding, waitForEvent } from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

/**
 * Three groups serve two pools over the default link (TLS, pinned): `web` spreads users round
 * robin, with its port fixed by its first registrant (group a; b and c leave it out); `db`
 * sends each user to the member with the fewest open conns, its port fixed by the server config.
 * Each member's local app is a banner app that names its member, so a user knows where it went.
 */
const MEMBERS = ['a', 'b', 'c'] as const;
const BANNER_BYTES = 'member a\n'.length;

describe('pools: users spread over three groups', () => {
  let config: TestConfigDir;
  let started: StartedServer;
  let metrics: ServerMetrics;
  const apps: TestApp[] = [];
  const clients = new Map<string, StartedClient>();
  let webPort = 0;
  let dbPort = 0;

  /** One user: connects to `port`, learns its member from the banner; the socket stays open. */
  async function visit(port: number): Promise<{ member: string; socket: Socket }> {
    const socket = await connectTo(port);
    const banner = (await readBytes(socket, BANNER_BYTES)).toString();
    const member = /^member (\w)\n$/.exec(banner)?.[1];
    assert.ok(member !== undefined, `unexpected banner ${JSON.stringify(banner)}`);
    return { member, socket };
  }

  before(async () => {
    webPort = await unusedPort();
    dbPort = await unusedPort();
    const groups = [];
    for (const name of MEMBERS) {
      const web = await startBannerApp(`member ${name}\n`);
      const db = await startBannerApp(`member ${name}\n`);
      apps.push(web, db);
      groups.push({
        name,
        secret: randomSecret(),
        apps: [
          { name: 'web', localPort: web.port, pool: 'web', ...(name === 'a' ? { remotePort: webPort } : {}) },
          { name: 'db', localPort: db.port, pool: 'db' },
        ],
      });
    }
    // A 5 s heartbeat timeout: on a busy machine a 1 s one can drop a live member mid-test.
    config = makeConfigDir(groups, {
      heartbeatInterval: '500ms',
      heartbeatTimeout: '5s',
      extra: { pools: { web: { balance: 'round_robin' }, db: { balance: 'least_conn', remotePort: dbPort } } },
    });
    started = await startServer(config);
    metrics = new ServerMetrics(started.server);
    for (const name of MEMBERS) {
      clients.set(name, startClient(loadGroupFile(config.groupFile(name)), started));
      await waitForEvent(started.events, (e) => e.type === 'pool-member-joined' && e.pool === 'db' && e.group === name, `${name} joining pool db`);
    }
  });

  after(async () => {
    metrics.close();
    for (const { client } of clients.values()) client.stop();
    await started.server.close();
    await Promise.all(apps.map((app) => app.close()));
  });

  test('round robin: 300 users, each member gets 100 ± 10', { timeout: 60_000 }, async () => {
    const counts = new Map<string, number>(MEMBERS.map((name) => [name, 0]));
    // Ten users at a time: the order users arrive in changes nothing for round robin.
    for (let wave = 0; wave < 30; wave++) {
      const users = await Promise.all(Array.from({ length: 10 }, () => visit(webPort)));
      for (const { member, socket } of users) {
        counts.set(member, counts.get(member)! + 1);
        socket.destroy();
      }
    }
    for (const name of MEMBERS) {
      const count = counts.get(name)!;
      assert.ok(count >= 90 && count <= 110, `member ${name} got ${count} of 300 users (expected 100 ± 10): ${JSON.stringify([...counts])}`);
    }
    // The server's own per-member counts say the same, in the admin view and in the metrics.
    const view = started.server.pools.views().find((pool) => pool.name === 'web')!;
    assert.equal(view.port, webPort, 'the first registrant (group a) fixed the pool port');
    assert.deepEqual(Object.fromEntries(view.members.map((m) => [m.group, m.usersRouted])), Object.fromEntries(counts));
    const text = await metrics.text();
    for (const name of MEMBERS) assert.match(text, new RegExp(`ntp_pool_users_total\\{pool="web",group="${name}"\\} ${counts.get(name)}\\n`));
    assert.match(text, /ntp_pool_members\{pool="web",health="healthy"\} 3\n/);
  });

  test('least_conn: with conns held, the next user goes to the emptiest member', { timeout: 30_000 }, async () => {
    const held: { member: string; socket: Socket }[] = [];
    for (let i = 0; i < 6; i++) held.push(await visit(dbPort));
    const perMember = (name: string): number => held.filter((user) => user.member === name).length;
    assert.deepEqual(MEMBERS.map(perMember), [2, 2, 2], 'ties go in turn');
    // Round robin would now go on with a; least_conn must fill b, which holds nothing.
    const closed = held.filter((user) => user.member === 'b');
    const ends = closed.map((user) => streamEnding(user.socket));
    for (const user of closed) user.socket.end();
    await Promise.all(ends);
    const dbPool = (): { group: string; openConns: number }[] => started.server.pools.views().find((pool) => pool.name === 'db')!.members;
    await eventually(() => dbPool().find((m) => m.group === 'b')!.openConns === 0, { message: "b's users gone on the server" });
    const next = await visit(dbPort);
    const after = await visit(dbPort);
    assert.deepEqual([next.member, after.member], ['b', 'b'], `open conns were ${JSON.stringify(dbPool())}`);
    for (const user of [...held, next, after]) user.socket.destroy();
  });

  test(
    'a member whose client stops leaves at once and reads unhealthy; the pool closes with its last member; a removed group takes its series along',
    { timeout: 30_000 },
    async () => {
      clients.get('c')!.client.stop();
      await waitForEvent(started.events, (e) => e.type === 'pool-member-left' && e.pool === 'web' && e.group === 'c', 'c leaving pool web');
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const { member, socket } = await visit(webPort);
        seen.add(member);
        socket.destroy();
      }
      assert.deepEqual([...seen].sort(), ['a', 'b'], 'no user goes to a member that left');
      // As every group's series: they live while the group is registered, across its client's absences.
      const text = await metrics.text();
      assert.match(text, /^ntp_pool_member_healthy\{pool="web",group="c"\} 0$/m, 'a member whose client is away gets no users');
      assert.match(text, /^ntp_pool_member_connections\{pool="web",group="c"\} 0$/m);
      assert.match(text, /^ntp_pool_users_total\{pool="web",group="c"\} \d+$/m, 'its count survives its absence');
      assert.match(text, /^ntp_pool_members\{pool="web",health="healthy"\} 2$/m);
      assert.match(text, /^ntp_pool_members\{pool="web",health="unhealthy"\} 1$/m);
      clients.get('a')!.client.stop();
      clients.get('b')!.client.stop();
      await waitForEvent(started.events, (e) => e.type === 'pool-closed' && e.pool === 'web', 'pool web closing');
      assert.equal(started.server.pools.get('web'), undefined);
      assert.match(await metrics.text(), /^ntp_pool_members\{pool="web",health="healthy"\} 0$/m, 'a closed pool its groups still name reads empty');
      started.server.deregisterGroup('c');
      assert.doesNotMatch(await metrics.text(), /^ntp_pool_\w+\{[^}]*group="c"/m, 'no pool series of a removed group');
      for (const name of ['a', 'b']) started.server.deregisterGroup(name);
      assert.doesNotMatch(await metrics.text(), /^ntp_pool_\w+\{pool="(web|db)"/m, 'no series of a pool no registered group names');
    },
  );
});
