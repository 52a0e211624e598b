/**
 * `npm run test:pack` (and .ci/run): the package as a user gets it. A clean clone of this
 * repository's committed HEAD, `npm ci`, `npm pack` (its prepack builds dist/), the tarball
 * installed into a throwaway prefix, and both installed binaries run from there through a
 * real TLS tunnel to a real app, and the README's quick start run as written with them. Slow (an
 * npm ci and a build), hence not part of npm test.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { recordSecret } from '../helpers/artifacts.js';
import { echoRoundTrip, freePortIn } from '../helpers/net.js';
import { fencedBlockUnder } from '../helpers/markdown.js';
import { CliProcess, ProcessSet, serverLinkOf, waitForGroupActive } from '../helpers/processes.js';
import { REPO_ROOT } from '../helpers/paths.js';

const { name, version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
// The installed binaries start with `#!/usr/bin/env -S node …`: this node, first on the PATH.
const env = { PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` };

function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
}

test(
  'npm pack from a clean clone holds what runs and nothing else; the installed commonserver and groupclient carry a real TLS tunnel and run the README quick start as written',
  { timeout: 600_000 },
  async () => {
    const work = mkdtempSync(join(tmpdir(), 'ntp-pack-'));
    const processes = new ProcessSet();
    // The clone with its node_modules and the prefix weigh hundreds of MB: never left behind.
    after(async () => {
      await processes.stopAll();
      rmSync(work, { recursive: true, force: true });
    });
    const clone = join(work, 'clone');
    run('git', ['clone', '--quiet', '--no-hardlinks', REPO_ROOT, clone], work);
    // The npm cache serves what it holds: offline-capable once the packages were fetched once.
    run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], clone);
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--loglevel=error'], clone)) as { filename: string; files: { path: string }[] }[];
    assert.ok(packed !== undefined);
    const files = packed.files.map((file) => file.path);

    for (const wanted of [
      'package.json',
      'README.md',
      'LICENSE',
      'SECURITY.md',
      'docs/README.md',
      'docs/getting-started.md',
      'docs/configuration.md',
      'docs/troubleshooting.md',
      'dist/src/cli/commonserver.js',
      'dist/src/cli/groupclient.js',
      'dist/src/server/common-server.js',
      'src/admin/dashboard/index.html',
      'src/admin/dashboard/chart.js',
      'schema/commonserver.schema.json',
      'schema/group.schema.json',
      'config/commonserver.yaml',
      'config/groups/office-a.yaml',
      'contrib/systemd/commonserver.service',
      'contrib/systemd/groupclient@.service',
    ]) {
      assert.ok(files.includes(wanted), `${wanted} is missing from the package`);
    }
    const unwanted = files.filter(
      (file) =>
        /^(dist\/(test|bench|chaos)\/|test\/|bench\/|chaos\/|\.ci\/|test-artifacts\/|node_modules\/|src\/(?!admin\/dashboard\/))/.test(file) ||
        file.endsWith('.ts') ||
        file.endsWith('.map'),
    );
    assert.deepEqual(unwanted, [], 'only what runs ships');

    const prefix = join(work, 'prefix');
    run(
      'npm',
      ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(clone, packed.filename)],
      work,
    );
    const installedCommonserver = join(prefix, 'bin', 'commonserver');
    const installedGroupclient = join(prefix, 'bin', 'groupclient');
    assert.equal(run(installedCommonserver, ['--version'], work).trim(), `commonserver ${version}`);
    assert.equal(run(installedGroupclient, ['--version'], work).trim(), `groupclient ${version}`);
    // Installed and started through their #! line, they run with its V8 flags and allocator setting (DEBUG=ntp:cli says so on stderr).
    for (const installed of [installedCommonserver, installedGroupclient]) {
      const said = spawnSync(installed, ['--version'], { cwd: work, env: { ...process.env, ...env, DEBUG: 'ntp:cli' }, encoding: 'utf8' });
      assert.match(
        said.stderr,
        /with flags \[--initial-old-space-size=64 --max-semi-space-size=2\], MALLOC_TRIM_THRESHOLD_=134217728/,
        `${installed} runs without its #! line's flags and environment`,
      );
    }
    assert.ok(readFileSync(join(prefix, 'lib', 'node_modules', name, 'LICENSE'), 'utf8').startsWith('MIT License'));

    const echo = await startEchoApp();
    after(() => echo.close());
    const serverDir = join(work, 'server');
    const commonPort = await unusedPort();
    run(installedCommonserver, ['init', serverDir, '--group', 'packed', '--public-host', '127.0.0.1', '--bind', `127.0.0.1:${commonPort}`], work);
    const groupFile = join(serverDir, 'groups', 'packed.yaml');
    const publicPort = await freePortIn(6000, 6999);
    const text = readFileSync(groupFile, 'utf8');
    // The files init writes name the installed package's JSON Schemas, for editors.
    for (const file of [join(serverDir, 'commonserver.yaml'), groupFile]) {
      const schema = /^# yaml-language-server: \$schema=(\S+)$/m.exec(readFileSync(file, 'utf8'))?.[1];
      assert.ok(schema !== undefined && existsSync(resolve(dirname(file), schema)), `${file} names its JSON Schema (${schema})`);
    }
    recordSecret(/^secret: (\S+)$/m.exec(text)![1]!);
    writeFileSync(groupFile, text.replace('local: 127.0.0.1:22', `local: 127.0.0.1:${echo.port}`).replace('remotePort: 6022', `remotePort: ${publicPort}`));
    appendFileSync(join(serverDir, 'commonserver.yaml'), 'admin:\n  bind: 127.0.0.1:0\n');
    const hostDir = mkdtempSync(join(work, 'host-'));
    copyFileSync(groupFile, join(hostDir, 'packed.yaml'));
    assert.match(run(installedCommonserver, ['verify', '--config', join(serverDir, 'commonserver.yaml')], work), /0 problems, 0 warnings: ok/);

    const server = processes.add(new CliProcess(installedCommonserver, ['--config', join(serverDir, 'commonserver.yaml')], env, [], { program: true }));
    await serverLinkOf(server);
    const client = processes.add(new CliProcess(installedGroupclient, ['--config', 'packed.yaml'], env, [], { program: true, cwd: hostDir }));
    const ports = await waitForGroupActive(client, 'packed', { timeoutMs: 20_000 });
    assert.equal(ports.get('ssh'), publicPort);
    const payload = Buffer.from(`installed from the tarball ${Date.now()}`);
    assert.equal((await echoRoundTrip(publicPort, payload)).toString(), payload.toString());
    // The dashboard's files are found inside the installed package.
    const admin = (await server.waitForLine(/admin listening on (http:\/\/\S+)/))[1]!;
    const page = await fetch(`${admin}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);

    // A client that pins another certificate is refused and says so (exit 3), from the installed binary too.
    const wrongPin = processes.add(
      new CliProcess(installedGroupclient, ['--config', 'packed.yaml', '--server-fingerprint', `sha256:${'0'.repeat(64)}`], env, [], {
        program: true,
        cwd: hostDir,
      }),
    );
    assert.equal((await wrongPin.exited).code, 3);
    assert.match(wrongPin.output, /fingerprint .* is pinned; refusing to talk/);

    await runQuickStart({ commonserver: installedCommonserver, groupclient: installedGroupclient }, mkdtempSync(join(work, 'quick-start-')), processes);
  },
);

/**
 * The fenced block under the README's "Quick start" heading, each line run as written in a fresh
 * directory with the installed binaries: a subcommand (`init`) to its end, the server and the
 * client (a line whose first argument is an option) as long-running processes, each awaited
 * until it says it serves. One addition: `init` gets a free common port, since another program
 * of a shared machine may hold its default 7000.
 */
