import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { skip, type Observable } from 'rxjs';
import { stringify } from 'yaml';
import { GroupsHotReload } from '../../src/server/index.js';
import { clientEntry } from '../../src/cli/client-lines.js';
import type { ClientEvent } from '../../src/client/index.js';
import { loadGroupFile } from '../../src/config/index.js';
import type { ServerEvent } from '../../src/server/index.js';
import { startAdmin } from '../helpers/admin.js';
import { startEchoApp, unusedPort, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { startClient, startServer, type StartedServer } from '../helpers/in-process.js';
import { canListenOn, closedWithin, connectTo, echoRoundTrip, readBytes, waitForEvent } from '../helpers/net.js';

type Of<T extends ServerEvent['type']> = Extract<ServerEvent, { type: T }>;

/** Waits for the next event of `type` that happens after this call (the subject replays). */
function next<E extends { type: string }>(events: Observable<E>) {
  let seen = 0;
  events.subscribe(() => seen++).unsubscribe();
  const from = seen;
  return <T extends E['type']>(type: T, match: (e: Extract<E, { type: T }>) => boolean = () => true, timeoutMs = 10_000): Promise<Extract<E, { type: T }>> =>
    waitForEvent<E>(events.pipe(skip(from)), (e) => e.type === type && match(e as Extract<E, { type: T }>), type, timeoutMs) as Promise<
      Extract<E, { type: T }>
    >;
}

interface AppEntry {
  name: string;
  local: number;
  remotePort?: number;
  allow?: string[];
  maxConnections?: number;
}

/** A group file with every app field we may set, as an editor would write it. */
function writeGroupFile(config: TestConfigDir, name: string, secret: { secret: string } | { secretFile: string }, apps: AppEntry[]): string {
  const file = config.groupFile(name);
  writeFileSync(
    file,
    stringify({
      name,
      ...secret,
      apps: apps.map(({ name: app, local, remotePort = 0, ...access }) => ({ name: app, local: `127.0.0.1:${local}`, remotePort, ...access })),
    }),
  );
  return file;
}

/** A TLS server on the config dir, watching its groups directory, with an admin API. */
async function startWatched(config: TestConfigDir, overrides: Parameters<typeof startServer>[1] = {}) {
  const started = await startServer(config, overrides);
  assert.ok(started.fingerprint, 'TLS is on');
  const admin = await startAdmin(started.server, config);
  const reload = new GroupsHotReload(admin.admin.registry, config.groupsDir, { debounceMs: 50 });
  after(async () => {
    reload.close();
    await admin.admin.close();
    await started.server.close();
  });
  return { ...started, admin, reload };
}

function tlsClient(started: StartedServer, file: string) {
  const client = startClient(loadGroupFile(file), started.port, { transport: { kind: 'tls', fingerprint: started.fingerprint! } });
  after(() => client.client.stop());
  return client;
}

async function blockPort(): Promise<{ port: number; blocker: Server }> {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve));
  const { port } = blocker.address() as { port: number };
  return { port, blocker };
}

const closeServer = (server: Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()));

async function echoApp(): Promise<TestApp> {
  const app = await startEchoApp();
  after(() => app.close());
  return app;
}

