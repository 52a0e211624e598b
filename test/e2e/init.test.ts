import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { certificateFingerprint } from '../../src/net/index.js';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { recordSecret } from '../helpers/artifacts.js';
import { echoRoundTrip, freePortIn, sha256 } from '../helpers/net.js';
import { CliProcess, COMMONSERVER_BIN, GROUPCLIENT_BIN, ProcessSet, waitForGroupActive } from '../helpers/processes.js';

const BINS: Record<string, string> = { commonserver: COMMONSERVER_BIN, groupclient: GROUPCLIENT_BIN };

/** The command line printed after `label` in init's output, as [binary, ...args]. */
function printedCommand(lines: string[], label: RegExp): [string, string[]] {
  const at = lines.findIndex((line) => label.test(line));
  assert.ok(at >= 0, `no line matching ${label} in:\n${lines.join('\n')}`);
  const [bin, ...args] = lines[at + 1]!.trim().split(/\s+/);
  assert.ok(bin !== undefined && bin in BINS, `not one of our commands: ${lines[at + 1]}`);
  return [BINS[bin]!, args];
}

test(
  'commonserver init DIR writes a config, a certificate and a pinned group file whose printed commands run a real TLS tunnel; a second init refuses to overwrite',
  { timeout: 60_000 },
  async () => {
    const processes = new ProcessSet();
    const echo = await startEchoApp();
    after(async () => {
      await processes.stopAll();
      await echo.close();
    });
    const dir = join(mkdtempSync(join(tmpdir(), 'ntp-init-')), 'server');
    const commonPort = await unusedPort();
    const init = new CliProcess(COMMONSERVER_BIN, ['init', dir, '--group', 'site-a', '--public-host', '127.0.0.1', '--bind', `127.0.0.1:${commonPort}`]);
    assert.equal((await init.exited).code, 0, init.output);

    const groupFile = join(dir, 'groups', 'site-a.yaml');
    assert.equal(statSync(groupFile).mode & 0o777, 0o600, 'the group file holds the secret');
    assert.equal(statSync(join(dir, 'tls', 'commonserver.key')).mode & 0o777, 0o600);
    let text = readFileSync(groupFile, 'utf8');
    const secret = /^secret: (\S+)$/m.exec(text)?.[1];
    assert.ok(secret !== undefined && secret.length >= 32, 'a generated secret, long enough');
    recordSecret(secret); // the suite's log scan proves it was never printed
    const fingerprint = certificateFingerprint(readFileSync(join(dir, 'tls', 'commonserver.crt')));
    assert.match(text, new RegExp(`^serverFingerprint: ${fingerprint}$`, 'm'), 'the fingerprint of the certificate init created');
    assert.match(text, new RegExp(`^server: 127\\.0\\.0\\.1:${commonPort}$`, 'm'));
    assert.ok(!init.output.includes(secret));
    // Both files name the JSON Schema of their kind, for editors, by a path that resolves.
    for (const [file, schema] of [
      [join(dir, 'commonserver.yaml'), 'commonserver.schema.json'],
      [groupFile, 'group.schema.json'],
    ] as const) {
      const named = /^# yaml-language-server: \$schema=(\S+)$/m.exec(readFileSync(file, 'utf8'))?.[1];
      assert.ok(named !== undefined && named.endsWith(`/${schema}`) && existsSync(resolve(dirname(file), named)), `${file}: schema comment ${named}`);
    }

    // The sample app becomes a real one: the echo app, on a public port free right now.
    const publicPort = await freePortIn(6000, 6999);
    text = text.replace('local: 127.0.0.1:22', `local: 127.0.0.1:${echo.port}`).replace('remotePort: 6022', `remotePort: ${publicPort}`);
    writeFileSync(groupFile, text);
    const hostDir = mkdtempSync(join(tmpdir(), 'ntp-init-host-'));
    mkdirSync(hostDir, { recursive: true });
    copyFileSync(groupFile, join(hostDir, 'site-a.yaml'));

    const verified = new CliProcess(COMMONSERVER_BIN, ['verify', '--config', join(dir, 'commonserver.yaml')]);
    assert.equal((await verified.exited).code, 0, verified.output);

    const [serverBin, serverArgs] = printedCommand(init.lines, /start the server:/);
    const server = processes.add(new CliProcess(serverBin, serverArgs));
    await server.waitForLine(new RegExp(`commonserver listening on 127\\.0\\.0\\.1:${commonPort}`));
    assert.ok(
      server.lines.some((line) => line.includes(`certificate fingerprint ${fingerprint}`)),
      'the server kept the certificate init made',
    );

    // Run on the host exactly as printed, from the directory the file was copied to.
    const [clientBin, clientArgs] = printedCommand(init.lines, /run there:/);
    assert.deepEqual(clientArgs, ['--config', 'site-a.yaml']);
    const client = processes.add(new CliProcess(clientBin, clientArgs, {}, [], { cwd: hostDir }));
    const ports = await waitForGroupActive(client, 'site-a');
    assert.equal(ports.get('ssh'), publicPort);
    const payload = Buffer.from(`through the tunnel init set up ${Date.now()}`);
    assert.equal((await echoRoundTrip(publicPort, payload)).toString(), payload.toString());

    // Init never overwrites: same directory, refused, nothing changed.
    const before = sha256(readFileSync(groupFile));
    const again = new CliProcess(COMMONSERVER_BIN, ['init', dir, '--group', 'site-a']);
    assert.equal((await again.exited).code, 2);
    assert.match(again.stderr.join('\n'), new RegExp(`${join(dir, 'commonserver.yaml').replace(/[.]/g, '\\.')} already exists: init never overwrites`));
    assert.equal(sha256(readFileSync(groupFile)), before);
  },
);

test('commonserver init refuses a new group file beside an existing one of the same name, and a bad group name', { timeout: 20_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-init-'));
  mkdirSync(join(dir, 'groups'));
  writeFileSync(join(dir, 'groups', 'taken.yaml'), 'kept\n');
  const taken = new CliProcess(COMMONSERVER_BIN, ['init', dir, '--group', 'taken']);
  assert.equal((await taken.exited).code, 2);
  assert.match(taken.output, /taken\.yaml already exists/);
  assert.equal(readFileSync(join(dir, 'groups', 'taken.yaml'), 'utf8'), 'kept\n');
  assert.throws(() => statSync(join(dir, 'commonserver.yaml')), 'nothing written when one file exists');
  const badName = new CliProcess(COMMONSERVER_BIN, ['init', join(dir, 'other'), '--group', '../escape']);
  assert.equal((await badName.exited).code, 2);
  assert.match(badName.output, /--group: expected a group name/);
});
