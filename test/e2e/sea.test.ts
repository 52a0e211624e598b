/**
 * `npm run build:sea`'s single executables, as a user runs them: built into a throwaway folder
 * by the same script, started as programs (not `node dist/...`) with a PATH that holds no node,
 * and carrying a real TLS tunnel (pinned certificate, mux) to an echo app. Their files that an
 * npm install reads from the package (package.json, the dashboard, the systemd units) come out
 * of the executable itself.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { startEchoApp, unusedPort } from '../helpers/apps.js';
import { recordSecret } from '../helpers/artifacts.js';
import { etcdAvailable, EtcdCluster } from '../helpers/etcd-cluster.js';
import { echoRoundTrip, freePortIn } from '../helpers/net.js';
import { DIST_ROOT, REPO_ROOT } from '../helpers/paths.js';
import { rssMb } from '../helpers/proc-usage.js';
import { CliProcess, ProcessSet, serverLinkOf, waitForGroupActive } from '../helpers/processes.js';

const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
const work = mkdtempSync(join(tmpdir(), 'ntp-sea-'));
const processes = new ProcessSet();
const commonserver = join(work, 'dist-sea', 'commonserver');
const groupclient = join(work, 'dist-sea', 'groupclient');
// Only what the programs themselves call (openssl, for init's certificate): no node on this PATH.
const binDir = join(work, 'bin');
const env = { PATH: binDir, XDG_RUNTIME_DIR: work };

function run(program: string, args: string[]): string {
  return execFileSync(program, args, { cwd: work, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

/** Milliseconds from spawning `program` to its first line matching `ready`; the process is left running. */
async function timeToLine(program: string, args: string[], ready: RegExp, cwd = work): Promise<{ ms: number; process: CliProcess }> {
  const started = performance.now();
  const process = processes.add(new CliProcess(program, args, env, [], { program: true, cwd }));
  await process.waitForLine(ready, { timeoutMs: 20_000 });
  return { ms: performance.now() - started, process };
}

before(
  async () => {
    mkdirSync(binDir);
    const openssl = execFileSync('sh', ['-c', 'command -v openssl'], { encoding: 'utf8' }).trim();
    symlinkSync(openssl, join(binDir, 'openssl'));
    await promisify(execFile)(process.execPath, [join(DIST_ROOT, 'scripts', 'build-sea.js'), '--out', join(work, 'dist-sea')], {
      cwd: REPO_ROOT,
      maxBuffer: 16 * 1024 * 1024,
    });
  },
  { timeout: 300_000 },
);

// Each executable is a copy of node (about 100 MB): never left behind.
after(async () => {
  await processes.stopAll();
  rmSync(work, { recursive: true, force: true });
});

test('the single executables say the package version and are programs of their own, not node running a script', { timeout: 60_000 }, () => {
  assert.equal(run(commonserver, ['--version']).trim(), `commonserver ${version}`);
  assert.equal(run(groupclient, ['--version']).trim(), `groupclient ${version}`);
  assert.throws(() => execFileSync('sh', ['-c', 'command -v node'], { env, stdio: 'ignore' }), 'node is not on the PATH the executables run with');
});

