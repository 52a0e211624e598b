import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { makeConfigDir, randomSecret } from '../../helpers/configs.js';
import { connectTo, streamEnding } from '../../helpers/net.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive, type CliProcess } from '../../helpers/processes.js';
import { curl, startWebApp, writeVhostGroup } from '../../helpers/vhost.js';

/**
 * The real binaries with a vhost: the lifecycle lines name the vhost port and the app's names,
 * curl is served through them, and a groupclient killed with -9 mid-answer resets the user.
 */
describe('the commonserver and groupclient binaries with an HTTP vhost', () => {
  const processes = new ProcessSet();
  let web: Awaited<ReturnType<typeof startWebApp>>;
  let server: CliProcess;
  let client: CliProcess;
  let port = 0;
  /** The response the /hang handler leaves open after its first bytes. */
  let hanging: ((res: ServerResponse) => void) | undefined;

  before(async () => {
    web = await startWebApp('web', (req, res) => {
      if (req.url !== '/hang') return false;
      res.writeHead(200, { 'content-length': 1_000_000 });
      res.write('first bytes of a long answer');
      hanging?.(res);
      return true;
    });
    const config = makeConfigDir([], { extra: { vhost: { http: '127.0.0.1:0' } } });
    writeVhostGroup(config, 'web', randomSecret(), [{ name: 'site', type: 'http', localPort: web.port, domains: ['site.test', 'www.site.test'] }]);
    const started = await startCommonServerProcess(config.serverFile);
    server = processes.add(started.process);
    port = Number((await server.waitForLine(/http vhost listening on 127\.0\.0\.1:(\d+)/))[1]);
    client = processes.add(startGroupClientProcess({ configFile: config.groupFile('web'), server: started }));
    assert.equal((await waitForGroupActive(client, 'web')).get('site'), port);
    await client.waitForLine(/site → site\.test, www\.site\.test on server port \d+/);
    await server.waitForLine(/group web activated .*site → site\.test, www\.site\.test on :\d+/);
  });

  after(async () => {
    await processes.stopAll();
    await web.close();
  });

  test('curl through the binaries', { timeout: 15_000 }, async () => {
    const { code, stdout, stderr } = await curl(['--resolve', `www.site.test:${port}:127.0.0.1`, `http://www.site.test:${port}/through-the-binaries`]);
    assert.equal(code, 0, stderr);
    assert.equal(JSON.parse(stdout.toString()).url, '/through-the-binaries');
  });

  test('kill -9 of the groupclient mid-answer: the user is reset, then the name answers 503', { timeout: 20_000 }, async () => {
    const opened = new Promise<ServerResponse>((resolve) => (hanging = resolve));
    const user = await connectTo(port);
    user.write('GET /hang HTTP/1.1\r\nHost: site.test\r\n\r\n');
    await opened;
    // Everything sent so far is read before the kill: Linux reads a reset that meets unread
    // bytes as an end of stream.
    const rest = streamEnding(user);
    let seen = '';
    await new Promise<void>((resolve) => {
      const onData = (chunk: Buffer): void => {
        seen += chunk.toString('latin1');
        if (!seen.includes('first bytes of a long answer')) return;
        user.off('data', onData);
        resolve();
      };
      user.on('data', onData);
    });
    await client.killHard();
    const ending = await rest;
    assert.equal(ending.ending, 'reset', `ended by ${ending.ending} after ${ending.bytes} more bytes`);
    await server.waitForLine(/group web deactivated/);
    const offline = await curl([
      '--resolve',
      `site.test:${port}:127.0.0.1`,
      '--write-out',
      '%{http_code}',
      '--output',
      '/dev/null',
      `http://site.test:${port}/`,
    ]);
    assert.equal(offline.stdout.toString(), '503');
  });
});
