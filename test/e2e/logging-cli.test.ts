import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { certificateFingerprint } from '../../src/net/index.js';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { groupYaml, makeConfigDir, randomSecret } from '../helpers/configs.js';
import { echoRoundTrip } from '../helpers/net.js';
import {
  CliProcess,
  COMMONSERVER_BIN,
  GROUPCLIENT_BIN,
  ProcessSet,
  serverLinkOf,
  startCommonServerProcess,
  startGroupClientProcess,
  waitForGroupActive,
} from '../helpers/processes.js';

const LEVELS = ['error', 'warn', 'info', 'debug'];
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface JsonLine {
  time: string;
  level: string;
  event: string;
  msg: string;
  [field: string]: unknown;
}

/** Every stdout line of `process` as a json log line; fails on any line that is not one. */
function jsonLines(process: CliProcess): JsonLine[] {
  return process.lines.map((line, i) => {
    let parsed: JsonLine;
    try {
      parsed = JSON.parse(line) as JsonLine;
    } catch {
      assert.fail(`stdout line ${i + 1} is not JSON: ${line}`);
    }
    assert.match(parsed.time, ISO_TIME, line);
    assert.ok(LEVELS.includes(parsed.level), line);
    assert.equal(typeof parsed.event, 'string', line);
    assert.equal(typeof parsed.msg, 'string', line);
    return parsed;
  });
}

const processes = new ProcessSet();
after(() => processes.stopAll());

test(
  '--log-format json: every line is one object with an ISO time, level, event and fields; debug adds a line per user; frames are traced by type and size only',
  { timeout: 30_000 },
  async () => {
    const echo = await startEchoApp();
    after(() => echo.close());
    const secret = randomSecret();
    const group = { name: 'jsonlog', secret, apps: [{ name: 'echo', localPort: echo.port }] };
    const config = makeConfigDir([]);
    // The client's level comes from its group file; the server's from the command line.
    writeFileSync(config.groupFile('jsonlog'), `${groupYaml(group)}logLevel: debug\n`);
    const server = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile, '--log-format', 'json', '--log-level', 'debug']));
    const link = await serverLinkOf(server);
    const client = processes.add(
      startGroupClientProcess({
        server: link,
        groupsDir: config.groupsDir,
        group: 'jsonlog',
        extraArgs: ['--log-format', 'json'],
        env: { DEBUG: 'ntp:net:frames' },
      }),
    );
    await client.waitForLine(/"event":"login-accepted"/);
    const accepted = jsonLines(client).find((line) => line.event === 'login-accepted')!;
    assert.equal(accepted.level, 'info');
    const apps = accepted.apps as { name: string; remotePort: number }[];
    assert.equal(apps[0]!.name, 'echo');

    const payload = Buffer.alloc(1000, 0x61);
    assert.equal((await echoRoundTrip(apps[0]!.remotePort, payload)).length, payload.length);
    await server.waitForLine(/"event":"conn-closed"/);
    await client.waitForLine(/"event":"conn-closed"/);

    const serverLines = jsonLines(server);
    const listening = serverLines.find((line) => line.event === 'listening')!;
    assert.equal(listening.address, `127.0.0.1:${link.port}`);
    assert.equal(listening.msg, `commonserver listening on 127.0.0.1:${link.port}`);
    const activated = serverLines.find((line) => line.event === 'group-activated')!;
    assert.equal(activated.group, 'jsonlog');
    const closed = serverLines.find((line) => line.event === 'conn-closed')!;
    assert.deepEqual([closed.level, closed.group, closed.app, closed.bytesIn, closed.bytesOut], ['debug', 'jsonlog', 'echo', 1000, 1000]);
    assert.ok(
      jsonLines(client).some((line) => line.event === 'conn-closed' && line.level === 'debug'),
      "the group file's logLevel: debug applies",
    );
    assert.ok(!serverLines.some((line) => line.event === 'heartbeat' || line.event === 'traffic'), 'periodic events are not logged');

    // DEBUG=ntp:net:frames goes to stderr: peer, direction, type, size, and nothing more.
    const frames = client.stderr.filter((line) => line.includes('ntp:net:frames'));
    for (const line of frames) assert.match(line, /ntp:net:frames \S+ (->|<-) [A-Za-z]+ \d+ bytes$/);
    const types = frames.map((line) => /(?:->|<-) ([A-Za-z]+) /.exec(line)![0]);
    for (const expected of ['-> Hello ', '<- Challenge ', '-> Login ', '<- LoginResp ', '-> NewWorkConn ']) {
      assert.ok(types.includes(expected), `a frame line "${expected.trim()}" in:\n${frames.join('\n')}`);
    }
    for (const process of [server, client]) assert.ok(!process.output.includes(secret), 'no line holds the group secret');
  },
);

