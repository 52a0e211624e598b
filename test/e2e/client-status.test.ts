import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ClientStatusReport } from '../../src/client/index.js';
import { startEchoApp, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import { connectTo, readBytes } from '../helpers/net.js';
import { CliProcess, GROUPCLIENT_BIN, ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';

/** Runs `groupclient status|reload ...` to its end. */
async function ask(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const cli = new CliProcess(GROUPCLIENT_BIN, args);
  const { code } = await cli.exited;
  return { code, out: cli.lines.join('\n'), err: cli.stderr.join('\n') };
}

describe('groupclient status and reload, through the control socket of a running client (TLS, pinned, mux)', () => {
  const processes = new ProcessSet();
  let echo: TestApp;
  let config: TestConfigDir;
  let socketPath = '';
  let serverPort = 0;
  let publicPort = 0;
  let secret = '';
  const users: Socket[] = [];

  before(async () => {
    echo = await startEchoApp();
    secret = randomSecret();
    config = makeConfigDir([{ name: 'host-a', secret, apps: [{ name: 'ssh', localPort: echo.port }] }]);
    socketPath = join(config.dir, 'control.sock');
    // A file a dead client left behind: replaced, not refused.
    writeFileSync(socketPath, '');
    const started = await startCommonServerProcess(config.serverFile);
    serverPort = started.port;
    processes.add(started.process);
    const client = processes.add(
      startGroupClientProcess({ group: 'host-a', groupsDir: config.groupsDir, server: started, extraArgs: ['--control-socket', socketPath, '--no-watch'] }),
    );
    publicPort = (await waitForGroupActive(client, 'host-a')).get('ssh')!;
  });

  after(async () => {
    for (const user of users) user.destroy();
    await processes.stopAll();
    await echo.close();
  });

  test('the control socket is private to its owner (mode 600)', { timeout: 10_000 }, () => {
    const stat = statSync(socketPath);
    assert.ok(stat.isSocket(), 'the stale file was replaced by the socket');
    assert.equal(stat.mode & 0o777, 0o600);
  });

  test('status while active: state, server, session age, each app with target, health and live conns', { timeout: 20_000 }, async () => {
    const user = await connectTo(publicPort);
    users.push(user);
    user.write('x');
    assert.equal((await readBytes(user, 1)).toString(), 'x', 'the user is relayed');
    const report = await eventually(
      async () => {
        const { code, out } = await ask(['status', '--control-socket', socketPath, '--json']);
        assert.equal(code, 0);
        const parsed = JSON.parse(out) as ClientStatusReport;
        assert.equal(parsed.apps[0]?.liveConns, 1);
        return parsed;
      },
      { message: 'status to show the open user', timeout: 10_000, interval: 100 },
    );
    assert.equal(report.group, 'host-a');
    assert.equal(report.state, 'active');
    assert.equal(report.server, `127.0.0.1:${serverPort}`);
    assert.ok(typeof report.sessionAgeMs === 'number' && report.sessionAgeMs >= 0);
    assert.deepEqual(report.apps, [
      { name: 'ssh', type: 'tcp', target: `127.0.0.1:${echo.port}`, public: `:${publicPort}`, health: 'unchecked', liveConns: 1 },
    ]);

    const table = await ask(['status', '--control-socket', socketPath]);
    assert.equal(table.code, 0, table.err);
    assert.match(table.out, new RegExp(`^group host-a active on 127\\.0\\.0\\.1:${serverPort} for \\d+s$`, 'm'));
    assert.match(table.out, /^APP\s+TYPE\s+TARGET\s+PUBLIC\s+HEALTH\s+LIVE$/m);
    assert.match(table.out, new RegExp(`^ssh\\s+tcp\\s+127\\.0\\.0\\.1:${echo.port}\\s+:${publicPort}\\s+unchecked\\s+1$`, 'm'));
  });

  test('reload through the command applies an added app (the file watcher is off) and prints the change', { timeout: 20_000 }, async () => {
    config.writeGroup({
      name: 'host-a',
      secret,
      apps: [
        { name: 'ssh', localPort: echo.port },
        { name: 'extra', localPort: echo.port, remotePort: 0 },
      ],
    });
    const reload = await ask(['reload', '--control-socket', socketPath]);
    assert.equal(reload.code, 0, reload.err);
    assert.match(reload.out, /^group file reloaded: ssh, extra$/m);
    const status = await ask(['status', '--control-socket', socketPath, '--json']);
    const report = JSON.parse(status.out) as ClientStatusReport;
    assert.deepEqual(
      report.apps.map((app) => [app.name, app.target]),
      [
        ['ssh', `127.0.0.1:${echo.port}`],
        ['extra', `127.0.0.1:${echo.port}`],
      ],
    );

    // A file that no longer loads: the error, exit 1, and the previous version stays.
    writeFileSync(config.groupFile('host-a'), 'name: host-a\napps: []\n');
    const bad = await ask(['reload', '--control-socket', socketPath]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /group file not reloaded, the previous version stays: .*apps/);
    const after = JSON.parse((await ask(['status', '--control-socket', socketPath, '--json'])).out) as ClientStatusReport;
    assert.equal(after.apps.length, 2);
  });
});

test('status with no running client of the group: a clear error and exit 3', { timeout: 10_000 }, async () => {
  const config = makeConfigDir([{ name: 'nobody-here', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] }]);
  const path = join(config.dir, 'absent.sock');
  const status = await ask(['status', '--control-socket', path]);
  assert.equal(status.code, 3);
  assert.match(status.err, new RegExp(`no groupclient of .*absent\\.sock is running here: no running groupclient answers on .*absent\\.sock \\(ENOENT\\)`));
  // By group name: its default path, under XDG_RUNTIME_DIR.
  const cli = new CliProcess(GROUPCLIENT_BIN, ['status', '--group', 'nobody-here'], { XDG_RUNTIME_DIR: config.dir });
  assert.equal((await cli.exited).code, 3);
  assert.match(cli.stderr.join('\n'), new RegExp(`no groupclient of nobody-here is running here: .*${join(config.dir, 'groupclient-nobody-here.sock')}`));
});
