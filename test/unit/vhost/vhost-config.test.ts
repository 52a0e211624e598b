import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { loadGroupDirectory, loadGroupFile, loadServerConfig } from '../../../src/config/index.js';
import { configError } from '../../helpers/config-errors.js';
import { makeConfigDir } from '../../helpers/configs.js';

const SECRET = 'a-secret-of-sixteen-chars';
const VHOST = { http: '127.0.0.1:0', https: '127.0.0.1:0', subdomainHost: 'tunnel.test' };

function groupFile(dir: string, name: string, apps: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, `name: ${name}\nsecret: ${SECRET}\napps:\n${apps}`);
  return file;
}

test('a vhost app with a bad field is refused naming the file, line and field', () => {
  const { groupsDir } = makeConfigDir([]);
  const cases: [string, RegExp][] = [
    [
      '  - { name: web, local: 127.0.0.1:80, type: http, domains: [a.test], remotePort: 80 }\n',
      /web\.yaml:4: apps\[0\]\.remotePort: an http app is reached through the server's vhost port by name/,
    ],
    ['  - name: web\n    local: 127.0.0.1:80\n    type: http\n', /web\.yaml:4: apps\[0\]\.domains: an http app needs domains/],
    [
      '  - name: web\n    local: 127.0.0.1:80\n    type: http\n    domains: [a.test, "bad name"]\n',
      /web\.yaml:7: apps\[0\]\.domains\[1\]: expected a host name/,
    ],
    [
      '  - name: web\n    local: 127.0.0.1:80\n    type: https\n    domains: [a.test]\n    locations: [/api]\n',
      /web\.yaml:8: apps\[0\]\.locations: https apps are routed by TLS name only/,
    ],
    ['  - name: web\n    local: 127.0.0.1:80\n    domains: [a.test]\n', /web\.yaml:6: apps\[0\]\.domains: only apps of type http or https have this field/],
    ['  - name: web\n    local: 127.0.0.1:80\n    type: ftp\n', /web\.yaml:6: apps\[0\]\.type: expected tcp, udp, http or https/],
    // One type per app: each kind's fields on another kind are refused at that field.
    [
      '  - name: web\n    local: 127.0.0.1:53\n    type: udp\n    remotePort: 5353\n    domains: [a.test]\n',
      /web\.yaml:8: apps\[0\]\.domains: only apps of type http or https have this field/,
    ],
    [
      '  - name: web\n    local: 127.0.0.1:80\n    type: http\n    domains: [a.test]\n    udp: { maxSessions: 8 }\n',
      /web\.yaml:8: apps\[0\]\.udp: udp settings need type: udp/,
    ],
    ['  - name: web\n    local: 127.0.0.1:53\n    type: udp\n', /web\.yaml:4: apps\[0\]\.remotePort: /],
    [
      '  - name: web\n    local: 127.0.0.1:80\n    type: http\n    domains: [a.test]\n    proxyProtocol: v2\n',
      /web\.yaml:8: apps\[0\]\.proxyProtocol: proxyProtocol applies to TCP apps, not to type: http/,
    ],
    [
      '  - name: web\n    local: 127.0.0.1:443\n    type: https\n    domains: [a.test]\n    bandwidth: { out: 1MB }\n',
      /web\.yaml:8: apps\[0\]\.bandwidth: bandwidth applies to TCP apps, not to type: https/,
    ],
    // Requests are matched on their path in normal form: a location is written in it, or it could never match as it reads.
    [
      '  - name: web\n    local: 127.0.0.1:80\n    type: http\n    domains: [a.test]\n    locations: [/, "/%61dmin/./x//"]\n',
      /web\.yaml:8: apps\[0\]\.locations\[1\]: expected a path prefix in normal form: write "\/admin\/x\/"/,
    ],
    [
      '  - name: web\n    local: 127.0.0.1:80\n    type: http\n    domains: [a.test]\n    locations: ["/a%2Fb"]\n',
      /web\.yaml:8: apps\[0\]\.locations\[0\]: expected a path prefix requests can match, not one with an escaped "\/" \(%2F\)/,
    ],
    [
      '  - name: web\n    local: 127.0.0.1:80\n    type: http\n    domains: [a.test]\n    basicAuth: { user: "a:b", password: x }\n',
      /web\.yaml:8: apps\[0\]\.basicAuth\.user: expected a user name without ":"/,
    ],
    [
      '  - name: web\n    local: 127.0.0.1:80\n    type: http\n    domains: [a.test]\n    basicAuth: { user: ann, password: "${NTP_NO_SUCH_VAR}" }\n',
      /apps\[0\]\.basicAuth\.password: environment variable NTP_NO_SUCH_VAR is not set/,
    ],
  ];
  for (const [apps, expected] of cases) {
    const error = configError(() => loadGroupFile(groupFile(groupsDir, 'web', apps), {}));
    assert.match(error.message, expected);
    assert.ok(error.field?.startsWith('apps[0]'), `field of ${error.message}`);
  }
});