test(
  'levels filter: logLevel: warn in the server config hides info lines; --log-level error on the client leaves only its rejection and its fatal stop',
  { timeout: 30_000 },
  async () => {
    // The server's level hides the line that would name its port: it gets one chosen here.
    const bindPort = await unusedPort();
    const config = makeConfigDir([{ name: 'quiet', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] }], { bindPort, extra: { logLevel: 'warn' } });
    const fingerprint = certificateFingerprint(readFileSync(join(config.dir, 'tls', 'commonserver.crt')));
    const server = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile]));
    // A client with the wrong secret: a warn line on the server, an error line on the client.
    const intruderDir = makeConfigDir([{ name: 'quiet', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] }]);
    // Started at once: it retries (silently, at level error) until the server listens.
    const intruder = processes.add(
      startGroupClientProcess({
        serverPort: bindPort,
        link: { fingerprint },
        groupsDir: intruderDir.groupsDir,
        group: 'quiet',
        extraArgs: ['--log-level', 'error'],
      }),
    );
    await server.waitForLine(/login rejected from 127\.0\.0\.1:\d+ for group quiet: BAD_SECRET/);
    assert.equal((await intruder.exited).code, 3);
    assert.deepEqual(
      intruder.lines.map((line) => line.replace(/^\d\d:\d\d:\d\d /, '')),
      // The stop that follows is fatal: an error line too.
      ['login rejected: BAD_SECRET: wrong secret for group "quiet"', 'groupclient quiet stopped: login rejected (BAD_SECRET)'],
      intruder.output,
    );
    // Text lines as ever, but no info line: no "listening", no "registered", no fingerprint.
    for (const line of server.lines) assert.match(line, /^\d\d:\d\d:\d\d (login rejected|warning)/, server.lines.join('\n'));
  },
);

test(
  'a bad logLevel or --log-format is refused with exit 2, naming the file, line and field; with --log-format json the error is a json line',
  { timeout: 20_000 },
  async () => {
    const config = makeConfigDir([], { extra: { logLevel: 'loud' } });
    const groupDir = makeConfigDir([]);
    writeFileSync(
      groupDir.groupFile('badlevel'),
      `${groupYaml({ name: 'badlevel', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] })}logLevel: 3\n`,
    );
    // Three independent refusals, run side by side.
    const server = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile, '--log-format', 'json']));
    const client = processes.add(startGroupClientProcess({ serverPort: 1, link: 'plaintext', groupsDir: groupDir.groupsDir, group: 'badlevel' }));
    const format = processes.add(new CliProcess(GROUPCLIENT_BIN, ['--group', 'badlevel', '--groups', groupDir.groupsDir, '--log-format', 'xml']));
    const [serverExit, clientExit, formatExit] = await Promise.all([server.exited, client.exited, format.exited]);

    assert.equal(serverExit.code, 2);
    assert.equal(server.stderr.length, 1, server.output);
    const error = JSON.parse(server.stderr[0]!) as JsonLine;
    assert.deepEqual([error.level, error.event], ['error', 'config-error']);
    // Where, as keys a log pipeline can index: the file, its line and the field.
    assert.deepEqual([error.file, error.field, typeof error.line], [config.serverFile, 'logLevel', 'number']);
    assert.ok((error.line as number) > 0);
    assert.match(
      error.msg,
      new RegExp(`${config.serverFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: logLevel: expected one of error, warn, info, debug, got "loud"`),
    );

    assert.equal(clientExit.code, 2);
    assert.match(client.output, /badlevel\.yaml:\d+: logLevel: expected one of error, warn, info, debug, got 3/);

    assert.equal(formatExit.code, 2);
    assert.match(format.output, /--log-format: expected one of text, json, got "xml"/);
  },
);

/**
 * A groupclient at info serving an echo app; its group file then says `logLevel: debug` and
 * `reload` makes it read the file (nothing: the watch does): per-user lines appear only after.
 */
async function debugAfterReload(name: string, extraArgs: string[], reload: (client: CliProcess) => void): Promise<void> {
  const echo = await startEchoApp();
  after(() => echo.close());
  const group = { name, secret: randomSecret(), apps: [{ name: 'echo', localPort: echo.port }] };
  const config = makeConfigDir([group]);
  const started = await startCommonServerProcess(config.serverFile);
  processes.add(started.process);
  const client = processes.add(startGroupClientProcess({ server: started, groupsDir: config.groupsDir, group: name, extraArgs }));
  const port = (await waitForGroupActive(client, name)).get('echo')!;
  // At info, a user leaves no line on the client.
  await echoRoundTrip(port, Buffer.from('before'));
  const quiet = client.lines.length;
  writeFileSync(config.groupFile(name), `${groupYaml(group)}logLevel: debug\n`);
  reload(client);
  await client.waitForLine(/logLevel applies now/, { fromLine: quiet });
  assert.ok(!client.lines.slice(0, quiet).some((line) => /user of echo closed/.test(line)), 'no per-user line at info');
  await echoRoundTrip(port, Buffer.from('after'));
  await client.waitForLine(/user of echo closed after \S+: 5 B in, 5 B out/, { fromLine: quiet });
}

test('a groupclient applies an edited logLevel: at once: per-user lines appear after the file says debug', { timeout: 30_000 }, () =>
  debugAfterReload('relevel', [], () => {}),
);

test('a groupclient with --no-watch applies an edited logLevel: on SIGHUP (what systemctl reload sends)', { timeout: 30_000 }, () =>
  debugAfterReload('hup-level', ['--no-watch'], (client) => client.kill('SIGHUP')),
);

test('--log-format json: a client stopped by a refused login says so at level error (a stop on request stays info)', { timeout: 20_000 }, async () => {
  const config = makeConfigDir([{ name: 'refused', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] }]);
  const hostDir = makeConfigDir([{ name: 'refused', secret: randomSecret(), apps: [{ name: 'a', localPort: 1 }] }]);
  const server = processes.add(await startCommonServerProcess(config.serverFile).then(({ process }) => process));
  const link = await serverLinkOf(server);
  const client = processes.add(startGroupClientProcess({ server: link, groupsDir: hostDir.groupsDir, group: 'refused', extraArgs: ['--log-format', 'json'] }));
  assert.equal((await client.exited).code, 3, client.output);
  const stopped = jsonLines(client).find((line) => line.event === 'stopped');
  assert.ok(stopped !== undefined, client.output);
  assert.equal(stopped.level, 'error');
  assert.match(stopped.msg, /login rejected/);
});
