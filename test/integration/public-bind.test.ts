import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, test } from 'node:test';
import { ConfigError, loadGroupFile, loadServerConfig } from '../../src/config/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';

/** Resolves with the echo of `text` from host:port, or rejects with the connection's error code. */
function echoAt(host: string, port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let answer = '';
    socket.on('error', (error: NodeJS.ErrnoException) => reject(new Error(error.code ?? error.message)));
    socket.on('connect', () => socket.write(text));
    socket.on('data', (chunk) => {
      answer += chunk.toString();
      if (answer.length >= text.length) {
        socket.end();
        resolve(answer);
      }
    });
  });
}

test("publicBind: public app ports bind to their own address, not the common port's", { timeout: 20_000 }, async () => {
  const echo = await startEchoApp();
  // The common port on 127.0.0.1, the public ports on another loopback address.
  const config = makeConfigDir([{ name: 'office', secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] }], {
    extra: { publicBind: '127.0.0.2' },
  });
  assert.equal(loadServerConfig(config.serverFile).publicBind, '127.0.0.2');
  const started = await startServer(config);
  const { client } = startClient(loadGroupFile(config.groupFile('office')), started);
  after(async () => {
    client.stop();
    await started.server.close();
    await echo.close();
  });
  const activated = await waitForEvent(started.events, (e) => e.type === 'group-activated', 'activation');
  assert.equal(activated.type, 'group-activated');
  const port = activated.apps[0]!.remotePort;
  assert.equal(await echoAt('127.0.0.2', port, 'on its own address'), 'on its own address');
  await assert.rejects(echoAt('127.0.0.1', port, 'x'), /ECONNREFUSED/);
  assert.equal(started.server.address().address, '127.0.0.1');
});

test('publicBind must be an IP address: anything else is refused naming the field', () => {
  const config = makeConfigDir([], { extra: { publicBind: 'my-host:80' } });
  assert.throws(
    () => loadServerConfig(config.serverFile),
    (error: unknown) => error instanceof ConfigError && error.field === 'publicBind' && /expected an IP address/.test(error.message),
  );
});
