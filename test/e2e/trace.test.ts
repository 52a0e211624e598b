import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { ACTORS } from '../../src/trace/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { startUdpEchoApp, UdpUser } from '../helpers/udp.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { echoRoundTrip } from '../helpers/net.js';
import { artifactsFor, launchChromium, skipWithoutChromium } from '../helpers/browser.js';
import { CliProcess, COMMONSERVER_BIN, parsePortTable, serverLinkOf, startGroupClientProcess } from '../helpers/processes.js';
import { REPO_ROOT } from '../helpers/paths.js';

/** Where this file leaves the diagrams and their renderings for people to look at. */
const ARTIFACTS = artifactsFor('trace');

const MERMAID_JS = join(REPO_ROOT, 'node_modules', 'mermaid', 'dist', 'mermaid.min.js');
/** The diagrams of the real run below, for the rendering test. */
const diagrams: { name: string; text: string }[] = [];

/** Resolves once `file` contains `pattern` (watching the file, not sleeping). */
function fileContains(file: string, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => existsSync(file) && pattern.test(readFileSync(file, 'utf8'));
    if (check()) return resolve();
    const watcher = watch(dirname(file), () => {
      if (check()) done();
    });
    const timer = setTimeout(() => {
      watcher.close();
      reject(new Error(`${file} did not contain ${pattern} within ${timeoutMs}ms:\n${existsSync(file) ? readFileSync(file, 'utf8') : '(missing)'}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      watcher.close();
      resolve();
    };
  });
}

const MERMAID_LINE = new RegExp(
  [
    '^sequenceDiagram$',
    '^autonumber$',
    '^participant \\w+$',
    '^Note over \\w+(, \\w+)?: [^;#\\n]+$',
    '^\\w+ (->>|-->>|-x|--x) \\w+: [^;#\\n]+$',
    '^loop [^;#\\n]+$',
    '^end$',
  ].join('|'),
);

/** Every line is Mermaid sequence syntax, participants are the reference actors, blocks balance. */
function checkMermaid(text: string): string[] {
  const lines = text.trimEnd().split('\n');
  for (const line of lines) assert.match(line, MERMAID_LINE, `not a Mermaid sequence line: ${line}`);
  assert.deepEqual(
    lines.filter((l) => l.startsWith('participant ')).map((l) => l.slice('participant '.length)),
    [...ACTORS],
  );
  assert.equal(lines.filter((l) => l.startsWith('loop ')).length, lines.filter((l) => l === 'end').length);
  for (const line of lines) {
    const arrow = /^(\w+) [-x>]+ (\w+):/.exec(line);
    if (arrow) for (const actor of [arrow[1], arrow[2]]) assert.ok((ACTORS as readonly string[]).includes(actor!), `unknown actor ${actor}`);
  }
  return lines;
}

/** Asserts that each pattern matches a line, in this order. */
function inOrder(lines: string[], patterns: RegExp[]): void {
  let from = 0;
  for (const pattern of patterns) {
    const at = lines.findIndex((line, i) => i >= from && pattern.test(line));
    assert.ok(at >= 0, `no ${pattern} after line ${from}:\n${lines.join('\n')}`);
    from = at + 1;
  }
}

test('--trace records a real session of both CLIs as Mermaid diagrams that follow the reference phases', { timeout: 40_000 }, async () => {
  const echo = await startEchoApp();
  const udpEcho = await startUdpEchoApp();
  const config = makeConfigDir([
    {
      name: 'traced',
      secret: randomSecret(),
      apps: [
        { name: 'echo', localPort: echo.port },
        { name: 'dns', localPort: udpEcho.port, type: 'udp', udp: { idleTimeout: '300ms' } },
      ],
    },
  ]);
  const serverTrace = join(config.dir, 'server.mmd');
  const clientTrace = join(config.dir, 'client.mmd');
  const server = new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile, '--trace', serverTrace]);
  const client = startGroupClientProcess({
    groupsDir: config.groupsDir,
    group: 'traced',
    server: await serverLinkOf(server),
    extraArgs: ['--trace', clientTrace],
  });
  after(async () => {
    await client.stop();
    await server.stop();
    await echo.close();
    await udpEcho.close();
  });
  const active = await client.waitForLine(/group traced active on .*/);
  const publicPort = parsePortTable(active[0]).get('echo')!;
  // Heartbeats first, as in the reference diagram; then a user.
  await fileContains(serverTrace, /Pong/);
  await fileContains(clientTrace, /Pong/);
  // The default path: the mux conn is up before the users come (TCP and UDP alike travel on it).
  await fileContains(serverTrace, /NewWorkConn \(the mux conn/);
  assert.equal((await echoRoundTrip(publicPort, Buffer.from('hello through the tunnel'))).toString(), 'hello through the tunnel');
  await fileContains(serverTrace, /conn closed/);
  await fileContains(clientTrace, /conn closed/);
  // A UDP user: one datagram and its reply, then the session closes when idle.
  const udpUser = await UdpUser.open();
  after(() => udpUser.close());
  assert.match((await udpUser.request(parsePortTable(active[0]).get('dns')!, 'query')).toString(), /\|query$/);
  await fileContains(serverTrace, /UDP session \S+ closed: idle/);
  await fileContains(clientTrace, /UDP session closed: ended by the server/);
  await client.stop();
  await server.stop();

  const serverLines = checkMermaid(readFileSync(serverTrace, 'utf8'));
  inOrder(serverLines, [
    /^Note over CommonServer, Client: Preparation$/,
    /^CommonServer ->> CommonServer: register traced into readyGroup/,
    /^CommonServer ->> CommonServer: listen on the bind port/,
    /^Note over CommonServer, Client: Initialisation$/,
    /^Client ->> CommonServer: Hello \(group traced/,
    /^CommonServer -->> Client: Challenge$/,
    /^Client ->> CommonServer: Login$/,
    /^CommonServer ->> CommonServer: take traced out of readyGroup, validate it$/,
    /^CommonServer -x appGroup: activate traced: put it into inUseGroup$/,
    /^appGroup ->> appGroup: start watching heartbeats$/,
    /^appGroup ->> appServer: listen traced\/echo on port \d+$/,
    /^CommonServer -->> Client: LoginResp \(echo :\d+, dns :\d+\)$/,
    /^Note over CommonServer, Client: heartbeat$/,
    /^loop heartbeat of traced$/,
    /^Client ->> CommonServer: Ping \d+$/,
    /^appGroup -->> Client: Pong \d+$/,
    /^end$/,
    /^Note over User, LocalApp: Proxying$/,
    /^User ->> appServer: connect to traced\/echo/,
    /^appServer ->> appServer: hold the UserConn/,
    /^appServer ->> appGroup: ask for a work conn$/,
    /^appGroup ->> Client: OPEN stream \(StartWorkConn echo, pairing \S+\) on the mux conn$/,
    /^appServer ->> appServer: relay the UserConn on the stream at once$/,
    /^appServer -->> User: bytes flow both ways$/,
    /^appServer -->> User: conn closed \(24 B in, 24 B out/,
    /^User ->> appServer: datagram to traced\/dns from 127\.0\.0\.1:\d+: a new UDP session/,
    /^appGroup ->> Client: OPEN stream \(StartWorkConn dns, pairing \S+, protocol udp\) on the mux conn$/,
    /^appServer -->> User: datagrams both ways, one frame each on the session's stream or work conn$/,
    /^appServer --x User: UDP session 127\.0\.0\.1:\d+ closed: idle for 300ms \(1 datagrams in, 1 out\)$/,
    /^Client -x CommonServer: CLIENT_LEFT/,
  ]);

  // With the mux conn, no pool is filled: every user (TCP and UDP) is a stream.
  assert.ok(!serverLines.some((line) => line.includes('ReqPooledWorkConns')), 'no pool with the mux conn');
  assert.ok(
    serverLines.some((line) => /^appGroup ->> Client: ReqMuxConn \(traced\)$/.test(line)),
    'the mux conn is drawn',
  );
  assert.ok(!serverLines.some((line) => line.includes('ReqWorkConn (echo')), 'a user on the mux conn is not drawn as ReqWorkConn');

  const clientLines = checkMermaid(readFileSync(clientTrace, 'utf8'));
  inOrder(clientLines, [
    /^Note over CommonServer, Client: Preparation$/,
    /^Client ->> Client: build the LocalApp objects \(echo, dns\)$/,
    /^Note over CommonServer, Client: Initialisation$/,
    /^Client ->> CommonServer: connect the common conn/,
    /^Client ->> CommonServer: Hello \(group traced\)$/,
    /^CommonServer -->> Client: Challenge$/,
    /^Client ->> CommonServer: Login$/,
    /^CommonServer -->> Client: LoginResp \(echo :\d+, dns :\d+\)$/,
    /^Client ->> Client: remember each app's public port$/,
    /^Note over CommonServer, Client: heartbeat$/,
    /^loop heartbeat$/,
    /^Client ->> CommonServer: Ping \d+$/,
    /^end$/,
    /^Note over User, LocalApp: Proxying$/,
    /^appGroup ->> Client: OPEN stream \(StartWorkConn echo, pairing \S+\) on the mux conn$/,
    /^Client ->> Client: look up app echo$/,
    /^Client ->> LocalApp: dial the local app echo$/,
    /^LocalApp -->> Client: localConn$/,
    /^Client ->> Client: join localConn and remoteConn$/,
    /^LocalApp -->> Client: conn closed/,
    /^appGroup ->> Client: OPEN stream \(StartWorkConn dns, pairing \S+\) on the mux conn$/,
    /^Client ->> LocalApp: open a local UDP socket for dns, connected to its target \(one per session\)$/,
    /^Client ->> Client: relay datagrams between the local socket and the session's stream or work conn, one frame each$/,
    /^LocalApp -->> Client: UDP session closed: ended by the server \(1 datagrams in, 1 out, 0 dropped\)$/,
  ]);

  // For people: the diagrams of this run, next to the dashboard screenshot.
  copyFileSync(serverTrace, join(ARTIFACTS, 'trace-commonserver.mmd'));
  copyFileSync(clientTrace, join(ARTIFACTS, 'trace-groupclient.mmd'));
  diagrams.push({ name: 'commonserver', text: serverLines.join('\n') }, { name: 'groupclient', text: clientLines.join('\n') });
});

test(
  'Mermaid itself renders both diagrams of the real run (in headless chromium, from node_modules)',
  { timeout: 60_000, skip: skipWithoutChromium },
  async () => {
    assert.equal(diagrams.length, 2, 'the recording test ran first');
    const browser = await launchChromium();
    after(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.setContent('<!doctype html><html><body style="background:#fff"><div id="out"></div></body></html>');
    await page.addScriptTag({ path: MERMAID_JS });
    for (const { name, text } of diagrams) {
      // mermaid.render throws on any syntax error: this is the real parser, not our regexes.
      const rendered = await page.evaluate(async (source) => {
        const g = globalThis as unknown as {
          mermaid: { initialize(o: object): void; render(id: string, text: string): Promise<{ svg: string }> };
          document: { getElementById(id: string): { innerHTML: string } };
        };
        g.mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
        const { svg } = await g.mermaid.render(`diagram${Math.random().toString(36).slice(2)}`, source);
        g.document.getElementById('out').innerHTML = svg;
        return svg;
      }, text);
      for (const actor of ACTORS) assert.ok(rendered.includes(`>${actor}<`), `${name}: actor ${actor} drawn`);
      assert.ok(rendered.includes('StartWorkConn'), `${name}: wire messages drawn`);
      await page.screenshot({ path: join(ARTIFACTS, `trace-${name}.png`), fullPage: true });
    }
  },
);
