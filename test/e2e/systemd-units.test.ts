import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { catchHangups } from '../../src/cli/hangups.js';
import { nodeLaunchOf } from '../../src/cli/node-flags.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { echoRoundTrip } from '../helpers/net.js';
import { CliProcess, COMMONSERVER_BIN, GROUPCLIENT_BIN, ProcessSet, startGroupClientProcess, serverLinkOf, waitForGroupActive } from '../helpers/processes.js';
import { REPO_ROOT } from '../helpers/paths.js';

const unitsDir = join(REPO_ROOT, 'contrib', 'systemd');
const SERVER_UNIT = 'commonserver.service';
const CLIENT_UNIT = 'groupclient@.service';

/** `Key=value` lines of a unit file, every value of a repeated key in order. */
function directives(unit: string): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const line of readFileSync(join(unitsDir, unit), 'utf8').split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) found.set(match[1]!, [...(found.get(match[1]!) ?? []), match[2]!]);
  }
  return found;
}

function one(unit: Map<string, string[]>, key: string): string | undefined {
  return unit.get(key)?.at(-1);
}

const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

test(
  'systemd-analyze verify accepts both units (ExecStart pointed at the built binaries)',
  // .ci/run installs systemd and stops when systemd-analyze is still missing: this skip never hides in CI.
  { timeout: 30_000, skip: hasSystemdAnalyze ? false : 'systemd-analyze is not installed (Debian package systemd)' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'ntp-units-'));
    // systemd-analyze refuses an ExecStart whose program is missing: run the build with this node
    // (and the flags and environment the binaries' `#!` line gives it).
    const withNode = (bin: string): string => {
      const launch = nodeLaunchOf(bin);
      return ['/usr/bin/env', ...Object.entries(launch.env).map(([name, value]) => `${name}=${value}`), process.execPath, ...launch.flags, bin].join(' ');
    };
    const real = (text: string): string =>
      text
        .replace('ExecStart=/usr/local/bin/commonserver', `ExecStart=${withNode(COMMONSERVER_BIN)}`)
        .replace('ExecStart=/usr/local/bin/groupclient', `ExecStart=${withNode(GROUPCLIENT_BIN)}`);
    const serverCopy = join(dir, SERVER_UNIT);
    // A template is verified as one of its instances.
    const clientCopy = join(dir, 'groupclient@office-a.service');
    writeFileSync(serverCopy, real(readFileSync(join(unitsDir, SERVER_UNIT), 'utf8')));
    writeFileSync(clientCopy, real(readFileSync(join(unitsDir, CLIENT_UNIT), 'utf8')));
    const result = spawnSync('systemd-analyze', ['verify', serverCopy, clientCopy], { encoding: 'utf8' });
    const output = `${result.stdout}${result.stderr}`;
    assert.equal(result.status, 0, output);
    // Unknown keys and unparsable values are only warnings to systemd-analyze: refuse them too.
    const aboutOurs = output.split('\n').filter((line) => line.includes('commonserver') || line.includes('groupclient'));
    assert.deepEqual(aboutOurs, [], output);
  },
);

test('the units: reload by SIGHUP, sandboxed, CAP_NET_BIND_SERVICE on the server only, no restart loop on a rejected login', { timeout: 30_000 }, async () => {
  const server = directives(SERVER_UNIT);
  const client = directives(CLIENT_UNIT);
  for (const unit of [server, client]) {
    assert.equal(one(unit, 'ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(one(unit, 'Restart'), 'on-failure');
    for (const [key, value] of Object.entries({
      DynamicUser: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      NoNewPrivileges: 'yes',
      SystemCallFilter: '@system-service',
    })) {
      assert.equal(one(unit, key), value, key);
    }
    assert.match(one(unit, 'RestrictAddressFamilies') ?? '', /^AF_INET AF_INET6 AF_UNIX$/);
    assert.ok(one(unit, 'StateDirectory'));
    assert.equal(unit.get('MemoryDenyWriteExecute'), undefined, 'V8 needs writable and executable memory');
  }
  assert.equal(one(server, 'AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
  assert.equal(one(client, 'AmbientCapabilities'), undefined);
  assert.equal(one(client, 'CapabilityBoundingSet'), '');
  assert.match(one(client, 'ExecStart') ?? '', /--group %i\b/);

  // The status the unit will not restart on is the one a rejected groupclient really exits with.
  const prevent = one(client, 'RestartPreventExitStatus');
  const config = makeConfigDir([{ name: 'unit-check', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] }]);
  const serverProcess = new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile]);
  after(() => serverProcess.stop());
  const link = await serverLinkOf(serverProcess);
  // The host's copy holds another secret.
  const host = makeConfigDir([{ name: 'unit-check', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] }]);
  const rejected = startGroupClientProcess({ groupsDir: host.groupsDir, group: 'unit-check', server: link });
  after(() => rejected.stop());
  const { code } = await rejected.exited;
  assert.match(rejected.output, /login rejected: BAD_SECRET/);
  assert.equal(String(code), prevent);
});

