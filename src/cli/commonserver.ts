#!/usr/bin/env node
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadServerConfig, permissionWarning, type ServerConfig } from '../config/index.js';
import { CommonServer, DirectoryRegistry, GroupsHotReload, loadServerTransport } from '../server/index.js';
import { traceServer } from '../trace/index.js';
import { Logger, LOG_OPTIONS, LOG_USAGE, parseLogOptions } from './logger.js';
import { serverEntry } from './server-lines.js';
import { onStopSignals } from './stop-signals.js';

const USAGE = `usage: commonserver [--config FILE] [--no-watch] [--trace FILE] [--log-level LEVEL] [--log-format FMT]
       commonserver init [--config FILE]
       commonserver cluster import DIR [--config FILE]

  --config FILE   server config (default: config/commonserver.yaml)
  --no-watch      do not watch the groups directory (SIGHUP still reloads it)
  --trace FILE    record the session as a Mermaid sequence diagram in FILE
${LOG_USAGE}
  init            create the TLS key and self-signed certificate (if missing), print the
                  fingerprint for clients to pin, and exit
  cluster import DIR  store every group file of DIR in the cluster's etcd (groups already
                  there are kept); the config's cluster: section says where etcd is
  DEBUG=ntp:*     traces every event (ntp:net:frames: each frame's type and size)`;

/** Replaced once the command line is read: until then (and for a bad command line) plain text. */
let logger = new Logger();

