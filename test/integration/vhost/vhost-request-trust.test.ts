import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { loadGroupFile } from '../../../src/config/index.js';
import { startApp, type TestApp } from '../../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../../helpers/in-process.js';
import { connectTo, readAll, waitForEvent } from '../../helpers/net.js';
import { curl, curlSeen, rawGet, readResponse, startWebApp, writeVhostGroup, type RawResponse, type SeenRequest } from '../../helpers/vhost.js';

type WebApp = Awaited<ReturnType<typeof startWebApp>>;

const CREDENTIALS = 'ann:correct horse battery';

/**
 * What the HTTP vhost lets a user say to an app, end to end over the default link (TLS,
 * pinned, mux): the path an app reads is the one the router matched (so basic auth on a
 * location holds whatever the spelling), the Host an app reads is the one the request was
 * routed by, forwarding headers are ours, and a malformed head is answered at once.
 */
describe('HTTP vhost: what reaches the app is what was checked', () => {
  let config: TestConfigDir;
  let started: StartedServer;
  let client: StartedClient;
  let port = 0;
  const apps = new Map<string, WebApp>();
  let lfApp: TestApp;

  before(async () => {
    for (const name of ['public', 'admin', 'b']) apps.set(name, await startWebApp(name));
    // Answers every request with a head of bare LFs and keeps its conn open.
    lfApp = await startApp((socket) => socket.once('data', () => socket.write('HTTP/1.1 200 OK\nContent-Length: 2\n\nok')));
    // headersTimeout far above each test's timeout: an answer that comes is never the deadline's 408.
    config = makeConfigDir([], { extra: { vhost: { http: '127.0.0.1:0', headersTimeout: '60s' } } });
    writeVhostGroup(config, 'alpha', randomSecret(), [
      { name: 'public', type: 'http', localPort: apps.get('public')!.port, domains: ['locked.test'] },
      {
        name: 'admin',
        type: 'http',
        localPort: apps.get('admin')!.port,
        domains: ['locked.test'],
        locations: ['/admin'],
        basicAuth: { user: 'ann', password: 'correct horse battery' },
      },
      { name: 'b', type: 'http', localPort: apps.get('b')!.port, domains: ['b.test'] },
      { name: 'lf', type: 'http', localPort: lfApp.port, domains: ['lf.test'] },
    ]);
    started = await startServer(config);
    port = started.server.vhost!.port('http');
    client = startClient(loadGroupFile(config.groupFile('alpha')), started);
    await waitForEvent(started.events, (event) => event.type === 'group-activated' && event.group === 'alpha', 'alpha activated');
  });

  after(async () => {
    await client.client.stop();
    await started.server.close();
    for (const app of apps.values()) await app.close();
    await lfApp.close();
  });

  const seen = (body: Buffer): SeenRequest => JSON.parse(body.toString()) as SeenRequest;
  const resolve = (): string[] => ['--resolve', `locked.test:${port}:127.0.0.1`, '--resolve', `b.test:${port}:127.0.0.1`];

  /** curl, the paths sent as written: one status line per path. */
  async function statuses(paths: string[], extra: string[] = []): Promise<number[]> {
    const urls = paths.flatMap((path) => ['--output', '/dev/null', `http://locked.test:${port}${path}`]);
    const { code, stdout, stderr } = await curl([...resolve(), '--path-as-is', '--write-out', '%{http_code}\n', ...extra, ...urls]);
    assert.equal(code, 0, stderr);
    return stdout.toString().trim().split('\n').map(Number);
  }

  test('basic auth on /admin holds for every spelling an app reads as /admin (curl --path-as-is)', { timeout: 20_000 }, async () => {
    const spellings = [
      '/admin/x',
      '/%61dmin/x',
      '/%41dmin/x',
      '/x/../admin/x',
      '//admin/x',
      '/./admin/x',
      '/%2e%2e/admin/x',
      '/x/%2E%2E/admin/x',
      '/x/.%2e/admin/x',
      '/x;p/../admin/x',
      '/ADMIN/x',
      '/Admin',
      '/admin',
      '/admin;jsessionid=1',
      '/administrator',
    ];
    assert.deepEqual(await statuses(spellings), Array(spellings.length).fill(401) as number[], spellings.join(' '));
    const urls = spellings.map((path) => `http://locked.test:${port}${path}`);
    const answers = await curlSeen([...resolve(), '--path-as-is', '--user', CREDENTIALS, ...urls]);
    assert.deepEqual(
      answers.map((answer) => `${answer.app} ${answer.url}`),
      [
        'admin /admin/x',
        'admin /admin/x',
        'admin /Admin/x', // %41 is A: locations match without regard to case, the case stays the user's
        ...Array<string>(7).fill('admin /admin/x'), // the app reads the path it was matched on, never the user's spelling
        'admin /ADMIN/x',
        'admin /Admin',
        'admin /admin',
        'admin /admin;jsessionid=1',
        'admin /administrator', // a location is a prefix of the text, as in frp and nginx
      ],
    );
  });

  test('the public side keeps its paths, sent to the app in normal form with the query as written', { timeout: 10_000 }, async () => {
    const paths = ['/', '/adm', '/admin/../pub', '/x/.%2e/', '/%7Euser/caf%c3%a9?next=/admin/%2e%2e&x=%2F', '/a;jsessionid=1'];
    const urls = paths.map((path) => `http://locked.test:${port}${path}`);
    const answers = await curlSeen([...resolve(), '--path-as-is', ...urls]);
    assert.deepEqual(
      answers.map((answer) => `${answer.app} ${answer.url}`),
      ['public /', 'public /adm', 'public /pub', 'public /', 'public /~user/caf%C3%A9?next=/admin/%2e%2e&x=%2F', 'public /a;jsessionid=1'],
    );
  });

  test('paths that apps read in ways that disagree get 400 and reach no app', { timeout: 15_000 }, async () => {
    const refused = [
      '/x%2F..%2Fadmin/x', // an escaped slash: a slash to some apps, a character to others
      '/admin%2fx',
      '/x\\..\\admin/x', // a backslash: a slash to some apps
      '/x/..%5cadmin/x',
      '/..;/admin/x', // /admin/x to an app that drops ;parameters, /..;/admin/x to the router otherwise
      '/;x/admin/x',
      '/admin%3Bx', // an escaped ;
      '/%2561dmin/x', // double encoding: /admin/x to an app that decodes twice
      '/x#/../admin', // a fragment is never part of a request
      '/%00/admin',
      '/%zz',
    ];
    for (const path of refused) {
      const response = await rawGet(port, 'locked.test', path);
      assert.equal(response.status, 400, path);
    }
    await waitForEvent(started.events, (event) => event.type === 'vhost-refused' && event.code === '400' && /location/.test(event.reason), 'the 400 event');
  });

  test('pipelined requests on one keep-alive conn are each routed and checked', { timeout: 10_000 }, async () => {
    const socket = await connectTo(port);
    socket.write('GET /pub HTTP/1.1\r\nHost: locked.test\r\n\r\nGET /%61dmin/x HTTP/1.1\r\nHost: locked.test\r\n\r\n');
    // Both answers may come in one segment: read to the end (the 401 closes the conn) and split there.
    const both = (await readAll(socket)).toString('latin1');
    assert.deepEqual(
      [...both.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => match[1]),
      ['200', '401'],
    );
    assert.match(both, /"app":"public","method":"GET","url":"\/pub"/);
  });

  test('an absolute-form target is routed and forwarded by its own host, the Host header replaced', { timeout: 15_000 }, async () => {
    // curl through a proxy sends the absolute form; the user's Host says another name.
    const viaProxy = await curl(['--proxy', `http://127.0.0.1:${port}`, '-H', 'Host: attacker.example', 'http://b.test/x?q=1']);
    assert.equal(viaProxy.code, 0, viaProxy.stderr);
    const answer = seen(viaProxy.stdout);
    assert.deepEqual([answer.app, answer.url, answer.headers.host, answer.headers['x-forwarded-host']], ['b', '/x?q=1', 'b.test', 'b.test']);
    const withPort = seen((await rawGet(port, 'locked.test', 'http://B.test:8080/%61/../y')).body);
    assert.deepEqual([withPort.app, withPort.url, withPort.headers.host], ['b', '/y', 'B.test:8080']);
    const noPath = seen((await rawGet(port, 'b.test', 'http://locked.test?x')).body);
    assert.deepEqual([noPath.app, noPath.url, noPath.headers.host], ['public', '/?x', 'locked.test']);
    assert.equal((await rawGet(port, 'b.test', 'http://locked.test/%61dmin/')).status, 401, 'checked as the URI says, whatever the Host');
    assert.equal((await rawGet(port, 'b.test', 'http://ann:pw@locked.test/admin/')).status, 400, 'user info in the URI');
    assert.equal((await rawGet(port, 'b.test', 'http:///x')).status, 400, 'no host in the URI');
  });

  test('Host: one, valid, required; no CONNECT; OPTIONS * reaches the app of /', { timeout: 10_000 }, async () => {
    assert.equal((await rawGet(port, 'b.test', '/', ['Host: locked.test'])).status, 400, 'two Hosts');
    assert.equal((await rawGet(port, 'b.test', 'http://b.test/', ['Host: b.test'])).status, 400, 'two Hosts beside an absolute URI');
    assert.equal((await rawGet(port, 'ann@b.test')).status, 400, 'user info in Host');
    assert.equal((await rawGet(port, 'b.test:99999')).status, 400, 'a port past 65535');
    assert.equal((await rawRequest(port, 'GET / HTTP/1.1\r\n\r\n')).status, 400, 'HTTP/1.1 without Host');
    assert.equal((await rawRequest(port, 'GET http://b.test/ HTTP/1.1\r\n\r\n')).status, 400, 'HTTP/1.1 without Host, even in absolute form');
    assert.equal(seen((await rawRequest(port, 'GET http://b.test/ HTTP/1.0\r\n\r\n')).body).headers.host, 'b.test', 'HTTP/1.0 in absolute form needs none');
    assert.equal((await rawRequest(port, 'CONNECT b.test:443 HTTP/1.1\r\nHost: b.test:443\r\n\r\n')).status, 400);
    assert.equal((await rawRequest(port, 'GET * HTTP/1.1\r\nHost: b.test\r\n\r\n')).status, 400);
    const options = seen((await rawRequest(port, 'OPTIONS * HTTP/1.1\r\nHost: b.test\r\n\r\n')).body);
    assert.deepEqual([options.app, options.method, options.url], ['b', 'OPTIONS', '*']);
  });

  test("a user's own forwarding headers never reach the app: ours replace them", { timeout: 10_000 }, async () => {
    const response = await rawGet(port, 'b.test', '/h', [
      'X-Forwarded-For: 203.0.113.9',
      'X-Forwarded-Host: evil.example',
      'X-Forwarded-Port: 1',
      'X-Forwarded-Proto: https',
      'X-Forwarded-Prefix: /evil',
      'X_Forwarded_Host: evil2.example',
      'Forwarded: for=198.51.100.1;host=evil.example;proto=https',
      'X-Real-IP: 198.51.100.1',
      'X-Original-URL: /admin',
      'X-Rewrite-URL: /admin',
      'X-Kept: yes',
    ]);
    const { headers } = seen(response.body);
    assert.equal(headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(headers['x-forwarded-host'], 'b.test');
    assert.equal(headers['x-forwarded-port'], String(port));
    assert.equal(headers['x-forwarded-proto'], 'http');
    assert.equal(headers['x-real-ip'], '127.0.0.1');
    for (const dropped of ['x-forwarded-prefix', 'x_forwarded_host', 'forwarded', 'x-original-url', 'x-rewrite-url']) {
      assert.equal(headers[dropped], undefined, `${dropped} reached the app`);
    }
    assert.equal(headers['x-kept'], 'yes');
  });

  test('a head with bare line ends gets 400 at once, not 408 at the deadline', { timeout: 10_000 }, async () => {
    assert.equal((await rawRequest(port, 'GET / HTTP/1.1\nHost: b.test\n\n')).status, 400, 'LF only');
    assert.equal((await rawRequest(port, 'GET / HTTP/1.1\r\nHost: b.test\nX-A: 1\r\n\r\n')).status, 400, 'one bare LF');
    assert.equal((await rawRequest(port, 'GET / HTTP/1.1\r\nHost: b.test\rX-A: 1\r\n\r\n')).status, 400, 'a bare CR');
    // The same request with CRLFs, cut at every line end, still waits for its end and is served.
    const socket = await connectTo(port);
    for (const piece of ['GET /cut HTTP/1.1\r', '\nHost: b.test\r', '\n', '\r', '\n']) socket.write(piece);
    const answer = seen((await readResponse(socket)).body);
    socket.destroy();
    assert.deepEqual([answer.app, answer.url], ['b', '/cut']);
  });

  test('an app whose response head has bare LFs gets the user a 502 at once', { timeout: 10_000 }, async () => {
    assert.equal((await rawGet(port, 'lf.test')).status, 502);
  });
});

/** `head` as written on a fresh conn to the vhost port, and the one response to it. */
async function rawRequest(port: number, head: string): Promise<RawResponse> {
  const socket: Socket = await connectTo(port);
  socket.write(head);
  try {
    return await readResponse(socket);
  } finally {
    socket.destroy();
  }
}
