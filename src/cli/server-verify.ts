import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import {
  appDomains,
  appPublicRefusal,
  describeSecretSource,
  Findings,
  formatHostPort,
  loadGroupDirectory,
  loadServerConfig,
  permissionWarning,
  portLabel,
  publicPolicyOf,
  YamlFile,
  type AppSpec,
  type GroupSpec,
  type HostPort,
  type ServerConfig,
} from '../config/index.js';
import { groupRefusal, loadServerTransport } from '../server/index.js';

/** A certificate that ends sooner than this is worth a warning: clients pin it. */
const CERTIFICATE_WARN_DAYS = 30;

/**
 * `commonserver verify`: checks the server config, its TLS material, every group file of its
 * groups directory against the policy, and whether the common and admin ports can be bound,
 * without starting anything. Every finding is collected: one problem never hides the next.
 */
export async function verifyServer(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Findings> {
  const findings = new Findings();
  const config = findings.attempt('server config', () => loadServerConfig(file, env));
  if (config !== undefined) {
    findings.ok(
      'server config',
      `${file}: common port ${formatHostPort(config.bind)}, groups ${config.groupsDir}${config.admin ? `, admin ${formatHostPort(config.admin.bind)}` : ''}`,
    );
    checkTls(findings, config);
  }
  if (config?.cluster !== undefined) {
    // A cluster node reads its groups from etcd, which verify does not contact.
    const { node, etcd, prefix } = config.cluster;
    findings.ok('cluster', `node ${node}; the registry is etcd ${etcd.join(',')} (prefix ${prefix}), not checked here, and the groups directory is not read`);
  } else {
    // An invalid server config still names its groups directory most of the time: check it too.
    const groupsDir = config?.groupsDir ?? groupsDirNamedBy(file);
    if (groupsDir !== undefined) checkGroups(findings, groupsDir, config, env);
  }
  if (config !== undefined) {
    await checkBindable(findings, 'common port', config.bind);
    if (config.admin) await checkBindable(findings, 'admin port', config.admin.bind);
  }
  return findings;
}

function checkTls(findings: Findings, config: ServerConfig): void {
  const tls = config.tls;
  if (tls.plaintext) {
    findings.warning('TLS', 'plaintext: true: the common port is not encrypted (traffic and app names travel in clear)');
    return;
  }
  if (!existsSync(tls.certFile) && !existsSync(tls.keyFile)) {
    findings.warning(
      'TLS',
      `${tls.certFile} and its key do not exist yet: they are created at first start (or now by commonserver init --config ${config.file}); clients pin the fingerprint it prints`,
    );
    return;
  }
  const loaded = findings.attempt('TLS', () => loadServerTransport(tls, { create: false }));
  if (loaded === undefined || loaded.transport.kind !== 'tls') return;
  const { cert, key } = loaded.transport;
  try {
    // Throws when the key is not the certificate's: the server would fail at its first handshake.
    createSecureContext({ cert, key });
  } catch (error) {
    findings.problem('TLS', `${tls.keyFile} does not go with ${tls.certFile}: ${(error as Error).message}`);
    return;
  }
  const daysLeft = (Date.parse(new X509Certificate(cert).validTo) - Date.now()) / 86_400_000;
  if (daysLeft < 0) findings.problem('TLS', `${tls.certFile} expired on ${new X509Certificate(cert).validTo}`);
  else if (daysLeft < CERTIFICATE_WARN_DAYS) findings.warning('TLS', `${tls.certFile} expires in ${Math.floor(daysLeft)} days`);
  findings.ok('TLS', `${tls.certFile}: fingerprint ${loaded.fingerprint} (clients pin it as serverFingerprint)`);
  const keyWarning = permissionWarning(tls.keyFile, 'the TLS private key');
  if (keyWarning) findings.warning('TLS', keyWarning);
}

function checkGroups(findings: Findings, groupsDir: string, config: ServerConfig | undefined, env: NodeJS.ProcessEnv): void {
  const loaded = findings.attempt('groups', () => loadGroupDirectory(groupsDir, env, new Map(), config));
  if (loaded === undefined) return;
  for (const error of loaded.errors) findings.problem('group file', error.message);
  if (loaded.groups.length === 0 && loaded.errors.length === 0) findings.warning('groups', `no group file in ${groupsDir}: no host can log in`);
  for (const spec of loaded.groups) {
    const subject = `group ${spec.name}`;
    const before = findings.count('problem');
    if (config !== undefined) checkPolicy(findings, subject, spec, config);
    if (findings.count('problem') === before) {
      const apps = spec.apps.map((app) => describePublicSide(app, config?.vhost?.subdomainHost)).join(', ');
      findings.ok(subject, `${spec.file}: ${describeSecretSource(spec)}; ${apps}`);
    }
    const secretWarning = spec.secretInFile ? permissionWarning(spec.file, `the secret of group ${spec.name}`) : undefined;
    if (secretWarning) findings.warning(subject, secretWarning);
  }
}

function checkPolicy(findings: Findings, subject: string, spec: GroupSpec, config: ServerConfig): void {
  // Whether other groups are active is only known at login: only the group's own size is checked.
  const refusal = groupRefusal({ ...config.policy, maxGroups: undefined }, spec, 0, false);
  if (refusal) findings.problem(subject, `${spec.file}: ${refusal}`);
  const policy = publicPolicyOf(config);
  spec.apps.forEach((app, index) => {
    const refused = appPublicRefusal(policy, spec.name, app, index);
    if (refused) findings.problem(subject, `${spec.file}: ${refused.problem}`);
  });
}

/** `web → :6080`, `dns → :53/udp`, `wiki → http wiki.example.com` (a vhost app has no port of its own). */
function describePublicSide(app: AppSpec, subdomainHost: string | undefined): string {
  if (app.vhost === undefined) return `${app.name} → :${portLabel(app)}`;
  return `${app.name} → ${app.vhost.type} ${appDomains(app, 0, subdomainHost)
    .map(({ domain }) => domain)
    .join(' ')}`;
}

/** Binds `address` for a moment and lets it go: the one way to know the server could. */
async function checkBindable(findings: Findings, subject: string, address: HostPort): Promise<void> {
  const where = formatHostPort(address);
  if (address.port === 0) {
    findings.ok(subject, `${where}: the system chooses a free port at start`);
    return;
  }
  const code = await new Promise<string | undefined>((done) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => server.close(() => done(undefined)));
  });
  if (code === undefined) findings.ok(subject, `${where} can be bound`);
  else if (code === 'EADDRINUSE') findings.warning(subject, `${where} is in use now (EADDRINUSE): another process holds it (a commonserver already running?)`);
  else if (code === 'EACCES')
    findings.warning(
      subject,
      `${where} cannot be bound by this user (EACCES): ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit grants it)`,
    );
  else findings.problem(subject, `${where} cannot be bound: ${code}${code === 'EADDRNOTAVAIL' ? ' (no interface of this host has that address)' : ''}`);
}

/** The groups directory an unloadable server config names, when its YAML can be read at all. */
function groupsDirNamedBy(file: string): string | undefined {
  try {
    const root = YamlFile.read(file).root() as { groups?: unknown } | null;
    const groups = root?.groups ?? './groups';
    return typeof groups === 'string' ? resolve(dirname(file), groups) : undefined;
  } catch {
    return undefined;
  }
}
