import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadGroupFile, type GroupSpec } from '../../src/config/index.js';
import { ServerTrustError } from '../../src/client/index.js';
import { PLAINTEXT, type ClientTransport } from '../../src/net/index.js';
import { createSelfSigned } from '../../src/server/index.js';
import { startApp, startBannerApp, startEchoApp, type TestApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { connectTo, echoRoundTrip, readAll, readBytes, sha256, waitForEvent } from '../helpers/net.js';
import { startCommonServerProcess, startGroupClientProcess } from '../helpers/processes.js';
import { connectFrom, endedByServer } from '../helpers/raw-peer.js';
import { eventually } from '../helpers/eventually.js';

const OTHER_FINGERPRINT = `sha256:${'ab'.repeat(32)}`;

/**
 * A TLS server (with the test process's self-signed certificate) with one group whose one app is
 * `app` (an echo app by default).
 */
async function tlsSetup(name: string, { tls = true, app }: { tls?: boolean | { clientCa: string }; app?: TestApp } = {}) {
  const local = app ?? (await startEchoApp());
  const config = makeConfigDir([{ name, secret: randomSecret(), apps: [{ name: 'app', localPort: local.port }] }], { tls });
  const started = await startServer(config);
  after(async () => {
    await started.server.close();
    await local.close();
  });
  return { ...started, config, spec: loadGroupFile(config.groupFile(name)) };
}

/** A client in this process that pins the server's fingerprint; stopped after the test. */
function pinnedClient(spec: GroupSpec, port: number, fingerprint: string) {
  const started = startClient(spec, port, { transport: { kind: 'tls', fingerprint } });
  after(() => started.client.stop());
  return started;
}

test('TLS: a pinned client logs in and relays; half-close works over TLS', { timeout: 20_000 }, async () => {
  const { server, events, port, fingerprint, spec } = await tlsSetup('tls-pinned');
  assert.match(fingerprint!, /^sha256:[0-9a-f]{64}$/);
  const { events: clientEvents } = pinnedClient(spec, port, fingerprint!);
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  await waitForEvent(clientEvents, (e) => e.type === 'login-accepted', 'login accepted');
  const echoPort = activated.apps[0]!.remotePort;
  // echoRoundTrip half-closes after sending: the app only answers its FIN once the echo is flushed,
  // so a complete answer proves the FIN crossed both TLS hops and the other direction kept flowing.
  const payload = randomBytes(1024 * 1024);
  const back = await echoRoundTrip(echoPort, payload);
  assert.equal(sha256(back), sha256(payload));
  // Nothing stays counted as 'still handshaking' once the control and work conns are in use.
  assert.equal(server.pendingHandshakes, 0);
});

test('TLS: a server-speaks-first app greets a silent user through TLS work conns', { timeout: 20_000 }, async () => {
  const { events, port, fingerprint, spec } = await tlsSetup('tls-banner', { app: await startBannerApp('SSH-2.0-OverTLS\r\n') });
  pinnedClient(spec, port, fingerprint!);
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  for (let i = 0; i < 3; i++) {
    const user = await connectTo(activated.apps[0]!.remotePort);
    assert.equal((await readBytes(user, 'SSH-2.0-OverTLS\r\n'.length)).toString(), 'SSH-2.0-OverTLS\r\n');
    user.destroy();
  }
});

test('TLS: backpressure holds end to end while the local app does not read', { timeout: 30_000 }, async () => {
  let appSocket: import('node:net').Socket | undefined;
  const received: Buffer[] = [];
  const sink = await startApp((socket) => {
    appSocket = socket;
    socket.pause(); // not reading: every buffer upstream must fill and stop the user
    socket.on('data', (chunk: Buffer) => received.push(chunk));
  });
  const { events, port, fingerprint, spec } = await tlsSetup('tls-bp', { app: sink });
  pinnedClient(spec, port, fingerprint!);
  const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  const user = await connectTo(activated.apps[0]!.remotePort);
  const chunk = randomBytes(64 * 1024);
  const CAP = 256 * 1024 * 1024;
  let written = 0;
  // Write as fast as the socket accepts; stop when no 'drain' comes for 1s (the chain is full).
  await new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      while (written < CAP) {
        written += chunk.length;
        if (!user.write(chunk)) {
          const stall = setTimeout(() => {
            user.off('drain', onDrain);
            resolve();
          }, 1000);
          const onDrain = (): void => {
            clearTimeout(stall);
            pump();
          };
          user.once('drain', onDrain);
          return;
        }
      }
      reject(new Error(`wrote ${written} bytes without the tunnel ever pushing back`));
    };
    pump();
  });
  assert.ok(written < CAP, `writes stalled after ${written} bytes`);
  console.log(`backpressure over TLS: the user was held after ${(written / 2 ** 20).toFixed(1)} MiB in flight`);
  // Now the app reads: everything written arrives intact, in order.
  const done = new Promise<void>((resolve) => appSocket!.once('end', resolve));
  appSocket!.resume();
  user.end();
  await done;
  const total = received.reduce((sum, part) => sum + part.length, 0);
  assert.equal(total, written);
  user.destroy();
});

