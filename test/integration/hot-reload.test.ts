import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { after, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { skip } from 'rxjs';
import { DirectoryRegistry, GroupsHotReload } from '../../src/server/index.js';
import type { ServerEvent } from '../../src/server/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { groupYaml, hostIdentity, makeConfigDir, randomSecret, type TestGroup } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { connectTo, echoRoundTrip, waitForEvent } from '../helpers/net.js';

/** A user conn kept busy with echo round trips until `stop()`; `progress(n)` waits for n more bytes. */
function keepFlowing(socket: Socket) {
  let sent = 0;
  let received = 0;
  let closed: string | undefined;
  const sentHash = createHash('sha256');
  const receivedHash = createHash('sha256');
  const waiters = new Set<() => void>();
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    receivedHash.update(chunk);
    for (const wake of waiters) wake();
  });
  // With half-close allowed, a server-side drop shows as 'end' first.
  const onGone = (): void => {
    closed ??= `closed after ${received} bytes`;
    for (const wake of waiters) wake();
  };
  socket.once('end', onGone);
  socket.once('close', onGone);
  socket.on('error', onGone); // a drop may come as a reset
  const until = (condition: () => boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      const wake = (): void => {
        if (condition()) {
          waiters.delete(wake);
          resolve();
        } else if (closed !== undefined) {
          waiters.delete(wake);
          reject(new Error(`the flowing conn was interrupted: ${closed}`));
        }
      };
      waiters.add(wake);
      wake();
    });
  let stopping = false;
  const loop = (async () => {
    for (let round = 0; round < 20_000 && !stopping; round++) {
      const chunk = randomBytes(2048);
      sentHash.update(chunk);
      sent += chunk.length;
      socket.write(chunk);
      await until(() => received >= sent);
      await delay(2); // pacing only: keeps the loop from hogging a shared CPU
    }
  })().catch(() => {}); // an interruption is reported by stop() as `closed`
  return {
    progress: (bytes: number) => {
      const target = received + bytes;
      return until(() => received >= target);
    },
    async stop() {
      stopping = true;
      await loop;
      return { sent, received, intact: sentHash.digest('hex') === receivedHash.digest('hex'), closed };
    },
  };
}

