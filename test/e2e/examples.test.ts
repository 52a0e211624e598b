/**
 * examples/: each server config and host file passes `verify` as a user would run it (the
 * secrets given in the environment, the server's certificate made by `init`), and the ssh
 * example carries a real tunnel (TLS, pinned certificate, mux) once its placeholders are
 * filled in as its README says.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { recordSecret } from '../helpers/artifacts.js';
import { randomSecret } from '../helpers/configs.js';
import { echoRoundTrip, freePortIn } from '../helpers/net.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { CliProcess, COMMONSERVER_BIN, GROUPCLIENT_BIN, ProcessSet, serverLinkOf, waitForGroupActive } from '../helpers/processes.js';

const EXAMPLES = join(REPO_ROOT, 'examples');
const work = mkdtempSync(join(tmpdir(), 'ntp-examples-'));
const processes = new ProcessSet();
after(async () => {
  await processes.stopAll();
  rmSync(work, { recursive: true, force: true });
});

/** Every `${VAR}` the example's files name, each given a fresh secret. */
function secretsFor(dir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const file of yamlFiles(dir)) {
    for (const [, name] of readFileSync(file, 'utf8').matchAll(/\$\{([A-Z0-9_]+)\}/g)) {
      env[name!] ??= randomSecret();
      recordSecret(env[name!]!);
    }
  }
  return env;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.yaml'))
    .map((file) => join(dir, file));
}

/** A copy of the example whose common port is a free loopback one: test files run side by side, and 7000 may be taken. */
async function copyOf(example: string): Promise<{ dir: string; commonPort: number }> {
  const dir = join(work, example);
  cpSync(join(EXAMPLES, example), dir, { recursive: true });
  const commonPort = await unusedPort();
  for (const file of readdirSync(join(dir, 'server')).filter((name) => name.endsWith('.yaml'))) {
    const path = join(dir, 'server', file);
    const text = readFileSync(path, 'utf8');
    assert.match(text, /^bind: 0\.0\.0\.0:7000$/m, `${example}/server/${file} binds the common port`);
    writeFileSync(path, text.replace(/^bind: 0\.0\.0\.0:7000$/m, `bind: 127.0.0.1:${commonPort}`));
  }
  return { dir, commonPort };
}

async function run(bin: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const cli = processes.add(new CliProcess(bin, args, env));
  const { code } = await cli.exited;
  return { code, output: cli.output };
}

const examples = readdirSync(EXAMPLES, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);

test('the examples cover ssh, a vhost with HTTPS, DNS over UDP, a pool of three hosts and a cluster of three nodes', () => {
  assert.deepEqual(examples, ['cluster-etcd', 'dns-udp', 'pool-three-hosts', 'ssh-home-box', 'web-vhost-https']);
  for (const example of examples) {
    assert.ok(readdirSync(join(EXAMPLES, example)).includes('README.md'), `${example} has a README.md`);
    // Secrets only as ${VAR}: a literal one in a published example would be everyone's.
    for (const file of yamlFiles(join(EXAMPLES, example))) assert.doesNotMatch(readFileSync(file, 'utf8'), /^\s*(secret|password|token):(?! \$\{)/m, file);
  }
});

for (const example of examples) {
  test(`examples/${example}: every server config and host file passes verify`, { timeout: 120_000 }, async () => {
    const { dir } = await copyOf(example);
    const env = secretsFor(dir);
    for (const file of readdirSync(join(dir, 'server')).filter((name) => name.endsWith('.yaml'))) {
      const config = join(dir, 'server', file);
      const init = await run(COMMONSERVER_BIN, ['init', '--config', config], env);
      assert.equal(init.code, 0, init.output);
      const verified = await run(COMMONSERVER_BIN, ['verify', '--config', config], env);
      assert.equal(verified.code, 0, verified.output);
      assert.match(verified.output, /0 problems, 0 warnings: ok/);
    }
    for (const file of readdirSync(join(dir, 'host'))) {
      // Run where the host would run it; nothing listens on the example's local targets here,
      // which verify reports about the host now without failing the file.
      const verified = await run(GROUPCLIENT_BIN, ['verify', '--config', join(dir, 'host', file)], env);
      assert.equal(verified.code, 0, verified.output);
      assert.match(verified.output, /0 problems, 0 warnings.*: ok/);
    }
  });
}

test('examples/ssh-home-box carries a real tunnel once its README steps fill in the placeholders', { timeout: 120_000 }, async () => {
  const echo = await startEchoApp();
  after(() => echo.close());
  const { dir, commonPort } = await copyOf('ssh-home-box');
  const env = { ...secretsFor(dir), XDG_RUNTIME_DIR: dir };
  const serverConfig = join(dir, 'server', 'commonserver.yaml');
  const init = await run(COMMONSERVER_BIN, ['init', '--config', serverConfig], env);
  const fingerprint = /sha256:[0-9a-f]{64}/.exec(init.output)?.[0];
  assert.ok(fingerprint !== undefined, init.output);
  // Where this test's sshd stand-in and a free public port are; the rest as the example has it.
  const publicPort = await freePortIn(6000, 6999);
  const edit = (file: string, replace: (text: string) => string): void => writeFileSync(file, replace(readFileSync(file, 'utf8')));
  edit(serverConfig, (text) => text.replace('allowPorts: ["6022"]', `allowPorts: ["${publicPort}"]`));
  // The apps live in the registry only: the host's file is its identity.
  edit(join(dir, 'server', 'groups', 'home.yaml'), (text) =>
    text.replace('local: 127.0.0.1:22', `local: 127.0.0.1:${echo.port}`).replace('remotePort: 6022', `remotePort: ${publicPort}`),
  );
  edit(join(dir, 'host', 'home.yaml'), (text) =>
    text.replace('server: tunnel.example.com:7000', `server: 127.0.0.1:${commonPort}`).replace(/sha256:0{64}/, fingerprint),
  );

  const server = processes.add(new CliProcess(COMMONSERVER_BIN, ['--config', serverConfig], env));
  await serverLinkOf(server);
  const client = processes.add(new CliProcess(GROUPCLIENT_BIN, ['--config', 'home.yaml'], env, [], { cwd: join(dir, 'host') }));
  const ports = await waitForGroupActive(client, 'home', { timeoutMs: 20_000 });
  assert.equal(ports.get('ssh'), publicPort);
  const payload = Buffer.from(`ssh-home-box example ${Date.now()}`);
  assert.equal((await echoRoundTrip(publicPort, payload)).toString(), payload.toString());
});