test(
  "systemctl reload (the units' ExecReload: kill -HUP) re-reads the groups directory on the server and the group file on the client; a bad file keeps the running version",
  { timeout: 60_000 },
  async () => {
    const processes = new ProcessSet();
    const first = await startEchoApp();
    const second = await startEchoApp();
    after(async () => {
      await processes.stopAll();
      await first.close();
      await second.close();
    });
    const secret = randomSecret();
    // The server's registry and the host's own copy, in two directories: as on two machines.
    const serverSide = makeConfigDir([{ name: 'reload', secret, apps: [{ name: 'a', localPort: first.port }] }]);
    const hostSide = makeConfigDir([{ name: 'reload', secret, apps: [{ name: 'a', localPort: first.port }] }]);
    // --no-watch on both: only the signal can make them reload.
    const server = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', serverSide.serverFile, '--no-watch']));
    const link = await serverLinkOf(server);
    const client = processes.add(startGroupClientProcess({ groupsDir: hostSide.groupsDir, group: 'reload', server: link, extraArgs: ['--no-watch'] }));
    const before = await waitForGroupActive(client, 'reload');
    assert.equal((await echoRoundTrip(before.get('a')!, Buffer.from('before'))).toString(), 'before');

    const execReload = (pid: number): Promise<unknown> => promisify(execFile)('/bin/kill', ['-HUP', String(pid)]);
    const added = {
      name: 'reload',
      secret,
      apps: [
        { name: 'a', localPort: first.port },
        { name: 'b', localPort: second.port },
      ],
    };
    const serverFrom = server.lines.length;
    const clientFrom = client.lines.length;
    serverSide.writeGroup(added);
    hostSide.writeGroup(added);
    await execReload(client.pid);
    await client.waitForLine(/SIGHUP: reloading the group file/, { fromLine: clientFrom });
    await client.waitForLine(/group file reloaded: a, b/, { fromLine: clientFrom });
    await execReload(server.pid);
    await server.waitForLine(/group reload updated \(2 apps\)/, { fromLine: serverFrom });
    const opened = await client.waitForLine(/group reload changed on the server: opened b → server port (\d+)/, { fromLine: clientFrom });
    // The new app answers through its local target, which the client learnt from the server (GroupApps).
    assert.equal((await echoRoundTrip(Number(opened[1]), Buffer.from('to b'))).toString(), 'to b');

    // A broken file on reload: reported, the running version stays, traffic still flows.
    const brokenFrom = client.lines.length;
    writeFileSync(hostSide.groupFile('reload'), 'name: reload\nsecret: short\n');
    await execReload(client.pid);
    await client.waitForLine(/group file not reloaded, the previous version stays: .*reload\.yaml:\d+: secret: too short/, { fromLine: brokenFrom });
    assert.equal((await echoRoundTrip(before.get('a')!, Buffer.from('still'))).toString(), 'still');
    assert.ok(server.running && client.running, 'SIGHUP never ends either process');
  },
);

test(
  'a SIGHUP that comes before the reload is wired up is kept for it, not fatal (systemd counts a SIGHUP death as clean and would not restart)',
  { timeout: 10_000 },
  async () => {
    // A signal listener does not keep the event loop alive while the signal is on its way.
    const keepAlive = setInterval(() => {}, 1000);
    after(() => clearInterval(keepAlive));
    const hangups$ = catchHangups();
    const delivered = once(process, 'SIGHUP');
    process.kill(process.pid, 'SIGHUP');
    await delivered;
    // Wired only now, as the CLIs do once their config is loaded: the early signal is handed over.
    let reloads = 0;
    const subscription = hangups$.subscribe(() => reloads++);
    assert.equal(reloads, 1);
    const again = once(process, 'SIGHUP');
    process.kill(process.pid, 'SIGHUP');
    await again;
    assert.equal(reloads, 2);
    subscription.unsubscribe();
  },
);