test('the vhost section of commonserver.yaml is checked field by field', () => {
  const bad: [unknown, RegExp][] = [
    [{}, /vhost: expected http: HOST:PORT and\/or https: HOST:PORT/],
    [{ http: 'nowhere' }, /vhost\.http: expected "host:port"/],
    [{ http: '127.0.0.1:0', subdomainHost: '*.x.test' }, /vhost\.subdomainHost: expected a plain host name/],
    [{ http: '127.0.0.1:0', allowDomains: { alpha: 'a.test' } }, /vhost\.allowDomains\.alpha: expected a list/],
    [{ http: '127.0.0.1:0', headersTimeout: '5ms' }, /vhost\.headersTimeout: must be at least 100ms/],
  ];
  for (const [vhost, expected] of bad) {
    const config = makeConfigDir([], { extra: { vhost } });
    const error = configError(() => loadServerConfig(config.serverFile));
    assert.match(error.message, expected);
    assert.match(error.message, /commonserver\.yaml:\d+: /, 'names the file and line');
  }
  const good = loadServerConfig(makeConfigDir([], { extra: { vhost: VHOST } }).serverFile);
  assert.deepEqual(good.vhost, {
    http: { host: '127.0.0.1', port: 0 },
    https: { host: '127.0.0.1', port: 0 },
    subdomainHost: 'tunnel.test',
    headersTimeoutMs: 10_000,
  });
});

test('no two groups the same name: the holder keeps it, the newcomer is refused at its field', () => {
  const { groupsDir } = makeConfigDir([]);
  groupFile(groupsDir, 'alpha', '  - { name: web, local: 127.0.0.1:80, type: http, domains: [shared.test] }\n');
  groupFile(
    groupsDir,
    'beta',
    '  - { name: site, local: 127.0.0.1:80, type: http, subdomain: b }\n  - { name: web, local: 127.0.0.1:81, type: https, domains: [other.test, shared.test] }\n',
  );
  const vhost = loadServerConfig(makeConfigDir([], { extra: { vhost: VHOST } }).serverFile).vhost;
  const first = loadGroupDirectory(groupsDir, {}, new Map(), { vhost });
  assert.deepEqual(
    first.groups.map((group) => group.name),
    ['alpha'],
  );
  assert.match(first.errors[0]!.message, /beta\.yaml:5: apps\[1\]\.domains\[1\]: domain shared\.test is already claimed by alpha\/web/);
  // The holder keeps its name even when the newcomer's file sorts first.
  const registered = new Map([['beta', loadGroupFile(join(groupsDir, 'beta.yaml'), {})]]);
  const held = loadGroupDirectory(groupsDir, {}, registered, { vhost });
  assert.deepEqual(
    held.groups.map((group) => group.name),
    ['beta'],
  );
  assert.match(held.errors[0]!.message, /alpha\.yaml:4: apps\[0\]\.domains\[0\]: domain shared\.test is already claimed by beta\/web/);
});