test(
  "hot reload: apps added, changed and removed in the server's registry and followed by a host of identity only, other groups added and removed, while traffic on another app of the group flows",
  { timeout: 60_000 },
  async () => {
    const streamApp = await startEchoApp();
    const firstTarget = await startEchoApp();
    const secondTarget = await startEchoApp();
    const group = (apps: TestGroup['apps'], secret: string): TestGroup => ({ name: 'hot', secret, apps });
    const secret = randomSecret();
    const config = makeConfigDir([group([{ name: 'stream', localPort: streamApp.port }], secret)]);
    const started = await startServer(config);
    const { server, events } = started;
    const registry = new DirectoryRegistry({ server, groupsDir: config.groupsDir });
    const reload = new GroupsHotReload(registry, config.groupsDir, { debounceMs: 50 });
    const file = config.groupFile('hot');
    // The host's file names the group only: its apps are the registry's, followed live.
    const { client, events: clientEvents } = startClient(hostIdentity('hot', secret), started);
    after(async () => {
      reload.close();
      client.stop();
      await server.close();
      for (const app of [streamApp, firstTarget, secondTarget]) await app.close();
    });
    const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
    assert.equal(activated.type, 'group-activated');
    const streamPort = activated.apps[0]!.remotePort;
    const sessionId = server.inUseGroup.get('hot')!.sessionId;
    const user = await connectTo(streamPort);
    const flow = keepFlowing(user);
    await flow.progress(10_000);
    let streamClosed = false;
    events.subscribe((e: ServerEvent) => {
      if (e.type === 'conn-closed' && e.app === 'stream') streamClosed = true;
    });
    // Edits of the server's copy as an editor makes them (plain writes); the host's file is not touched.
    // `events` replays from the start: each step only looks at what happened after it began.
    const log: ServerEvent[] = [];
    events.subscribe((e) => log.push(e));
    type Of<T extends ServerEvent['type']> = Extract<ServerEvent, { type: T }>;
    /** Marks now; the returned waiter finds an event of `type` after the mark. */
    const step = () => {
      const from = log.length;
      return <T extends ServerEvent['type']>(type: T, match: (e: Of<T>) => boolean = () => true): Promise<Of<T>> =>
        waitForEvent<ServerEvent>(events.pipe(skip(from)), (e) => e.type === type && match(e as Of<T>), type) as Promise<Of<T>>;
    };
    const edit = (group: TestGroup): void => writeFileSync(file, groupYaml(group));

    // 1. Add an app.
    let wait = step();
    edit(
      group(
        [
          { name: 'stream', localPort: streamApp.port },
          { name: 'extra', localPort: firstTarget.port },
        ],
        secret,
      ),
    );
    const opened = await wait('app-opened', (e) => e.app === 'extra');
    assert.equal(opened.type, 'app-opened');
    const extraPort = opened.port;
    // The client is told the new app's public port at once, not at its next login.
    const told = await waitForEvent(clientEvents, (e) => e.type === 'apps-changed' && e.opened.some((app) => app.name === 'extra'), 'AppsChanged for extra');
    assert.ok(told.type === 'apps-changed');
    assert.deepEqual(told.opened, [{ name: 'extra', remotePort: extraPort, state: 'listening' }]);
    assert.deepEqual(told.closed, []);
    assert.equal((await echoRoundTrip(extraPort, Buffer.from('one'))).toString(), 'one');
    assert.equal(firstTarget.accepted, 1);
    await flow.progress(10_000);

    // 2. Change it: a new local target, the same secret. The session stays.
    const newSecret = randomSecret();
    wait = step();
    edit(
      group(
        [
          { name: 'stream', localPort: streamApp.port },
          { name: 'extra', localPort: secondTarget.port },
        ],
        secret,
      ),
    );
    await wait('group-updated', (e) => e.group === 'hot');
    const target = `127.0.0.1:${secondTarget.port}`;
    await waitForEvent(
      clientEvents,
      (e) => e.type === 'apps-received' && e.apps.some((app) => app.name === 'extra' && app.target === target),
      'the new target on the host',
    );
    assert.equal((await echoRoundTrip(extraPort, Buffer.from('two'))).toString(), 'two');
    assert.equal(secondTarget.accepted, 1, 'the new local target is dialed');
    await flow.progress(10_000);

    // 3. An invalid edit is reported and ignored: the last good version stays.
    wait = step();
    writeFileSync(file, 'name: hot\napps: [oops\n');
    const failed = await wait('group-registration-failed');
    assert.equal(failed.type, 'group-registration-failed');
    assert.match(failed.reason, /hot\.yaml:\d+/);
    assert.equal(server.readyGroup.get('hot')!.apps.length, 2);
    assert.equal((await echoRoundTrip(extraPort, Buffer.from('three'))).toString(), 'three');
    await flow.progress(10_000);

    // 4. Remove the app: its port closes.
    wait = step();
    edit(group([{ name: 'stream', localPort: streamApp.port }], secret));
    const closed = await wait('app-closed', (e) => e.app === 'extra');
    assert.equal(closed.type, 'app-closed');
    await waitForEvent(clientEvents, (e) => e.type === 'apps-changed' && e.closed.includes('extra'), 'AppsChanged closing extra');
    await assert.rejects(connectTo(extraPort), /ECONNREFUSED/);
    await flow.progress(10_000);

    // 5. Another group's file comes and goes.
    wait = step();
    writeFileSync(config.groupFile('other'), groupYaml({ name: 'other', secret: randomSecret(), apps: [{ name: 'x', localPort: 1 }] }));
    await wait('group-registered', (e) => e.group === 'other');
    wait = step();
    rmSync(config.groupFile('other'));
    await wait('group-deregistered', (e) => e.group === 'other');
    await flow.progress(10_000);

    const result = await flow.stop();
    assert.equal(result.closed, undefined, 'the stream conn stayed open');
    assert.equal(streamClosed, false, 'no conn-closed for the stream app');
    assert.equal(result.received, result.sent);
    assert.ok(result.intact, 'every byte came back in order');
    assert.equal(server.inUseGroup.get('hot')?.sessionId, sessionId, 'the same session throughout');

    // 6. A new secret ends the session at once; the client, with its file reloaded (the secret is the host's identity), logs in with it.
    wait = step();
    edit(group([{ name: 'stream', localPort: streamApp.port }], newSecret));
    client.updateSpec(hostIdentity('hot', newSecret));
    const revoked = await wait('group-deactivated', (e) => e.group === 'hot');
    assert.equal(revoked.type === 'group-deactivated' && revoked.code, 'SECRET_CHANGED');
    assert.equal(server.readyGroup.get('hot')!.secret.reveal(), newSecret);
    const relogin = await wait('group-activated', (e) => e.group === 'hot');
    assert.equal(relogin.type, 'group-activated');
    assert.notEqual(server.inUseGroup.get('hot')?.sessionId, sessionId);
    assert.equal(
      log.some((e) => e.type === 'login-rejected'),
      false,
    );
    // The first user's relay belonged to the ended session (it was reset); the next user is the new session's.
    user.destroy();
    const nextUser = await connectTo(relogin.apps[0]!.remotePort);
    const nextFlow = keepFlowing(nextUser);
    await nextFlow.progress(4096);

    // 7. Removing the group's own file deregisters it and disconnects its client and users.
    // The user's socket allows half-close: the server's FIN shows as 'end'.
    const userDropped = new Promise((resolve) => {
      nextUser.once('end', resolve);
      nextUser.once('close', resolve);
    });
    wait = step();
    rmSync(file);
    const gone = await wait('group-deactivated', (e) => e.group === 'hot');
    assert.equal(gone.type === 'group-deactivated' && gone.code, 'DEREGISTERED');
    await userDropped;
    await nextFlow.stop();
    nextUser.destroy();
    assert.equal(server.readyGroup.has('hot'), false);
  },
);

