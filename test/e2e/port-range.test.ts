import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { startBannerApp, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { eventually } from '../helpers/eventually.js';
import { canListenOn, connectTo, readBytes, withDeadline } from '../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive, type CliProcess } from '../helpers/processes.js';
import { skipWithout } from '../helpers/programs.js';

/**
 * `remotePort: A-B` with `local: 127.0.0.1:C-D` through the real commonserver and groupclient
 * over the default link (TLS, pinned fingerprint, mux), used by a real client (nc from Debian's
 * netcat-openbsd): each of the 11 public ports reaches its own local app, a
 * "server speaks first" app that names itself and then echoes. A reload that grows the range
 * opens only the port it gained.
 */
const NC = '/usr/bin/nc';
const GROUP = 'ranged';
const SIZE = 11;
/** Ports found free for the range: one more than it has at first, for it to grow into. */
const RUN = SIZE + 1;

const processes = new ProcessSet();
const apps: TestApp[] = [];
let config: TestConfigDir;
let publicBase = 0;
let localBase = 0;
let server: CliProcess;
let client: CliProcess;
const secret = randomSecret();

/** The group file with a range of `size` ports. */
function writeRange(size: number): void {
  config.writeGroup({
    name: GROUP,
    secret,
    apps: [
      { name: 'game', localPort: 0, extra: { local: `127.0.0.1:${localBase}-${localBase + size - 1}`, remotePort: `${publicBase}-${publicBase + size - 1}` } },
    ],
  });
}

/** A run of RUN ports from a random base that can all be bound now (`hold`: bound by local apps, kept). */
async function portRun(hold: boolean): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const held: TestApp[] = [];
    let free = true;
    for (let i = 0; i < RUN && free; i++) {
      if (!hold) free = await canListenOn(base + i);
      else
        free = await startBannerApp(`local app ${i}\n`, base + i).then(
          (app) => held.push(app) > 0,
          () => false,
        );
    }
    if (free) {
      apps.push(...held);
      return base;
    }
    await Promise.all(held.map((app) => app.close()));
  }
  throw new Error(`no run of ${RUN} free ports`);
}

/** What nc prints for a conn to `port` that sends `line` and then its FIN (-N). */
function nc(port: number, line: string): Promise<string> {
  const child = spawn(NC, ['-N', '-w', '5', '127.0.0.1', String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  child.stdin.end(line);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`nc to ${port} exited ${code}: ${err}`))));
  });
}

describe('a port range through nc', { skip: skipWithout(NC, 'netcat-openbsd') }, () => {
  before(async () => {
    localBase = await portRun(true);
    publicBase = await portRun(false);
    config = makeConfigDir([]);
    writeRange(SIZE);
    const started = await startCommonServerProcess(config.serverFile);
    server = processes.add(started.process);
    assert.ok(started.fingerprint, 'the default link is TLS with a pinned fingerprint');
    client = processes.add(startGroupClientProcess({ group: GROUP, groupsDir: config.groupsDir, server: started }));
  });

  after(async () => {
    await processes.stopAll();
    await Promise.all(apps.map((app) => app.close()));
  });

  test('each of the 11 public ports reaches its own local app, both ways', { timeout: 60_000 }, async () => {
    const table = await waitForGroupActive(client, GROUP);
    assert.deepEqual(
      [...table].sort(([a], [b]) => a.localeCompare(b)),
      Array.from({ length: SIZE }, (_, i) => [`game-${publicBase + i}`, publicBase + i]),
    );
    const answers = await withDeadline(
      Promise.all(Array.from({ length: SIZE }, (_, i) => nc(publicBase + i, `hello ${publicBase + i}\n`))),
      30_000,
      'nc through every port',
    );
    assert.deepEqual(
      answers,
      Array.from({ length: SIZE }, (_, i) => `local app ${i}\nhello ${publicBase + i}\n`),
    );
    assert.deepEqual(
      apps.slice(0, SIZE).map((app) => app.accepted),
      Array<number>(SIZE).fill(1),
    );
  });

  test('the range grows by one on reload: only the new port opens, a user on an old one keeps its conn', { timeout: 60_000 }, async () => {
    const user = await connectTo(publicBase);
    try {
      assert.equal((await readBytes(user, 'local app 0\n'.length)).toString(), 'local app 0\n');
      const serverFrom = server.lines.length;
      const clientFrom = client.lines.length;
      writeRange(SIZE + 1);
      const added = `game-${publicBase + SIZE}`;
      const updated = await server.waitForLine(/group ranged updated \(\d+ apps\).*/, { fromLine: serverFrom });
      assert.equal(updated[0], `group ranged updated (${SIZE + 1} apps): apps.${added} opens now`);
      await client.waitForLine(new RegExp(`apps of group ranged from the server: .*${added} → `), { fromLine: clientFrom });
      const answer = await eventually(() => nc(publicBase + SIZE, 'grown\n').catch(() => false as const), {
        message: `an answer on the new port ${publicBase + SIZE}`,
        timeout: 15_000,
        interval: 200,
      });
      assert.equal(answer, `local app ${SIZE}\ngrown\n`);
      user.write('still here\n');
      assert.equal((await readBytes(user, 'still here\n'.length)).toString(), 'still here\n');
    } finally {
      user.destroy();
    }
  });
});