test('the server policy: allowDomains, subdomainHost, and a vhost port for the app type', () => {
  const { groupsDir } = makeConfigDir([]);
  groupFile(groupsDir, 'alpha', '  - { name: web, local: 127.0.0.1:80, type: http, domains: [a.example.test, evil.test] }\n');
  groupFile(groupsDir, 'beta', '  - { name: web, local: 127.0.0.1:80, type: http, domains: [x.shared.test], subdomain: b }\n');
  const policy = { http: '127.0.0.1:0', allowDomains: { alpha: ['*.example.test'], '*': ['*.shared.test'] } };
  const vhost = loadServerConfig(makeConfigDir([], { extra: { vhost: policy } }).serverFile).vhost;
  const loaded = loadGroupDirectory(groupsDir, {}, new Map(), { vhost });
  assert.deepEqual(loaded.groups, []);
  assert.match(
    loaded.errors[0]!.message,
    /alpha\.yaml:4: apps\[0\]\.domains\[1\]: group "alpha" may not claim evil\.test \(vhost\.allowDomains: \*\.example\.test, \*\.shared\.test\)/,
  );
  assert.match(loaded.errors[1]!.message, /beta\.yaml:4: apps\[0\]\.subdomain: this server has no subdomainHost/);
  const httpsOnly = loadServerConfig(makeConfigDir([], { extra: { vhost: { https: '127.0.0.1:0' } } }).serverFile).vhost;
  const noPort = loadGroupDirectory(groupsDir, {}, new Map(), { vhost: httpsOnly });
  assert.match(noPort.errors[0]!.message, /alpha\.yaml:4: apps\[0\]\.type: this server has no http vhost port/);
});

