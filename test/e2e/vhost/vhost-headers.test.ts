import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { writeFileSync } from 'node:fs';
import { makeConfigDir, randomSecret } from '../../helpers/configs.js';
import { connectTo, readBytes } from '../../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../../helpers/processes.js';
import { curl, startWebApp } from '../../helpers/vhost.js';

/**
 * `requestHeaders` and `responseHeaders` of an http app, through the real binaries over the
 * default link (TLS, pinned fingerprint, mux): a real backend (node:http) says which request
 * headers it saw and sets some response headers; curl -v shows what reached the user. Two
 * requests on one keep-alive conn are both rewritten; a WebSocket-style 101 passes as it came.
 */
describe('request and response headers of an http app, through curl', () => {
  const processes = new ProcessSet();
  let web: Awaited<ReturnType<typeof startWebApp>>;
  let port = 0;
  /** The backend's sockets, one per conn the vhost opened to the app. */
  const backendConns = new Set<Socket>();

  before(async () => {
    web = await startWebApp('web', (req, res) => {
      backendConns.add(req.socket);
      res.setHeader('X-Powered-By', 'backend/1.0');
      res.setHeader('X-Backend', 'kept');
      res.setHeader('Cache-Control', 'public');
      const body = JSON.stringify(req.headers);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return true;
    });
    // A WebSocket-style upgrade: the 101 carries a header the rules would remove from a response.
    web.server.on('upgrade', (_req, socket: Socket) => {
      // An upgraded socket is ours: the server no longer hears its errors (a reset when the
      // tunnel goes at the end would otherwise be an uncaught exception).
      socket.on('error', () => socket.destroy());
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Powered-By: backend/1.0\r\n\r\n');
      socket.pipe(socket);
    });
    const config = makeConfigDir([], { extra: { vhost: { http: '127.0.0.1:0' } } });
    writeFileSync(
      config.groupFile('web'),
      stringify({
        name: 'web',
        secret: randomSecret(),
        apps: [
          {
            name: 'site',
            type: 'http',
            local: `127.0.0.1:${web.port}`,
            domains: ['site.test'],
            requestHeaders: { set: { 'X-Env': 'prod', 'X-Forwarded-Proto': 'https' }, remove: ['X-Debug', 'X-Real-IP'] },
            responseHeaders: { set: { 'X-Frame-Options': 'DENY', 'Cache-Control': 'no-store' }, remove: ['X-Powered-By'] },
          },
        ],
      }),
    );
    const started = await startCommonServerProcess(config.serverFile);
    processes.add(started.process);
    assert.ok(started.fingerprint, 'the default link is TLS with a pinned fingerprint');
    port = Number((await started.process.waitForLine(/http vhost listening on 127\.0\.0\.1:(\d+)/))[1]);
    const client = processes.add(startGroupClientProcess({ configFile: config.groupFile('web'), server: started }));
    assert.equal((await waitForGroupActive(client, 'web')).get('site'), port);
  });

  after(async () => {
    await processes.stopAll();
    await web.close();
  });

  test(
    'the backend sees the set and removed request headers, curl the response ones, on both requests of one keep-alive conn',
    { timeout: 20_000 },
    async () => {
      const url = `http://site.test:${port}`;
      const { code, stdout, stderr } = await curl([
        '-v',
        '--resolve',
        `site.test:${port}:127.0.0.1`,
        '-H',
        'X-Debug: 1',
        '-H',
        'X_Debug: 2',
        '-H',
        'X-Keep: me',
        '-H',
        'X-Env: from-the-user',
        '--write-out',
        '\n',
        `${url}/first`,
        `${url}/second`,
      ]);
      assert.equal(code, 0, stderr);
      const seen = stdout
        .toString()
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, string | undefined>);
      assert.equal(seen.length, 2);
      for (const headers of seen) {
        assert.equal(headers['x-env'], 'prod', 'set replaces what the user sent');
        assert.equal(headers['x-forwarded-proto'], 'https', 'set comes after our forwarding headers');
        assert.equal(headers['x-debug'], undefined, 'removed');
        assert.equal(headers['x_debug'], undefined, 'removed under its "_" spelling too');
        assert.equal(headers['x-real-ip'], undefined, 'one of our forwarding headers, removed by the rules');
        assert.equal(headers['x-keep'], 'me');
        assert.equal(headers['x-forwarded-for'], '127.0.0.1');
        assert.equal(headers.host, `site.test:${port}`);
      }
      assert.match(stderr, /Re-using existing/i, 'curl sent both requests on one conn');
      assert.equal(backendConns.size, 1, 'the vhost sent both on one conn to the app');
      const received = stderr.split('\n').filter((line) => line.startsWith('< '));
      const count = (pattern: RegExp): number => received.filter((line) => pattern.test(line)).length;
      assert.equal(count(/^< X-Frame-Options: DENY\r?$/i), 2);
      assert.equal(count(/^< Cache-Control: no-store\r?$/i), 2);
      assert.equal(count(/^< Cache-Control: public/i), 0, "set replaces the app's own line");
      assert.equal(count(/^< X-Powered-By/i), 0);
      assert.equal(count(/^< X-Backend: kept\r?$/i), 2);
    },
  );

  test('a 101 upgrade passes as the app wrote it, then bytes flow both ways', { timeout: 20_000 }, async () => {
    const user = await connectTo(port);
    try {
      user.write('GET /ws HTTP/1.1\r\nHost: site.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
      const head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Powered-By: backend/1.0\r\n\r\n';
      assert.equal((await readBytes(user, Buffer.byteLength(head))).toString('latin1'), head);
      user.write('ping');
      assert.equal((await readBytes(user, 4)).toString(), 'ping');
    } finally {
      user.destroy();
    }
  });
});