test('a reload applies allow and maxConnections to the next user (file edit and admin PUT); live conns keep flowing', { timeout: 60_000 }, async () => {
  const echo = await echoApp();
  const secret = randomSecret();
  const config = makeConfigDir([], { tls: true });
  const file = writeGroupFile(config, 'guarded', { secret }, [{ name: 'echo', local: echo.port }]);
  const started = await startWatched(config);
  const { events, admin } = started;
  let wait = next(events);
  tlsClient(started, file);
  const activated = await wait('group-activated', (e) => e.group === 'guarded');
  const port = activated.apps[0]!.remotePort;
  const first = await connectTo(port);
  // Still relayed when the server stops at the end of the test: it is reset then.
  first.on('error', () => {});
  after(() => first.destroy());
  first.write('a');
  assert.equal((await readBytes(first, 1)).toString(), 'a');

  // maxConnections: 1, with one user already connected: the next one is refused.
  wait = next(events);
  writeGroupFile(config, 'guarded', { secret }, [{ name: 'echo', local: echo.port, maxConnections: 1 }]);
  const updated = await wait('group-updated', (e) => e.group === 'guarded');
  assert.deepEqual(updated.changes, ['apps.echo.maxConnections applies to the next user']);
  wait = next(events);
  const second = await connectTo(port);
  const refused = await wait('user-conn-refused');
  assert.match(refused.reason, /maximum of 1 connection/);
  await closedWithin(second);

  // allow: a list without loopback: the next user is refused, the first keeps its relay.
  wait = next(events);
  writeGroupFile(config, 'guarded', { secret }, [{ name: 'echo', local: echo.port, allow: ['10.0.0.0/8'] }]);
  await wait('group-updated', (e) => e.group === 'guarded' && e.changes!.includes('apps.echo.allow applies to the next user'));
  wait = next(events);
  const third = await connectTo(port);
  assert.match((await wait('user-conn-refused')).reason, /127\.0\.0\.1 is not in the app's allow list/);
  await closedWithin(third);
  first.write('b');
  assert.equal((await readBytes(first, 1)).toString(), 'b', 'the user accepted before keeps flowing');

  // The admin API's PUT applies it the same way (it used to answer 200 and change nothing live).
  wait = next(events);
  const put = await admin.request('PUT', '/api/groups/guarded', {
    name: 'guarded',
    secret,
    apps: [{ name: 'echo', local: `127.0.0.1:${echo.port}`, remotePort: 0, allow: ['127.0.0.1/32'] }],
  });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  await wait('group-updated', (e) => e.group === 'guarded');
  assert.equal((await echoRoundTrip(port, Buffer.from('allowed again'))).toString(), 'allowed again');
  wait = next(events);
  const put2 = await admin.request('PUT', '/api/groups/guarded', {
    name: 'guarded',
    secret,
    apps: [{ name: 'echo', local: `127.0.0.1:${echo.port}`, remotePort: 0, allow: ['192.0.2.1'] }],
  });
  assert.equal(put2.status, 200);
  await wait('group-updated', (e) => e.group === 'guarded');
  wait = next(events);
  const fourth = await connectTo(port);
  assert.match((await wait('user-conn-refused')).reason, /not in the app's allow list/);
  await closedWithin(fourth);
});

test("a group claiming another's public port is refused, and the holder's later edits still apply", { timeout: 60_000 }, async () => {
  const echo = await echoApp();
  const held = await unusedPort();
  const config = makeConfigDir([], { tls: true });
  // "zeta" holds the port; "alpha" sorts first, which is what used to freeze zeta's file.
  const zetaSecret = randomSecret();
  const zetaFile = writeGroupFile(config, 'zeta', { secret: zetaSecret }, [{ name: 'web', local: echo.port, remotePort: held }]);
  const alphaSecret = randomSecret();
  writeGroupFile(config, 'alpha', { secret: alphaSecret }, [{ name: 'web', local: echo.port }]);
  const started = await startWatched(config);
  const { events } = started;
  let wait = next(events);
  const { client: zeta } = tlsClient(started, zetaFile);
  await wait('group-activated', (e) => e.group === 'zeta');

  wait = next(events);
  writeGroupFile(config, 'alpha', { secret: alphaSecret }, [{ name: 'web', local: echo.port, remotePort: held }]);
  const refused = await wait('group-registration-failed');
  assert.ok(refused.reason.includes(config.groupFile('alpha')), refused.reason);
  assert.match(refused.reason, new RegExp(`port ${held} is already claimed by zeta/web`));
  assert.equal(started.server.readyGroup.get('alpha')!.apps[0]!.remotePort, 0, 'alpha keeps its last good version');

  // zeta's next edits apply while alpha's file still claims the port.
  wait = next(events);
  writeGroupFile(config, 'zeta', { secret: zetaSecret }, [
    { name: 'web', local: echo.port, remotePort: held },
    { name: 'more', local: echo.port },
  ]);
  const opened = await wait('app-opened', (e) => e.group === 'zeta' && e.app === 'more');
  zeta.updateSpec(loadGroupFile(zetaFile)); // the client serves the new app from its own file
  assert.equal((await echoRoundTrip(opened.port, Buffer.from('more'))).toString(), 'more');
  wait = next(events);
  writeGroupFile(config, 'zeta', { secret: zetaSecret }, [{ name: 'web', local: echo.port, remotePort: held, maxConnections: 3 }]);
  await wait('group-updated', (e) => e.group === 'zeta' && e.changes!.includes('apps.web.maxConnections applies to the next user'));
  assert.equal((await echoRoundTrip(held, Buffer.from('still zeta'))).toString(), 'still zeta');
});

test('a busy public port is retried with backoff; once bound the server says so and the client is told the port', { timeout: 60_000 }, async () => {
  const echo = await echoApp();
  const { port: busy, blocker } = await blockPort();
  after(() => closeServer(blocker));
  const config = makeConfigDir([], { tls: true });
  const file = writeGroupFile(config, 'retry', { secret: randomSecret() }, [{ name: 'web', local: echo.port, remotePort: busy }]);
  const started = await startWatched(config, { bindRetry: { firstMs: 100, maxMs: 400 } });
  const { events } = started;
  const wait = next(events);
  const { events: clientEvents } = tlsClient(started, file);
  const failed = await wait('app-failed', (e) => e.app === 'web');
  assert.match(failed.reason, new RegExp(`port ${busy} is already in use; retrying`));
  const accepted = await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'login');
  assert.ok(accepted.type === 'login-accepted');
  assert.equal(accepted.apps[0]!.state, 'failed');

  const toldClient = next(clientEvents as Observable<ClientEvent>);
  const reopened = next(events);
  await closeServer(blocker);
  const opened = await reopened('app-opened', (e) => e.app === 'web');
  assert.equal(opened.port, busy);
  const told = await toldClient('apps-changed');
  assert.deepEqual(told.opened, [{ name: 'web', remotePort: busy, state: 'listening' }]);
  assert.match(clientEntry('retry', told)?.text ?? '', new RegExp(`opened web → server port ${busy}`));
  assert.equal((await echoRoundTrip(busy, Buffer.from('bound at last'))).toString(), 'bound at last');
});

test('retrying stops when the app is removed or its group deactivates', { timeout: 60_000 }, async () => {
  const echo = await echoApp();
  const removed = await blockPort();
  const deactivated = await blockPort();
  const config = makeConfigDir([], { tls: true });
  const keepSecret = randomSecret();
  const editedFile = writeGroupFile(config, 'edited', { secret: keepSecret }, [
    { name: 'keep', local: echo.port },
    { name: 'gone', local: echo.port, remotePort: removed.port },
  ]);
  const leavingFile = writeGroupFile(config, 'leaving', { secret: randomSecret() }, [{ name: 'only', local: echo.port, remotePort: deactivated.port }]);
  const started = await startWatched(config, { bindRetry: { firstMs: 100, maxMs: 200 } });
  const { events } = started;
  let wait = next(events);
  tlsClient(started, editedFile);
  const leaving = tlsClient(started, leavingFile);
  await wait('app-failed', (e) => e.app === 'gone');
  await wait('app-failed', (e) => e.app === 'only');

  wait = next(events);
  writeGroupFile(config, 'edited', { secret: keepSecret }, [{ name: 'keep', local: echo.port }]);
  await wait('group-updated', (e) => e.group === 'edited');
  leaving.client.stop();
  await wait('group-deactivated', (e) => e.group === 'leaving');

  const log: ServerEvent[] = [];
  events.subscribe((e) => log.push(e));
  const from = log.length;
  await closeServer(removed.blocker);
  await closeServer(deactivated.blocker);
  // A negative check needs some time: ten of the first retry delays, five of the longest.
  await delay(1000);
  const reopened = log.slice(from).filter((e): e is Of<'app-opened'> => e.type === 'app-opened');
  assert.deepEqual(
    reopened.map((e) => e.app),
    [],
  );
  assert.equal(await canListenOn(removed.port), true, 'the removed app did not take its port');
  assert.equal(await canListenOn(deactivated.port), true, 'the deactivated group did not take its port');
});

test('a group added while the server runs carries its secret in a secretFile; the file is re-read at reload', { timeout: 60_000 }, async () => {
  const echo = await echoApp();
  const config = makeConfigDir([], { tls: true });
  const started = await startWatched(config);
  const { events, reload } = started;
  mkdirSync(join(config.dir, 'secrets'));
  const secretPath = join(config.dir, 'secrets', 'late.secret');
  const firstSecret = randomSecret();
  writeFileSync(secretPath, `${firstSecret}\n`, { mode: 0o600 });

  let wait = next(events);
  const file = writeGroupFile(config, 'late', { secretFile: '../secrets/late.secret' }, [{ name: 'echo', local: echo.port }]);
  await wait('group-registered', (e) => e.group === 'late');
  assert.equal(started.server.readyGroup.get('late')!.secret.reveal(), firstSecret);
  wait = next(events);
  const { client, events: clientEvents } = tlsClient(started, file);
  const activated = await wait('group-activated', (e) => e.group === 'late');
  assert.equal((await echoRoundTrip(activated.apps[0]!.remotePort, Buffer.from('late'))).toString(), 'late');

  // Readable by its group: refused, the path named; the last good version stays.
  chmodSync(secretPath, 0o640);
  wait = next(events);
  reload.reload('test');
  const refused = await wait('group-registration-failed');
  assert.ok(refused.reason.includes(secretPath) && /mode 640/.test(refused.reason), refused.reason);
  assert.equal(started.server.readyGroup.get('late')!.secret.reveal(), firstSecret);

  // A new secret in the file: applied at the next login, on both ends.
  const secondSecret = randomSecret();
  writeFileSync(secretPath, secondSecret);
  chmodSync(secretPath, 0o600);
  // The host learns the new secret first; the server's reload then ends the session that
  // logged in with the old one at once, and the host logs in again with the new one.
  const clientWait = next(clientEvents as Observable<ClientEvent>);
  client.updateSpec(loadGroupFile(file));
  const reloaded = await clientWait('spec-reloaded');
  assert.deepEqual(reloaded.changes, ['secret applies at the next login']);
  wait = next(events);
  reload.reload('test');
  const updated = await wait('group-updated', (e) => e.group === 'late');
  assert.deepEqual(updated.changes, ['secret changed: the session that logged in with the old one ends now']);
  assert.equal(started.server.readyGroup.get('late')!.secret.reveal(), secondSecret);
  await wait('group-deactivated', (e) => e.group === 'late' && e.code === 'SECRET_CHANGED');
  await wait('group-activated', (e) => e.group === 'late');
});
