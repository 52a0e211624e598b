import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { makeConfigDir, randomSecret, type TestAppEntry, type TestConfigDir } from '../helpers/configs.js';
import type { ServerLink } from '../helpers/link.js';
import { CliProcess, ProcessSet, parsePortTable, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';
import { dig, portFreeForBoth, skipWithoutDns, startDnsmasq } from '../helpers/programs.js';
import { startUdpEchoApp, UdpUser, type UdpTestApp } from '../helpers/udp.js';

/**
 * A real DNS server (Debian's dnsmasq) behind the tunnel, asked by a real resolver client
 * (dig), through the real commonserver and groupclient over the default link (TLS, pinned
 * fingerprint). The same public port number carries DNS over UDP (a UDP app) and over TCP (a
 * TCP app): the kernel tells them apart, and so does the registry.
 */
const GROUP = 'resolver';
const HEARTBEAT_TIMEOUT_MS = 1000;
const RECORDS = ['address=/a.test/10.1.2.3', 'host-record=web.test,10.9.8.7', 'host-record=mail.test,10.9.8.25'];

const processes = new ProcessSet();
let config: TestConfigDir;
let server: CliProcess;
let serverLink: ServerLink;
let client: CliProcess;
let publicPort = 0;
let dnsPort = 0;
let echo: UdpTestApp;
const secret = randomSecret();
const users: UdpUser[] = [];

function apps(extra: TestAppEntry[] = []): TestAppEntry[] {
  return [{ name: 'dns', localPort: dnsPort, remotePort: publicPort, type: 'udp' }, { name: 'dns-tcp', localPort: dnsPort, remotePort: publicPort }, ...extra];
}

const startClient = (): CliProcess =>
  processes.add(startGroupClientProcess({ group: GROUP, groupsDir: config.groupsDir, server: serverLink, clientId: 'resolver-agent' }));

/** Whether this process can bind `port` for UDP on loopback (nobody holds it). */
async function canBindUdp(port: number): Promise<boolean> {
  const { createSocket } = await import('node:dgram');
  const socket = createSocket('udp4');
  return new Promise((resolve) => {
    socket.once('error', () => resolve(false));
    socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
  });
}

async function assertResolves(): Promise<void> {
  assert.deepEqual(await dig(publicPort, 'a.test'), { ok: true, answer: '10.1.2.3' });
  assert.deepEqual(await dig(publicPort, 'web.test'), { ok: true, answer: '10.9.8.7' });
}

describe('DNS through a UDP app (dnsmasq and dig)', { skip: skipWithoutDns }, () => {
  before(async () => {
    echo = await startUdpEchoApp();
    config = makeConfigDir([], { heartbeatInterval: '200ms', heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS}ms` });
    const dns = await startDnsmasq(config.dir, RECORDS);
    processes.add(dns.dnsmasq);
    dnsPort = dns.port;
    // A port number free for both protocols: the UDP app and the TCP app share it.
    publicPort = await portFreeForBoth();
    config.writeGroup({ name: GROUP, secret, apps: apps() });
    const started = await startCommonServerProcess(config.serverFile);
    server = processes.add(started.process);
    serverLink = started;
    assert.ok(serverLink.fingerprint, 'the default link is TLS');
    client = startClient();
    const table = await waitForGroupActive(client, GROUP);
    assert.equal(table.get('dns'), publicPort);
    assert.equal(table.get('dns-tcp'), publicPort);
  });

  after(async () => {
    await Promise.all(users.map((user) => user.close()));
    await processes.stopAll();
    await echo.close();
  });

  test('dig gets its answers through the tunnel over UDP, and over TCP on the same port number', { timeout: 30_000 }, async () => {
    await assertResolves();
    assert.deepEqual(await dig(publicPort, 'mail.test'), { ok: true, answer: '10.9.8.25' });
    // A name dnsmasq does not know: an empty answer, not a timeout.
    assert.deepEqual(await dig(publicPort, 'nowhere.test'), { ok: true, answer: '' });
    assert.deepEqual(await dig(publicPort, 'web.test', { tcp: true }), { ok: true, answer: '10.9.8.7' });
    // Ten resolvers at once, each from its own source port: ten sessions, ten right answers.
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => dig(publicPort, i % 2 === 0 ? 'a.test' : 'web.test')));
    answers.forEach((answer, i) => assert.deepEqual(answer, { ok: true, answer: i % 2 === 0 ? '10.1.2.3' : '10.9.8.7' }));
  });

  test('kill -9 of the groupclient: the UDP port stops relaying and is freed; after reconnect it answers again', { timeout: 30_000 }, async () => {
    await assertResolves();
    const fromLine = server.lines.length;
    await client.killHard();
    await server.waitForLine(new RegExp(`group ${GROUP} deactivated`), { fromLine, timeoutMs: HEARTBEAT_TIMEOUT_MS + 5000 });
    const unanswered = await dig(publicPort, 'a.test', { timeoutS: 1 });
    assert.equal(unanswered.ok, false, 'no answer while the group is down');
    assert.equal(await canBindUdp(publicPort), true, `UDP port ${publicPort} was not freed`);
    client = startClient();
    assert.equal((await waitForGroupActive(client, GROUP)).get('dns'), publicPort);
    await assertResolves();
  });

  test('hot reload: a UDP app added to the group file opens and relays; removed, its port closes', { timeout: 30_000 }, async () => {
    const serverFrom = server.lines.length;
    const clientFrom = client.lines.length;
    config.writeGroup({ name: GROUP, secret, apps: apps([{ name: 'echo', localPort: echo.port, type: 'udp' }]) });
    const changed = await client.waitForLine(/changed on the server: opened echo → server port \d+\/udp/, { fromLine: clientFrom });
    const echoPort = parsePortTable(changed[0]).get('echo')!;
    // The server sent the app with its target (GroupApps) before AppsChanged; the host's copy (the same file here) reloads too.
    await client.waitForLine(/group file reloaded: .*echo/, { fromLine: clientFrom });
    const user = await UdpUser.open();
    users.push(user);
    const reply = (await user.request(echoPort, 'added live')).toString();
    assert.match(reply, /^127\.0\.0\.1:\d+\|added live$/);
    // DNS kept answering across the reload.
    await assertResolves();

    config.writeGroup({ name: GROUP, secret, apps: apps() });
    await server.waitForLine(new RegExp(`app ${GROUP}/echo closed`), { fromLine: serverFrom });
    assert.equal(await canBindUdp(echoPort), true, `UDP port ${echoPort} was not freed`);
    await assertResolves();
  });
});