test('TLS: a client pinning another fingerprint refuses to talk, and says why', { timeout: 15_000 }, async () => {
  const { events, port, spec } = await tlsSetup('tls-wrong-pin');
  const { done, events: clientEvents } = startClient(spec, port, { transport: { kind: 'tls', fingerprint: OTHER_FINGERPRINT } });
  const error = await done.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof ServerTrustError, `expected ServerTrustError, got ${String(error)}`);
  assert.equal(error.code, 'TLS_FINGERPRINT_MISMATCH');
  assert.match(error.message, /refusing to talk/);
  const stopped = await waitForEvent(clientEvents, (e) => e.type === 'stopped', 'stopped');
  assert.match(stopped.type === 'stopped' ? stopped.reason : '', /fingerprint/);
  // The client never got as far as Hello: no login was attempted.
  const seen = seenTypes(events);
  assert.ok(!seen.has('client-connected'), `server saw: ${[...seen].join(', ')}`);
});

test('TLS: an unpinned client without a CA for the self-signed cert fails hard; with serverCa it logs in', { timeout: 15_000 }, async () => {
  const { port, spec, config } = await tlsSetup('tls-ca');
  const untrusted = startClient(spec, port, { transport: { kind: 'tls' } });
  const error = await untrusted.done.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof ServerTrustError);
  assert.equal(error.code, 'TLS_UNTRUSTED');

  const ca = readFileSync(join(config.dir, 'tls', 'commonserver.crt'));
  const transport: ClientTransport = { kind: 'tls', ca };
  const trusted = startClient(spec, port, { transport, clientId: 'with-ca' });
  after(() => trusted.client.stop());
  await waitForEvent(trusted.events, (e) => e.type === 'login-accepted', 'login with serverCa');
});

test('TLS with serverCa still checks the name: an address the certificate does not carry is refused', { timeout: 15_000 }, async () => {
  const config = makeConfigDir([{ name: 'tls-name', secret: randomSecret(), apps: [{ name: 'app', localPort: 1 }] }], {
    tls: true,
    extra: { bind: '127.0.0.2:0' },
  });
  const { server, port } = await startServer(config);
  after(() => server.close());
  const ca = readFileSync(join(config.dir, 'tls', 'commonserver.crt'));
  const { done } = startClient(loadGroupFile(config.groupFile('tls-name')), port, { server: { host: '127.0.0.2', port }, transport: { kind: 'tls', ca } });
  const error = await done.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof ServerTrustError, String(error));
  assert.match(error.message, /ERR_TLS_CERT_ALTNAME_INVALID/);
});