async function runQuickStart(installed: Record<string, string>, dir: string, processes: ProcessSet): Promise<void> {
  const block = fencedBlockUnder(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'), 'Quick start');
  assert.ok(block !== undefined, 'README.md has a fenced block under "## Quick start"');
  const commands = block
    .split('\n')
    .map((line) => line.replace(/(^|\s)#.*$/, '').trim())
    .filter((line) => line !== '');
  assert.deepEqual(
    commands.map((command) => command.split(/\s+/)[0]),
    ['commonserver', 'commonserver', 'groupclient'],
    'the quick start: init, the server, the client',
  );
  const commonPort = await unusedPort();
  for (const command of commands) {
    const [program = '', ...args] = command.split(/\s+/);
    const binary = installed[program];
    assert.ok(binary !== undefined, `the quick start runs only the installed binaries: ${command}`);
    if (args[0] === 'init') {
      run(binary, [...args, '--bind', `127.0.0.1:${commonPort}`], dir);
      continue;
    }
    if (args[0]?.startsWith('-') !== true) {
      run(binary, args, dir);
      continue;
    }
    const started = processes.add(new CliProcess(binary, args, env, [], { program: true, cwd: dir }));
    if (program === 'commonserver') {
      assert.equal((await serverLinkOf(started)).port, commonPort);
      continue;
    }
    const group = args[args.indexOf('--group') + 1];
    assert.ok(args.includes('--group') && group !== undefined, `the quick start's client names its group: ${command}`);
    await waitForGroupActive(started, group, { timeoutMs: 20_000 });
  }
}