test('a name is shared by several groups only through one pool, whose members agree on it', () => {
  const { groupsDir } = makeConfigDir([]);
  const pooled = (extra = '') => `  - { name: web, local: 127.0.0.1:80, type: http, domains: [pool.test], pool: web${extra} }\n`;
  groupFile(groupsDir, 'a', pooled());
  groupFile(groupsDir, 'b', pooled());
  groupFile(groupsDir, 'c', '  - { name: site, local: 127.0.0.1:80, type: http, domains: [pool.test] }\n');
  groupFile(groupsDir, 'd', '  - { name: web, local: 127.0.0.1:80, type: http, domains: [pool.test], pool: other }\n');
  groupFile(groupsDir, 'e', '  - { name: web, local: 127.0.0.1:80, type: http, domains: [pool.test, more.test], pool: web }\n');
  groupFile(groupsDir, 'f', '  - { name: web, local: 127.0.0.1:80, type: https, domains: [pool.test], pool: web }\n');
  groupFile(groupsDir, 'g', '  - { name: web, local: 127.0.0.1:80, remotePort: 6080, pool: web }\n');
  groupFile(groupsDir, 'h', pooled(', locations: [/api]'));
  const vhost = loadServerConfig(makeConfigDir([], { extra: { vhost: VHOST } }).serverFile).vhost;
  const loaded = loadGroupDirectory(groupsDir, {}, new Map(), { vhost });
  assert.deepEqual(
    loaded.groups.map((group) => group.name),
    ['a', 'b'],
  );
  const errors = loaded.errors.map((error) => error.message);
  assert.equal(errors.length, 6, errors.join('\n'));
  assert.match(errors[0]!, /c\.yaml:4: apps\[0\]\.domains\[0\]: domain pool\.test is already claimed by pool web/);
  assert.match(errors[1]!, /d\.yaml:4: apps\[0\]\.domains\[0\]: domain pool\.test is already claimed by pool web/);
  assert.match(errors[2]!, /e\.yaml:4: apps\[0\]\.domains: pool "web" answers to pool\.test \(locations \/\) \(fixed by group a/);
  assert.match(errors[3]!, /f\.yaml:4: apps\[0\]\.type: pool "web" serves http apps \(fixed by group a .*\), this app is https/);
  assert.match(errors[4]!, /g\.yaml:4: apps\[0\]\.type: pool "web" serves http apps/);
  assert.match(errors[5]!, /h\.yaml:4: apps\[0\]\.domains: pool "web" answers to pool\.test/);
  // Within one group too, a pool's name is the pool's: no location of it for an app outside.
  const mixed = groupFile(
    makeConfigDir([]).groupsDir,
    'm',
    `${pooled()}  - { name: admin, local: 127.0.0.1:81, type: http, domains: [pool.test], locations: [/admin] }\n`,
  );
  const own = loadGroupDirectory(dirname(mixed), {}, new Map(), { vhost });
  assert.match(own.errors[0]!.message, /m\.yaml:5: apps\[1\]\.domains\[0\]: pool\.test is already served by pool web in this group/);
  // A server that fixes the pool's port makes it a tcp pool: a web app cannot join it.
  const portPool = loadGroupDirectory(groupsDir, {}, new Map(), { vhost, pools: { web: { balance: 'round_robin', remotePort: 6080 } } });
  assert.match(portPool.errors[0]!.message, /a\.yaml:4: apps\[0\]\.type: pool "web" has a public port \(pools\.web\.remotePort in the server config\)/);
});

test("the server config may fix a vhost pool's names: members must have exactly those", () => {
  const { groupsDir } = makeConfigDir([]);
  groupFile(groupsDir, 'a', '  - { name: web, local: 127.0.0.1:80, type: http, domains: [one.test], pool: web }\n');
  groupFile(groupsDir, 'b', '  - { name: web, local: 127.0.0.1:80, type: http, domains: [two.test, one.test], pool: web }\n');
  groupFile(groupsDir, 'c', '  - { name: web, local: 127.0.0.1:80, remotePort: 6080, pool: web }\n');
  groupFile(groupsDir, 'd', '  - { name: web, local: 127.0.0.1:80, type: https, domains: [one.test, two.test], pool: web }\n');
  const server = loadServerConfig(makeConfigDir([], { extra: { vhost: VHOST, pools: { web: { domains: ['one.test', 'two.test'] } } } }).serverFile);
  const loaded = loadGroupDirectory(groupsDir, {}, new Map(), server);
  assert.deepEqual(
    loaded.groups.map((group) => group.name),
    ['b'],
  );
  const errors = loaded.errors.map((error) => error.message);
  assert.match(errors[0]!, /a\.yaml:4: apps\[0\]\.domains: pool "web" answers to one\.test, two\.test \(pools\.web\.domains in the server config\)/);
  assert.match(errors[1]!, /c\.yaml:4: apps\[0\]\.type: pool "web" answers to names \(pools\.web\.domains in the server config\): a tcp app cannot join it/);
  // The config fixes the names; the first member (b) still fixes the kind.
  assert.match(errors[2]!, /d\.yaml:4: apps\[0\]\.type: pool "web" serves http apps \(fixed by group b/);
});

test('a pooled UDP app is refused at its pool field', () => {
  const { groupsDir } = makeConfigDir([]);
  const file = groupFile(groupsDir, 'u', '  - { name: dns, local: 127.0.0.1:53, type: udp, remotePort: 5353, pool: dns }\n');
  const error = configError(() => loadGroupFile(file, {}));
  assert.match(error.message, /u\.yaml:4: apps\[0\]\.pool: pool applies to tcp, http and https apps, not to type: udp/);
});

test('locations match without regard to case: /Admin and /admin are one claim', () => {
  const { groupsDir } = makeConfigDir([]);
  groupFile(
    groupsDir,
    'w',
    '  - { name: site, local: 127.0.0.1:80, type: http, domains: [a.test], locations: [/Admin] }\n  - { name: admin, local: 127.0.0.1:81, type: http, domains: [a.test], locations: [/admin] }\n',
  );
  const vhost = loadServerConfig(makeConfigDir([], { extra: { vhost: VHOST } }).serverFile).vhost;
  const loaded = loadGroupDirectory(groupsDir, {}, new Map(), { vhost });
  assert.match(loaded.errors[0]?.message ?? 'loaded', /w\.yaml:5: apps\[1\]\.domains\[0\]: a\.test\/admin is already routed to app "site" of this group/);
});
