import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startApp, startBannerApp, startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { LINKS, type Link, type ServerLink } from '../helpers/link.js';
import { connectTo, echoRoundTrip, endedByReset, readBytes, sha256, streamEnding, withDeadline } from '../helpers/net.js';
import { CliProcess, ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';
import { eventually } from '../helpers/eventually.js';

/** Established TCP conns from this machine to the common port: the client's control conn and work conns. */
function connsToCommonPort(port: number): number {
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.trim() !== '').length;
}

/**
 * Kills (ss -K: a reset, as the kernel sends one) every conn from the client to the common
 * port except its control conn (`controlPort`, its local port as the server's activation line
 * names it): the mux conn. False when the kernel cannot kill sockets (no
 * CONFIG_INET_DIAG_DESTROY, or no privilege).
 */
function killAllButControlConn(port: number, controlPort: number): boolean {
  const before = connsToCommonPort(port);
  try {
    execFileSync('ss', ['-K', 'state', 'established', `( dport = :${port} and not sport = :${controlPort} )`], { stdio: 'ignore' });
  } catch {
    // ss reports an error for the peer it did not own; what counts is whether the conn is gone.
  }
  return connsToCommonPort(port) < before;
}

interface Tunnel {
  processes: ProcessSet;
  server: CliProcess;
  link: ServerLink;
  client: CliProcess;
  ports: Map<string, number>;
  config: TestConfigDir;
}

async function startTunnel(link: Link, apps: Array<{ name: string; localPort: number }>, extra: Record<string, unknown> = {}): Promise<Tunnel> {
  const processes = new ProcessSet();
  const appEntries = await Promise.all(apps.map(async (app) => ({ ...app, remotePort: await unusedPort() })));
  const config = makeConfigDir([{ name: 'muxed', secret: randomSecret(), apps: appEntries }], {
    heartbeatInterval: '300ms',
    heartbeatTimeout: '3s',
    tls: link === 'tls',
    extra,
  });
  const started = await startCommonServerProcess(config.serverFile);
  const server = processes.add(started.process);
  const client = processes.add(startGroupClientProcess({ group: 'muxed', groupsDir: config.groupsDir, server: started, clientId: 'muxed-agent' }));
  const ports = await waitForGroupActive(client, 'muxed');
  return { processes, server, link: started, client, ports, config };
}