/** Loads (or creates) the TLS material and says what clients need to know about it. */
function prepareTransport(config: ServerConfig): ReturnType<typeof loadServerTransport> {
  const loaded = loadServerTransport(config.tls);
  if (config.tls.plaintext) {
    logger.warn('plaintext', 'warning: plaintext: true — the common port is NOT encrypted; secrets stay off the wire, but traffic and app names do not');
    return loaded;
  }
  if (loaded.created) logger.info('certificate-created', `TLS certificate created: ${config.tls.certFile} (key ${config.tls.keyFile})`, { certFile: config.tls.certFile, keyFile: config.tls.keyFile });
  logger.info('tls-on', `TLS on; certificate fingerprint ${loaded.fingerprint} (clients: serverFingerprint: ${loaded.fingerprint})`, { fingerprint: loaded.fingerprint });
  if (config.tls.clientCaFile) logger.info('mutual-tls', `mutual TLS: clients need a certificate from ${config.tls.clientCaFile}`, { clientCaFile: config.tls.clientCaFile });
  const warning = permissionWarning(config.tls.keyFile, 'the TLS private key');
  if (warning) logger.warn('file-permissions', `warning: ${warning}`, { file: config.tls.keyFile });
  return loaded;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      config: { type: 'string', default: 'config/commonserver.yaml' },
      'no-watch': { type: 'boolean', default: false },
      trace: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      ...LOG_OPTIONS,
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const logOptions = parseLogOptions(values);
  if (!logOptions.ok) {
    logger.fatal('usage', `commonserver: ${logOptions.problem}\n\n${USAGE}`);
    return 2;
  }
  logger = new Logger(logOptions.value);
  const command = positionals.join(' ');
  const importing = positionals.length === 3 && positionals[0] === 'cluster' && positionals[1] === 'import';
  if (!importing && (positionals.length > 1 || (positionals.length === 1 && command !== 'init'))) {
    logger.fatal('usage', `commonserver: unknown command ${JSON.stringify(positionals.join(' '))}\n\n${USAGE}`);
    return 2;
  }
  const config = loadServerConfig(values.config!);
  logger.level = logOptions.value.level ?? config.logLevel ?? 'info';
  if (importing) return importIntoCluster(config, values.config!, positionals[2]!);
  if (positionals[0] === 'init') {
    if (config.tls.plaintext) {
      logger.fatal('usage', `commonserver: ${values.config} says plaintext: true; remove it to use TLS`);
      return 2;
    }
    prepareTransport(config);
    return 0;
  }
  const { transport } = prepareTransport(config);
  // Loaded only for a cluster: a single server never loads etcd's client.
  const cluster = config.cluster === undefined ? undefined : new (await import('../server/cluster/index.js')).ClusterNode({ config: config.cluster, baseDir: dirname(config.file ?? values.config!), say: clusterLine });
  if (cluster !== undefined) {
    clusterLine(`cluster: node ${config.cluster!.node} joining etcd ${config.cluster!.etcd.join(',')} (prefix ${config.cluster!.prefix}, lease ${config.cluster!.leaseTtlMs / 1000}s)`);
    await cluster.join((reason) => logger.warn('cluster', `cluster: no etcd lease yet (${reason}); retrying`));
    clusterLine(`cluster: the registry is etcd ${config.cluster!.prefix}/groups/ (the groups directory is not read; store it once with: commonserver cluster import DIR)`);
  }
  const server = new CommonServer({ ...config, transport, ...(cluster ? { activationGate: cluster.claims } : {}) });
  const trace = values.trace === undefined ? undefined : traceServer(server.events$, values.trace);
  server.events$.subscribe((event) => logger.log(serverEntry(event)));
  const registry = cluster !== undefined ? await cluster.attach(server) : new DirectoryRegistry({ server, groupsDir: config.groupsDir });
  // Loaded only when asked for: the admin server brings prom-client and its own state.
  const admin =
    config.admin === undefined ? undefined : new (await import('../admin/admin-server.js')).AdminServer({ server, config: config.admin, registry, ...(cluster ? { cluster: cluster.claims } : {}) });
  // Ready for SIGHUP before anything is announced: its default action would end the process.
  // A cluster's registry follows etcd's watch instead of a directory.
  const reload =
    cluster !== undefined
      ? undefined
      : new GroupsHotReload(registry, config.groupsDir, {
          watch: !values['no-watch'],
          onError: (error) => logger.error('reload-failed', `groups reload failed: ${error.message}`),
        });
  process.on('SIGHUP', () => {
    logger.info('reload', `SIGHUP: reloading the registry (${registry.source})`, { signal: 'SIGHUP' });
    if (reload !== undefined) reload.reload('SIGHUP');
    else void registry.sync();
  });
  await registry.sync();
  if (server.readyGroup.size === 0) logger.warn('no-groups', `warning: no group registered from ${registry.source}`, { source: registry.source });
  for (const spec of server.readyGroup.values()) {
    const warning = spec.secretInFile ? permissionWarning(spec.file, `the secret of group ${spec.name}`) : undefined;
    if (warning) logger.warn('file-permissions', `warning: ${warning}`, { file: spec.file });
  }
  const { port } = await server.listen();
  await cluster?.announce(port);
  if (admin !== undefined) {
    await admin.listen();
    logger.info('admin-listening', `admin listening on ${admin.url()}${config.admin?.token ? ' (token required)' : ''}`, { url: admin.url(), tokenRequired: config.admin?.token !== undefined });
  }

  // Live users are reset by server.close(); the bound covers whatever else lingers.
  await new Promise<void>((resolve) => {
    onStopSignals(logger, (signal) => {
      logger.info('stopping', `${signal}: shutting down`, { signal });
      reload?.close();
      // The server first (its users reset, its claims released), then the lease (what is left is freed at once).
      void Promise.all([server.close(), admin?.close()])
        .then(() => cluster?.close())
        .then(() => trace?.close())
        .then(() => resolve());
    });
  });
  return 0;
}

/** The cluster node's own lifecycle lines (lease, etcd, registry). */
function clusterLine(text: string): void {
  logger.info('cluster', text);
}

async function importIntoCluster(config: ServerConfig, configFile: string, dir: string): Promise<number> {
  if (config.cluster === undefined) {
    logger.fatal('usage', `commonserver: ${configFile} has no cluster: section; cluster import needs to know where etcd is`);
    return 2;
  }
  const { importGroupDirectory } = await import('../server/cluster/index.js');
  const result = await importGroupDirectory(config.cluster, dir);
  for (const problem of result.refused) logger.error('import-refused', `not imported: ${problem}`);
  logger.info('imported', `imported ${result.imported.length} group(s) into etcd ${config.cluster.prefix}/groups/${result.kept.length ? `; ${result.kept.length} already there, kept: ${result.kept.join(', ')}` : ''}`);
  return result.refused.length > 0 ? 2 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) logger.fatal('config-error', `commonserver: config error: ${error.message}`);
    else logger.fatal('failed', `commonserver: ${(error as Error).message}`);
    process.exit(2);
  },
);
