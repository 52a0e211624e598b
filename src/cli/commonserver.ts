#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=134217728 node --initial-old-space-size=64 --max-semi-space-size=2
import { dirname, join } from 'node:path';
import { ConfigError, loadServerConfig, permissionWarning } from '../config/index.js';
import { CommonServer, DirectoryRegistry, GroupsHotReload } from '../server/index.js';
import { commandLogger, currentLogger, parseCommand, splitSubcommand } from './command-line.js';
import { installUnitsCommand } from './install-units.js';
import { logInternalError } from './internal-error-line.js';
import { catchHangups } from './hangups.js';
import { LOG_OPTIONS, LOG_USAGE } from './logger.js';
import { debugNodeFlags } from './node-flags.js';
import { clusterCommand, DEFAULT_SERVER_CONFIG, hostfileCommand, initCommand, prepareTransport, verifyCommand } from './server-commands.js';
import { serverEntry } from './server-lines.js';
import { seconds } from './output.js';
import { onStopSignals } from './stop-signals.js';
import { EXIT } from './exit-codes.js';

const USAGE = `usage: commonserver [--config FILE] [--no-watch] [--trace FILE] [--log-level LEVEL] [--log-format FMT]
       commonserver init DIR | init [--config FILE]
       commonserver verify [--config FILE]
       commonserver cluster import DIR [--config FILE]
       commonserver hostfile GROUP [--config FILE] [--public-host HOST] [--out FILE]
       commonserver install-units [--prefix DIR] [--out DIR]
       commonserver --version

  --config FILE   server config (default: ${DEFAULT_SERVER_CONFIG})
  --no-watch      do not watch the groups directory (SIGHUP still reloads it)
  --trace FILE    record the session as a Mermaid sequence diagram in FILE
${LOG_USAGE}
  init            write a starter config, TLS certificate and sample group file into DIR
                  (or create the TLS material of an existing config) and exit
  verify          check the config, TLS material, group files and ports; start nothing
  cluster import DIR  store every group file of DIR in the cluster's etcd (groups already
                  there are kept); the config's cluster: section says where etcd is
  hostfile GROUP  print the group's file as its host needs it (server:, fingerprint, secret)
  install-units   write the systemd units with ExecStart where npm install -g put the binaries
  DEBUG=ntp:*     traces every event (ntp:net:frames: each frame's type and size)

  commonserver COMMAND --help   a command's own options`;

async function main(): Promise<number> {
  debugNodeFlags('commonserver');
  const hangups$ = catchHangups();
  const { command, args } = splitSubcommand(process.argv.slice(2), ['init', 'verify', 'cluster', 'hostfile', 'install-units']);
  if (command === 'init') return initCommand(args);
  if (command === 'verify') return verifyCommand(args);
  if (command === 'cluster') return clusterCommand(args);
  if (command === 'hostfile') return hostfileCommand(args);
  if (command === 'install-units') return installUnitsCommand(args);
  const parsed = parseCommand(
    'commonserver',
    args,
    {
      config: { type: 'string', default: DEFAULT_SERVER_CONFIG },
      'no-watch': { type: 'boolean', default: false },
      trace: { type: 'string' },
      ...LOG_OPTIONS,
    },
    USAGE,
    { maxPositionals: 1 },
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  const log = commandLogger('commonserver', values, USAGE);
  if (log === undefined) return EXIT.failed;
  const { logger } = log;
  if (positionals.length > 0) {
    logger.fatal('usage', `commonserver: unknown command ${JSON.stringify(positionals[0])}\n\n${USAGE}`);
    return EXIT.failed;
  }
  const config = loadServerConfig(values.config!);
  log.follow(config.logLevel);
  const { transport, fingerprint } = prepareTransport(config, logger);
  /** The cluster node's own lifecycle lines (lease, etcd, registry). */
  const clusterLine = (text: string): void => logger.info('cluster', text);
  // Loaded only for a cluster: a single server never loads etcd's client.
  const cluster =
    config.cluster === undefined
      ? undefined
      : new (await import('../server/cluster/index.js')).ClusterNode({
          config: config.cluster,
          baseDir: dirname(config.file ?? values.config!),
          say: clusterLine,
          handshakeTimeoutMs: config.handshakeTimeoutMs,
        });
  if (cluster !== undefined) {
    clusterLine(
      `cluster: node ${config.cluster!.node} joining etcd ${config.cluster!.etcd.join(',')} (prefix ${config.cluster!.prefix}, lease ${config.cluster!.leaseTtlMs / 1000}s)`,
    );
    await cluster.join((reason, delayMs) => logger.warn('cluster', `cluster: no etcd lease yet (${reason}); retrying in ${seconds(delayMs)}`));
    clusterLine(
      `cluster: the registry is etcd ${config.cluster!.prefix}/groups/ (the groups directory is not read; store it once with: commonserver cluster import DIR)`,
    );
  }
  const server = new CommonServer({ ...config, transport, ...(cluster ? { activationGate: cluster.claims } : {}) });
  // Loaded only with --trace, as the admin server only when configured: memory at rest.
  server.internalErrors.logTo(logInternalError(logger, 'ntp_internal_errors_total'));
  const trace =
    values.trace === undefined ? undefined : (await import('../trace/index.js')).traceServer(server.events$, values.trace, server.internalErrors.report);
  server.observe('lines', (event) => logger.log(serverEntry(event)));
  const registry = cluster !== undefined ? await cluster.attach(server) : new DirectoryRegistry({ server, groupsDir: config.groupsDir });
  // Loaded only when asked for: the admin server brings prom-client and its own state.
  const admin =
    config.admin === undefined
      ? undefined
      : new (await import('../admin/admin-server.js')).AdminServer({
          server,
          config: config.admin,
          registry,
          ...(cluster ? { cluster: cluster.claims } : {}),
          ...(fingerprint === undefined ? {} : { fingerprint }),
          // Beside the groups directory, not in it: the registry reads every file there.
          historyFile: join(dirname(config.groupsDir), 'traffic-history.json'),
        });
  // Ready for SIGHUP before anything is announced: its default action would end the process.
  // A cluster's registry follows etcd's watch instead of a directory.
  const reload =
    cluster !== undefined
      ? undefined
      : new GroupsHotReload(registry, config.groupsDir, {
          watch: !values['no-watch'],
          onError: (error) => logger.error('reload-failed', `groups reload failed: ${error.message}`),
        });
  hangups$.subscribe(() => {
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
    logger.info('admin-listening', `admin listening on ${admin.url()}${config.admin?.token ? ' (token required)' : ''}`, {
      url: admin.url(),
      tokenRequired: config.admin?.token !== undefined,
    });
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
  return EXIT.ok;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) currentLogger().fatal('config-error', `commonserver: config error: ${error.message}`, error.where());
    else currentLogger().fatal('failed', `commonserver: ${(error as Error).message}`);
    process.exit(EXIT.failed);
  },
);
