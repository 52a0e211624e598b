import assert from 'node:assert/strict';
import { readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { certificateFingerprint } from '../../src/net/index.js';
import { startEchoApp } from '../helpers/apps.js';
import { groupYaml, makeConfigDir, randomSecret } from '../helpers/configs.js';
import { echoRoundTrip } from '../helpers/net.js';
import { CliProcess, COMMONSERVER_BIN, startCommonServerProcess, startGroupClientProcess } from '../helpers/processes.js';

test('commonserver init creates a private key and a certificate once, and prints its fingerprint', { timeout: 20_000 }, async () => {
  const config = makeConfigDir([], { tls: true, certificate: 'on-start' });
  const first = new CliProcess(COMMONSERVER_BIN, ['init', '--config', config.serverFile]);
  assert.equal((await first.exited).code, 0, first.output);
  const cert = join(config.dir, 'tls', 'commonserver.crt');
  const key = join(config.dir, 'tls', 'commonserver.key');
  assert.equal(statSync(key).mode & 0o777, 0o600);
  const fingerprint = certificateFingerprint(readFileSync(cert));
  assert.match(first.output, new RegExp(`TLS certificate created: .*certificate fingerprint ${fingerprint}`, 's'));

  const second = new CliProcess(COMMONSERVER_BIN, ['init', '--config', config.serverFile]);
  assert.equal((await second.exited).code, 0);
  assert.ok(!second.output.includes('created'), 'an existing certificate is kept');
  assert.ok(second.output.includes(fingerprint));

  // A certificate without its key is not silently replaced.
  unlinkSync(key);
  const broken = new CliProcess(COMMONSERVER_BIN, ['--config', config.serverFile]);
  assert.equal((await broken.exited).code, 2);
  assert.match(broken.output, /commonserver\.key is missing \(the other file exists; refusing to replace it\)/);
});

test('groupclient pins from its group file; without a pin or CA a self-signed server is refused with exit 3', { timeout: 30_000 }, async () => {
  const echo = await startEchoApp();
  const secret = randomSecret();
  const group = { name: 'pin-file', secret, apps: [{ name: 'echo', localPort: echo.port }] };
  const config = makeConfigDir([group], { tls: true });
  const { process: server, port, fingerprint } = await startCommonServerProcess(config.serverFile);
  after(async () => {
    await server.stop();
    await echo.close();
  });

  const unpinned = startGroupClientProcess({ groupsDir: config.groupsDir, group: 'pin-file', serverPort: port, link: 'file' });
  after(() => unpinned.stop());
  assert.equal((await unpinned.exited).code, 3);
  assert.match(unpinned.output, /certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\); refusing to talk/);

  writeFileSync(config.groupFile('pin-file'), `${groupYaml(group)}serverFingerprint: ${fingerprint}\n`);
  const pinned = startGroupClientProcess({ groupsDir: config.groupsDir, group: 'pin-file', serverPort: port, link: 'file' });
  after(() => pinned.stop());
  const active = await pinned.waitForLine(/group pin-file active on \S+: echo → server port (\d+)/);
  assert.equal((await echoRoundTrip(Number(active[1]), Buffer.from('pinned by file'))).toString(), 'pinned by file');
});