test(
  'commonserver and groupclient built as single executables carry a TLS tunnel to an echo app; the dashboard and units come from inside them',
  { timeout: 180_000 },
  async (t) => {
    const echo = await startEchoApp();
    after(() => echo.close());
    const serverDir = join(work, 'server');
    const commonPort = await unusedPort();
    run(commonserver, ['init', serverDir, '--group', 'sea', '--public-host', '127.0.0.1', '--bind', `127.0.0.1:${commonPort}`]);
    const groupFile = join(serverDir, 'groups', 'sea.yaml');
    const publicPort = await freePortIn(6000, 6999);
    const text = readFileSync(groupFile, 'utf8');
    recordSecret(/^secret: (\S+)$/m.exec(text)![1]!);
    writeFileSync(groupFile, text.replace('local: 127.0.0.1:22', `local: 127.0.0.1:${echo.port}`).replace('remotePort: 6022', `remotePort: ${publicPort}`));
    appendFileSync(join(serverDir, 'commonserver.yaml'), 'admin:\n  bind: 127.0.0.1:0\n');
    const hostDir = mkdtempSync(join(work, 'host-'));
    copyFileSync(groupFile, join(hostDir, 'sea.yaml'));
    assert.match(run(commonserver, ['verify', '--config', join(serverDir, 'commonserver.yaml')]), /0 problems, 0 warnings: ok/);

    // Started three times each: spawn to the server's "listening" line and to the client's
    // "group active" line (connected, logged in, apps bound). Reported, not asserted: on two
    // shared cores a start can take several times its quiet figure.
    const serverStarts: number[] = [];
    const clientStarts: number[] = [];
    let server: CliProcess | undefined;
    let client: CliProcess | undefined;
    for (let round = 0; round < 3; round++) {
      await client?.stop();
      await server?.stop();
      const serverStart = await timeToLine(commonserver, ['--config', join(serverDir, 'commonserver.yaml')], /commonserver listening on/);
      server = serverStart.process;
      serverStarts.push(serverStart.ms);
      await serverLinkOf(server);
      const clientStart = await timeToLine(groupclient, ['--config', 'sea.yaml'], /group sea active on/, hostDir);
      client = clientStart.process;
      clientStarts.push(clientStart.ms);
    }
    const ports = await waitForGroupActive(client!, 'sea');
    assert.equal(ports.get('ssh'), publicPort);
    const payload = Buffer.from(`through the single executables ${Date.now()}`);
    assert.equal((await echoRoundTrip(publicPort, payload)).toString(), payload.toString());
    assert.equal(readlinkSync(`/proc/${server!.pid}/exe`), commonserver);
    assert.equal(readlinkSync(`/proc/${client!.pid}/exe`), groupclient);
    t.diagnostic(
      `start to ready, median of 3: commonserver ${median(serverStarts).toFixed(0)} ms [${serverStarts.map((ms) => ms.toFixed(0)).join(', ')}], ` +
        `groupclient ${median(clientStarts).toFixed(0)} ms [${clientStarts.map((ms) => ms.toFixed(0)).join(', ')}]`,
    );
    t.diagnostic(`RSS at rest with a tunnel up: commonserver ${rssMb(server!.pid).toFixed(1)} MB, groupclient ${rssMb(client!.pid).toFixed(1)} MB`);

    const admin = (await server!.waitForLine(/admin listening on (http:\/\/\S+)/))[1]!;
    for (const [path, type] of [
      ['/', /text\/html/],
      ['/dashboard.js', /javascript/],
    ] as const) {
      const page = await fetch(`${admin}${path}`);
      assert.equal(page.status, 200, `${path} is served from the executable`);
      assert.match(page.headers.get('content-type') ?? '', type);
    }
    const units = join(work, 'units');
    run(commonserver, ['install-units', '--prefix', '/opt/ntp', '--out', units]);
    assert.match(readFileSync(join(units, 'commonserver.service'), 'utf8'), /^ExecStart=\/opt\/ntp\/bin\/commonserver /m);
  },
);

test(
  'the single commonserver runs a cluster node on etcd: the gRPC definitions etcd3 reads from disk are inside the executable',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 120_000 },
  async () => {
    const etcd = await EtcdCluster.start(1);
    after(() => etcd.stop());
    const dir = mkdtempSync(join(work, 'cluster-'));
    writeFileSync(
      join(dir, 'commonserver.yaml'),
      `bind: 127.0.0.1:0\ngroups: ./groups\ntls: { cert: ./tls/c.crt, key: ./tls/c.key }\ncluster: { etcd: [${etcd.endpoints[0]}], node: a, advertise: 127.0.0.1 }\n`,
    );
    const node = processes.add(new CliProcess(commonserver, ['--config', join(dir, 'commonserver.yaml')], env, [], { program: true }));
    await node.waitForLine(/cluster: the registry is etcd/, { timeoutMs: 30_000 });
    await serverLinkOf(node);
    await node.stop();
  },
);