test('a TLS client against a plaintext server is told the likely cause', { timeout: 15_000 }, async () => {
  const config = makeConfigDir([{ name: 'plain-server', secret: randomSecret(), apps: [{ name: 'app', localPort: 1 }] }], { tls: false });
  const { server, port } = await startServer(config);
  after(() => server.close());
  const { client, events } = startClient(loadGroupFile(config.groupFile('plain-server')), port, { transport: { kind: 'tls', fingerprint: OTHER_FINGERPRINT } });
  after(() => client.stop());
  const failed = await waitForEvent(events, (e) => e.type === 'connect-failed', 'the first failed attempt');
  assert.match(failed.type === 'connect-failed' ? failed.reason : '', /during the TLS handshake \(is the server in plaintext mode/);
});

test('mutual TLS: the server refuses a client without a certificate from its clientCa', { timeout: 15_000 }, async () => {
  const certs = makeConfigDir([]);
  const clientCert = join(certs.dir, 'client.crt');
  const clientKey = join(certs.dir, 'client.key');
  createSelfSigned(clientCert, clientKey); // a self-signed certificate is its own CA
  const { events, port, spec, fingerprint } = await tlsSetup('tls-mutual', { tls: { clientCa: clientCert } });

  const anonymous = startClient(spec, port, { transport: { kind: 'tls', fingerprint: fingerprint! }, clientId: 'anonymous' });
  await waitForEvent(events, (e) => e.type === 'bad-peer' && e.code === 'TLS_HANDSHAKE', 'TLS handshake refusal');
  anonymous.client.stop();

  const transport: ClientTransport = { kind: 'tls', fingerprint: fingerprint!, cert: readFileSync(clientCert), key: readFileSync(clientKey) };
  const holder = startClient(spec, port, { transport, clientId: 'holder' });
  after(() => holder.client.stop());
  await waitForEvent(holder.events, (e) => e.type === 'login-accepted', 'login with a client certificate');
});

test('CLI: commonserver creates its certificate and prints the fingerprint; pinned groupclient works, wrong pin exits 3', { timeout: 30_000 }, async () => {
  const echo = await startEchoApp();
  const config = makeConfigDir([{ name: 'cli-tls', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }], {
    tls: true,
    certificate: 'on-start',
  });
  const { process: server, port, fingerprint } = await startCommonServerProcess(config.serverFile);
  after(async () => {
    await server.stop();
    await echo.close();
  });
  await server.waitForLine(/TLS certificate created: /);
  assert.match(fingerprint ?? '', /^sha256:[0-9a-f]{64}$/);

  const wrong = startGroupClientProcess({ groupsDir: config.groupsDir, group: 'cli-tls', serverPort: port, link: { fingerprint: OTHER_FINGERPRINT } });
  after(() => wrong.stop());
  const exit = await wrong.exited;
  assert.equal(exit.code, 3);
  assert.match(wrong.output, /cannot verify the commonserver: .*fingerprint is sha256:[0-9a-f]{64}, but sha256:(ab){32} is pinned; refusing to talk/);

  const good = startGroupClientProcess({ groupsDir: config.groupsDir, group: 'cli-tls', serverPort: port, link: { fingerprint: fingerprint! } });
  after(() => good.stop());
  const active = await good.waitForLine(/group cli-tls active on \S+: echo → server port (\d+)/);
  const back = await echoRoundTrip(Number(active[1]), Buffer.from('over TLS'));
  assert.equal(back.toString(), 'over TLS');
});

test('CLI: plaintext mode only when asked, and it says so on start', { timeout: 15_000 }, async () => {
  const config = makeConfigDir([], { tls: false });
  const { process: server } = await startCommonServerProcess(config.serverFile);
  after(() => server.stop());
  await server.waitForLine(/warning: plaintext: true — the common port is NOT encrypted/);
});

test('a plaintext client cannot log in to a TLS server (no silent downgrade)', { timeout: 15_000 }, async () => {
  const { events, port, spec } = await tlsSetup('tls-no-downgrade');
  const plain = startClient(spec, port, { transport: PLAINTEXT });
  after(() => plain.client.stop());
  await waitForEvent(events, (e) => e.type === 'bad-peer' && e.code === 'TLS_HANDSHAKE', 'the TLS layer refusing plaintext');
  const failed = await waitForEvent(plain.events, (e) => e.type === 'connect-failed', 'the client saying why');
  assert.match(failed.type === 'connect-failed' ? failed.reason : '', /if the server uses TLS, drop --plaintext/);
  const user = await connectTo(port);
  user.end(Buffer.from([0, 0, 0, 5, 1, 2, 3, 4, 5]));
  await readAll(user); // the server closes it: a raw frame is not a TLS ClientHello
  assert.ok(![...seenTypes(events)].includes('group-activated'));
});

function seenTypes(events: import('rxjs').Observable<{ type: string }>): Set<string> {
  const seen = new Set<string>();
  events.subscribe((e) => seen.add(e.type)).unsubscribe();
  return seen;
}

test('TLS: a connection that never completes its TLS handshake is closed at the deadline, with a log line', { timeout: 15_000 }, async () => {
  const config = makeConfigDir([], { tls: true, handshakeTimeout: '500ms' });
  const { server, port, events } = await startServer(config);
  after(() => server.close());
  const silent = await connectFrom(port, '127.0.0.1');
  const remote = `127.0.0.1:${silent.localPort}`;
  await endedByServer(silent);
  const line = await waitForEvent(events, (e) => e.type === 'bad-peer' && e.remote === remote, 'the handshake timeout line');
  assert.equal(line.type === 'bad-peer' ? line.code : '', 'TLS_HANDSHAKE');
  await eventually(() => server.pendingHandshakes === 0, { message: 'its handshake slot to be freed' });
  silent.destroy();
});
