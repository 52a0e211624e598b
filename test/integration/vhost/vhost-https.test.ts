import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { loadGroupFile } from '../../../src/config/index.js';
import { makeConfigDir, randomSecret } from '../../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../../helpers/in-process.js';
import { waitForEvent } from '../../helpers/net.js';
import { curl, makeCertificate, writeVhostGroup } from '../../helpers/vhost.js';

/**
 * The HTTPS vhost: routed by the ClientHello's server name, TLS passed through untouched, so
 * the user verifies the private host's own certificate (curl --cacert), not the server's.
 */
describe('HTTPS virtual hosts (SNI, TLS not terminated)', () => {
  let started: StartedServer;
  let client: StartedClient;
  let app: Server;
  let port = 0;
  let certificate: { cert: string; key: string };

  before(async () => {
    certificate = makeCertificate('shop.test');
    app = createServer({ cert: readFileSync(certificate.cert), key: readFileSync(certificate.key) }, (req, res) => {
      res.end(`private shop answering ${req.url} over ${req.socket.constructor.name}`);
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const config = makeConfigDir([], { extra: { vhost: { https: '127.0.0.1:0', headersTimeout: '500ms' } } });
    writeVhostGroup(config, 'shop', randomSecret(), [{ name: 'shop', type: 'https', localPort: (app.address() as AddressInfo).port, domains: ['shop.test'] }]);
    writeVhostGroup(config, 'closed', randomSecret(), [{ name: 'shop', type: 'https', localPort: 1, domains: ['closed.test'] }]);
    started = await startServer(config);
    port = started.server.vhost!.port('https');
    client = startClient(loadGroupFile(config.groupFile('shop')), started);
    await waitForEvent(started.events, (event) => event.type === 'group-activated' && event.group === 'shop', 'shop activated');
  });

  after(async () => {
    await client.client.stop();
    await started.server.close();
    app.closeAllConnections();
    await new Promise<void>((resolve) => app.close(() => resolve()));
  });

  test('curl reaches the app by SNI and verifies the private host certificate', { timeout: 15_000 }, async () => {
    const { code, stdout, stderr } = await curl([
      '--cacert',
      certificate.cert,
      '--resolve',
      `shop.test:${port}:127.0.0.1`,
      `https://shop.test:${port}/cart`,
      `https://shop.test:${port}/pay`,
    ]);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.toString(), 'private shop answering /cart over TLSSocketprivate shop answering /pay over TLSSocket');
  });

  test('an unknown name, an offline name and a conn without TLS are closed, and the port keeps serving', { timeout: 15_000 }, async () => {
    const unknown = await curl(['--insecure', '--resolve', `nobody.test:${port}:127.0.0.1`, `https://nobody.test:${port}/`]);
    assert.notEqual(unknown.code, 0);
    assert.equal(unknown.stdout.length, 0);
    const offline = await curl(['--insecure', '--resolve', `closed.test:${port}:127.0.0.1`, `https://closed.test:${port}/`]);
    assert.notEqual(offline.code, 0);
    const plain = await curl([`http://127.0.0.1:${port}/`]);
    assert.notEqual(plain.code, 0);
    const reasons = await Promise.all(
      ['unknown name nobody.test', 'offline name closed.test', 'not a TLS handshake record'].map((reason) =>
        waitForEvent(started.events, (event) => event.type === 'vhost-refused' && event.reason === reason, reason),
      ),
    );
    assert.equal(reasons.length, 3);
    const again = await curl(['--cacert', certificate.cert, '--resolve', `shop.test:${port}:127.0.0.1`, `https://shop.test:${port}/again`]);
    assert.equal(again.code, 0, again.stderr);
  });
});
