import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { loadGroupFile } from '../../src/config/index.js';
import { startAdmin } from '../helpers/admin.js';
import { unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret, type TestConfigDir } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { waitForEvent } from '../helpers/net.js';
import { CliProcess, COMMONSERVER_BIN } from '../helpers/processes.js';

type Verdict = 'allowed' | 'refused';

/** One group of one app: the API refuses a group as a whole, so each app gets its own. */
interface Case {
  group: string;
  app: Record<string, unknown>;
  /** With allowPorts set, and without. */
  expected: { allowPorts: Verdict; open: Verdict };
}

interface Ports {
  tcp: number;
  tcpOutside: number;
  udp: number;
  udpOutside: number;
  pool: number;
  admin: number;
}

function cases(ports: Ports): Case[] {
  const both = (verdict: Verdict) => ({ allowPorts: verdict, open: verdict });
  return [
    { group: 'tcp-in', app: { remotePort: ports.tcp }, expected: both('allowed') },
    { group: 'tcp-out', app: { remotePort: ports.tcpOutside }, expected: { allowPorts: 'refused', open: 'allowed' } },
    { group: 'udp-in', app: { type: 'udp', remotePort: ports.udp }, expected: both('allowed') },
    { group: 'udp-out', app: { type: 'udp', remotePort: ports.udpOutside }, expected: { allowPorts: 'refused', open: 'allowed' } },
    { group: 'web', app: { type: 'http', domains: ['web.example.test'] }, expected: both('allowed') },
    { group: 'tls', app: { type: 'https', domains: ['tls.example.test'] }, expected: both('allowed') },
    { group: 'pooled-tcp', app: { remotePort: ports.pool, pool: 'shared' }, expected: both('allowed') },
    { group: 'pooled-web', app: { type: 'http', domains: ['pool.example.test'], pool: 'site' }, expected: both('allowed') },
    // The server's own TCP port: no TCP app may take it; a UDP app on the same number may.
    { group: 'tcp-admin', app: { remotePort: ports.admin }, expected: both('refused') },
    { group: 'udp-admin', app: { type: 'udp', remotePort: ports.admin }, expected: both('allowed') },
  ];
}

function configWith(all: Case[], ports: Ports, allowPorts: boolean, withGroups: boolean): TestConfigDir {
  const config = makeConfigDir([], {
    extra: {
      vhost: { http: '127.0.0.1:0', https: '127.0.0.1:0' },
      admin: { bind: `127.0.0.1:${ports.admin}` },
      ...(allowPorts ? { allowPorts: [ports.tcp, ports.udp, ports.pool, ports.admin].map(String) } : {}),
    },
  });
  if (withGroups) for (const entry of all) writeFileSync(config.groupFile(entry.group), groupText(entry), { mode: 0o600 });
  chmodSync(config.serverFile, 0o600);
  return config;
}

const secrets = new Map<string, string>();
function groupText({ group, app }: Case): string {
  if (!secrets.has(group)) secrets.set(group, randomSecret());
  return stringify({ name: group, secret: secrets.get(group), apps: [{ name: 'app', local: '127.0.0.1:1', ...app }] });
}

/** The loader: the groups directory read as the server reads it, each group logged in, its app opened or failed. */
async function loaderVerdicts(config: TestConfigDir, all: Case[]): Promise<Map<string, Verdict>> {
  const started = await startServer(config);
  const verdicts = new Map<string, Verdict>();
  try {
    for (const entry of all) {
      const { client, events } = startClient(loadGroupFile(config.groupFile(entry.group)), started);
      try {
        const accepted = await waitForEvent(events, (event) => event.type === 'login-accepted', `${entry.group} logged in`, 10_000);
        const app = accepted.type === 'login-accepted' ? accepted.apps.find((binding) => binding.name === 'app') : undefined;
        verdicts.set(entry.group, app?.state === 'failed' ? 'refused' : 'allowed');
      } finally {
        client.stop();
      }
    }
  } finally {
    await started.server.close();
  }
  return verdicts;
}

/** `commonserver verify` as a child process: a group is refused when a problem line names its file. */
async function verifyVerdicts(config: TestConfigDir, all: Case[]): Promise<Map<string, Verdict>> {
  const cli = new CliProcess(COMMONSERVER_BIN, ['verify', '--config', config.serverFile]);
  await cli.exited;
  const problems = cli.lines.filter((line) => line.startsWith('problem'));
  return new Map(all.map(({ group }) => [group, problems.some((line) => line.includes(`/${group}.yaml`)) ? 'refused' : 'allowed']));
}

/** `POST /api/groups` of each file's text on a server with the same config and no groups yet. */
async function apiVerdicts(config: TestConfigDir, all: Case[]): Promise<Map<string, Verdict>> {
  const { server } = await startServer(config);
  const api = await startAdmin(server, config, { token: 'public-side-test-token' });
  const verdicts = new Map<string, Verdict>();
  try {
    for (const entry of all) {
      const answer = await api.request('POST', '/api/groups', undefined, { raw: groupText(entry) });
      assert.ok(answer.status === 201 || answer.body?.error?.code === 'POLICY', `${entry.group}: ${answer.status} ${JSON.stringify(answer.body)}`);
      verdicts.set(entry.group, answer.status === 201 ? 'allowed' : 'refused');
    }
  } finally {
    await api.admin.close();
    await server.close();
  }
  return verdicts;
}

for (const allowPorts of [true, false]) {
  test(
    `the loader, verify and the admin API give every app the same verdict (tcp, udp, http, https, pooled; allowPorts ${allowPorts ? 'set' : 'unset'})`,
    { timeout: 60_000 },
    async () => {
      const [tcp, tcpOutside, udp, udpOutside, pool, admin] = await Promise.all(Array.from({ length: 6 }, () => unusedPort()));
      const ports = { tcp: tcp!, tcpOutside: tcpOutside!, udp: udp!, udpOutside: udpOutside!, pool: pool!, admin: admin! };
      const all = cases(ports);
      const [loader, verify, api] = await Promise.all([
        loaderVerdicts(configWith(all, ports, allowPorts, true), all),
        verifyVerdicts(configWith(all, ports, allowPorts, true), all),
        apiVerdicts(configWith(all, ports, allowPorts, false), all),
      ]);
      const seen = Object.fromEntries(all.map(({ group }) => [group, { loader: loader.get(group), verify: verify.get(group), api: api.get(group) }]));
      const expected = Object.fromEntries(
        all.map(({ group, expected: verdicts }) => {
          const verdict = allowPorts ? verdicts.allowPorts : verdicts.open;
          return [group, { loader: verdict, verify: verdict, api: verdict }];
        }),
      );
      assert.deepEqual(seen, expected);
    },
  );
}