test('SIGHUP reloads the groups directory of a commonserver started with --no-watch', { timeout: 30_000 }, async () => {
  const { CliProcess, COMMONSERVER_BIN } = await import('../helpers/processes.js');
  const config = makeConfigDir([{ name: 'first', secret: randomSecret(), apps: [{ name: 'x', localPort: 1 }] }]);
  const serverProcess = new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile, '--no-watch']);
  after(() => serverProcess.stop());
  await serverProcess.waitForLine(/commonserver listening on/);
  const from = serverProcess.lines.length;
  config.writeGroup({ name: 'second', secret: randomSecret(), apps: [{ name: 'y', localPort: 2 }] });
  serverProcess.kill('SIGHUP');
  await serverProcess.waitForLine(/group second registered \(1 app\)/, { fromLine: from });
  config.writeGroup({ name: 'third', secret: 'short', apps: [{ name: 'z', localPort: 3 }] });
  serverProcess.kill('SIGHUP');
  await serverProcess.waitForLine(/group file skipped: .*third\.yaml:\d+: secret: too short/, { fromLine: from });
});

test(
  "a groupclient reloads its own group file: apps that differ from the server's are warnings naming them, the server's list stays served; an invalid version is reported and ignored",
  { timeout: 30_000 },
  async () => {
    const { startCommonServerProcess, startGroupClientProcess, waitForGroupActive } = await import('../helpers/processes.js');
    const echo = await startEchoApp();
    const elsewhere = await startEchoApp();
    const secret = randomSecret();
    const config = makeConfigDir([{ name: 'agent', secret, apps: [{ name: 'a', localPort: echo.port }] }]);
    const started = await startCommonServerProcess(config.serverFile);
    const serverProcess = started.process;
    // The host's own copy, a full group file as before the registry sent apps: still valid.
    const hostDir = mkdtempSync(join(tmpdir(), 'ntp-host-'));
    const hostFile = join(hostDir, 'agent.yaml');
    const writeHost = (text: string): void => writeFileSync(hostFile, text, { mode: 0o600 });
    writeHost(groupYaml({ name: 'agent', secret, apps: [{ name: 'a', localPort: echo.port }] }));
    const clientProcess = startGroupClientProcess({ groupsDir: hostDir, group: 'agent', server: started });
    after(async () => {
      await clientProcess.stop();
      await serverProcess.stop();
      await echo.close();
      await elsewhere.close();
    });
    const ports = await waitForGroupActive(clientProcess, 'agent');
    const from = clientProcess.lines.length;
    writeHost(
      groupYaml({
        name: 'agent',
        secret,
        apps: [
          { name: 'a', localPort: elsewhere.port },
          { name: 'b', localPort: echo.port },
        ],
      }),
    );
    await clientProcess.waitForLine(/group file reloaded: a, b/, { fromLine: from });
    await clientProcess.waitForLine(
      new RegExp(
        `warning: app "a": this host's file says local 127\\.0\\.0\\.1:${elsewhere.port} where the server says 127\\.0\\.0\\.1:${echo.port}; the server's applies`,
      ),
      { fromLine: from },
    );
    await clientProcess.waitForLine(/warning: app "b" is in this host's file but not in the server's registry: not served/, { fromLine: from });
    assert.equal(
      clientProcess.lines.slice(from).some((line) => /served from now on/.test(line)),
      false,
      'no app is said to be served that the server does not have',
    );
    assert.equal((await echoRoundTrip(ports.get('a')!, Buffer.from('still the server target'))).toString(), 'still the server target');
    assert.equal(elsewhere.accepted, 0, "the host file's target is not dialed");
    writeHost('name: agent\nsecret: short\n');
    await clientProcess.waitForLine(/group file not reloaded, the previous version stays: .*agent\.yaml:\d+: secret: too short/, { fromLine: from });
    assert.equal(
      clientProcess.lines.some((line) => /group agent lost/.test(line)),
      false,
      'the session went on',
    );
  },
);