function muxSuite(link: Link): void {
  describe(`mux conn over the ${link} link`, () => {
    let echo: TestApp;
    let banner: TestApp;
    /** Sends 20 MiB as soon as a user connects and never reads: a user that does not read stalls its stream. */
    let flood: TestApp;
    let tunnel: Tunnel;

    before(async () => {
      echo = await startEchoApp();
      banner = await startBannerApp('220 mux banner\r\n');
      flood = await startApp((socket) => {
        const chunk = Buffer.alloc(1024 * 1024, 7);
        let sent = 0;
        const pump = (): void => {
          while (sent < 20 && socket.write(chunk)) sent++;
          if (sent < 20) socket.once('drain', pump);
        };
        pump();
      });
      tunnel = await startTunnel(link, [
        { name: 'echo', localPort: echo.port },
        { name: 'banner', localPort: banner.port },
        { name: 'flood', localPort: flood.port },
      ]);
    });

    after(async () => {
      await tunnel.processes.stopAll();
      await Promise.all([echo.close(), banner.close(), flood.close()]);
    });

    test('60 users at once each get exactly their own bytes back, over two conns to the common port in all', { timeout: 60_000 }, async () => {
      const port = tunnel.ports.get('echo')!;
      // The mux conn arrives just after the login: wait for it before counting.
      await eventually(() => connsToCommonPort(tunnel.link.port) === 2, { message: 'the control conn and the mux conn', timeout: 10_000 });
      const users = Array.from({ length: 60 }, (_, index) => randomBytes(16 * 1024 + index * 4096));
      let most = 0;
      const watch = setInterval(() => (most = Math.max(most, connsToCommonPort(tunnel.link.port))), 20);
      try {
        const answers = await Promise.all(users.map((payload) => echoRoundTrip(port, payload)));
        answers.forEach((answer, index) => assert.equal(sha256(answer), sha256(users[index]!), `user ${index} got other bytes`));
      } finally {
        clearInterval(watch);
      }
      assert.equal(most, 2, `the client held ${most} conns to the common port while 60 users were served`);
    });

    test('a server-speaks-first app: the user reads the banner without sending a byte', async () => {
      const user = await connectTo(tunnel.ports.get('banner')!);
      assert.equal((await withDeadline(readBytes(user, 16), 5000, 'the banner')).toString(), '220 mux banner\r\n');
      user.destroy();
    });

    test(
      'a user that stops reading holds up only its own stream: another user is served meanwhile, and the stalled one gets every byte later',
      { timeout: 60_000 },
      async () => {
        const stalled = await connectTo(tunnel.ports.get('flood')!);
        stalled.pause();
        // Let the stream fill its window and the kernels' buffers.
        await new Promise((resolve) => setTimeout(resolve, 300));
        const payload = randomBytes(256 * 1024);
        assert.equal(
          sha256(await withDeadline(echoRoundTrip(tunnel.ports.get('echo')!, payload), 20_000, 'an echo beside the stalled stream')),
          sha256(payload),
        );
        const all = readBytes(stalled, 20 * 1024 * 1024);
        stalled.resume();
        assert.equal((await withDeadline(all, 30_000, 'the stalled user reading its 20 MiB')).length, 20 * 1024 * 1024);
        stalled.destroy();
      },
    );

    test('a user reset mid-stream reaches the app as a reset, and an app reset reaches its user as one', { timeout: 30_000 }, async () => {
      const appConns: Socket[] = [];
      const app = await startApp((socket) => appConns.push(socket));
      const resetTunnel = await startTunnel(link, [{ name: 'app', localPort: app.port }]);
      try {
        await eventually(() => connsToCommonPort(resetTunnel.link.port) === 2, { message: 'the mux conn', timeout: 10_000 });
        const user = await connectTo(resetTunnel.ports.get('app')!);
        user.on('error', () => {});
        user.write('hello');
        await eventually(() => appConns.length === 1, { message: 'the first user reaching the app' });
        const appSaw = streamEnding(appConns[0]!);
        await eventually(() => appConns[0]!.bytesRead === 5, { message: 'the first bytes' });
        user.resetAndDestroy();
        const appEnding = await withDeadline(appSaw, 5000, 'the app seeing the end');
        assert.ok(endedByReset(appEnding), `the app saw ${appEnding.ending} where the user reset`);

        const second = await connectTo(resetTunnel.ports.get('app')!);
        await eventually(() => appConns.length === 2, { message: 'the second user reaching the app' });
        const userSaw = streamEnding(second);
        appConns[1]!.write('partial answer');
        await eventually(() => second.bytesRead === 14, { message: 'the partial answer' });
        appConns[1]!.resetAndDestroy();
        const userEnding = await withDeadline(userSaw, 5000, 'the user seeing the end');
        assert.ok(endedByReset(userEnding), `the user saw ${userEnding.ending} where the app reset`);
      } finally {
        await resetTunnel.processes.stopAll();
        await app.close();
      }
    });

    test('kill -9 of the client resets every user mid-answer; none sees a clean end', { timeout: 30_000 }, async () => {
      const killed = await startTunnel(link, [{ name: 'flood', localPort: flood.port }]);
      try {
        await eventually(() => connsToCommonPort(killed.link.port) === 2, { message: 'the mux conn', timeout: 10_000 });
        const users = await Promise.all(Array.from({ length: 5 }, () => connectTo(killed.ports.get('flood')!)));
        const endings = users.map((user) => streamEnding(user));
        await Promise.all(users.map((user) => eventually(() => user.bytesRead > 0, { message: 'the first bytes' })));
        await killed.client.killHard();
        for (const ending of await withDeadline(Promise.all(endings), 10_000, 'the users seeing the end')) {
          assert.ok(endedByReset(ending), `a user saw ${ending.ending} (${ending.code ?? ''}) after ${ending.bytes} bytes instead of a reset`);
        }
      } finally {
        await killed.processes.stopAll();
      }
    });

    test('kill -9 of the server resets every local app conn; none sees a clean end', { timeout: 30_000 }, async () => {
      const appConns: Socket[] = [];
      const sink = await startApp((socket) => {
        appConns.push(socket);
        socket.write('ready');
      });
      const killed = await startTunnel(link, [{ name: 'sink', localPort: sink.port }]);
      try {
        await eventually(() => connsToCommonPort(killed.link.port) === 2, { message: 'the mux conn', timeout: 10_000 });
        const users = await Promise.all(Array.from({ length: 5 }, () => connectTo(killed.ports.get('sink')!)));
        for (const user of users) user.on('error', () => {});
        await eventually(() => appConns.length === 5, { message: 'the app conns' });
        const endings = appConns.map((socket) => streamEnding(socket));
        for (const user of users) user.write('some bytes the app reads');
        await killed.server.killHard();
        for (const ending of await withDeadline(Promise.all(endings), 10_000, 'the app conns seeing the end')) {
          assert.ok(
            endedByReset(ending),
            `an app conn saw ${ending.ending} (${ending.code ?? ''}, kernel state ${ending.kernelState ?? 'gone'}) after ${ending.bytes} bytes instead of a reset; the client said:\n${killed.client.lines.slice(-8).join('\n')}`,
          );
        }
      } finally {
        await killed.processes.stopAll();
        await sink.close();
      }
    });

    test(
      'the mux conn lost while the control conn lives: its users are reset, a new one is asked for, and users are served again',
      { timeout: 30_000 },
      async (t) => {
        const lost = await startTunnel(link, [
          { name: 'flood', localPort: flood.port },
          { name: 'echo', localPort: echo.port },
        ]);
        try {
          await eventually(() => connsToCommonPort(lost.link.port) === 2, { message: 'the control conn and the mux conn', timeout: 10_000 });
          const users = await Promise.all(Array.from({ length: 3 }, () => connectTo(lost.ports.get('flood')!)));
          const endings = users.map((user) => streamEnding(user));
          await Promise.all(users.map((user) => eventually(() => user.bytesRead > 0, { message: 'the first bytes' })));
          const fromLine = lost.server.lines.length;
          const controlPort = Number(/group muxed activated from 127\.0\.0\.1:(\d+)/.exec(lost.server.lines.join('\n'))?.[1]);
          assert.ok(controlPort > 0, 'the server named the control conn');
          if (!killAllButControlConn(lost.link.port, controlPort)) return t.skip('this kernel cannot kill a socket (ss -K)');
          for (const ending of await withDeadline(Promise.all(endings), 10_000, 'the users seeing the end')) {
            assert.ok(endedByReset(ending), `a user saw ${ending.ending} after ${ending.bytes} bytes instead of a reset`);
          }
          await lost.server.waitForLine(/group muxed: mux conn lost/, { fromLine, timeoutMs: 5000 });
          await eventually(() => connsToCommonPort(lost.link.port) === 2, { message: 'a new mux conn beside the control conn', timeout: 10_000 });
          const payload = randomBytes(64 * 1024);
          assert.equal(sha256(await echoRoundTrip(lost.ports.get('echo')!, payload)), sha256(payload));
          assert.ok(!lost.server.lines.slice(fromLine).some((line) => /deactivated/.test(line)), 'the group was deactivated');
        } finally {
          await lost.processes.stopAll();
        }
      },
    );

    test('a local app that is down: its user is reset at once, and both sides name the cause', { timeout: 30_000 }, async () => {
      const deadPort = await unusedPort();
      const down = await startTunnel(link, [{ name: 'down', localPort: deadPort }]);
      try {
        await eventually(() => connsToCommonPort(down.link.port) === 2, { message: 'the mux conn', timeout: 10_000 });
        const user = await connectTo(down.ports.get('down')!);
        const ending = await withDeadline(streamEnding(user), 5000, 'the user seeing the end');
        assert.equal(ending.ending, 'reset');
        assert.equal(ending.bytes, 0);
        await down.client.waitForLine(new RegExp(`down: local app unreachable: 127\\.0\\.0\\.1:${deadPort}: ECONNREFUSED`));
        await down.server.waitForLine(/user of muxed\/down closed: local app unreachable/);
      } finally {
        await down.processes.stopAll();
      }
    });

    test("with mux: false in the server's config, users are served on pooled work conns as before", { timeout: 30_000 }, async () => {
      const pooled = await startTunnel(link, [{ name: 'echo', localPort: echo.port }], { mux: false, workConnPool: 4 });
      try {
        await eventually(() => connsToCommonPort(pooled.link.port) === 5, { message: 'the control conn and 4 pooled work conns', timeout: 10_000 });
        const payload = randomBytes(64 * 1024);
        assert.equal(sha256(await echoRoundTrip(pooled.ports.get('echo')!, payload)), sha256(payload));
      } finally {
        await pooled.processes.stopAll();
      }
    });
  });
}

for (const link of LINKS) muxSuite(link);
