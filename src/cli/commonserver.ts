#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { GroupsHotReload } from '../admin/hot-reload.js';
import { GroupRegistry } from '../admin/registry.js';
import { ConfigError, loadServerConfig, permissionWarning, type ServerConfig } from '../config/index.js';
import { CommonServer, loadServerTransport } from '../server/index.js';
import { traceServer } from '../trace/index.js';
import { Logger, LOG_OPTIONS, LOG_USAGE, parseLogOptions } from './logger.js';
import { serverEntry } from './server-lines.js';
import { onStopSignals } from './stop-signals.js';

const USAGE = `usage: commonserver [--config FILE] [--no-watch] [--trace FILE] [--log-level LEVEL] [--log-format FMT]
       commonserver init [--config FILE]

  --config FILE   server config (default: config/commonserver.yaml)
  --no-watch      do not watch the groups directory (SIGHUP still reloads it)
  --trace FILE    record the session as a Mermaid sequence diagram in FILE
${LOG_USAGE}
  init            create the TLS key and self-signed certificate (if missing), print the
                  fingerprint for clients to pin, and exit
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
  if (positionals.length > 1 || (positionals.length === 1 && positionals[0] !== 'init')) {
    logger.fatal('usage', `commonserver: unknown command ${JSON.stringify(positionals.join(' '))}\n\n${USAGE}`);
    return 2;
  }
  const config = loadServerConfig(values.config!);
  logger.level = logOptions.value.level ?? config.logLevel ?? 'info';
  if (positionals[0] === 'init') {
    if (config.tls.plaintext) {
      logger.fatal('usage', `commonserver: ${values.config} says plaintext: true; remove it to use TLS`);
      return 2;
    }
    prepareTransport(config);
    return 0;
  }
  const { transport } = prepareTransport(config);
  const server = new CommonServer({ ...config, transport });
  const trace = values.trace === undefined ? undefined : traceServer(server.events$, values.trace);
  server.events$.subscribe((event) => logger.log(serverEntry(event)));
  // Loaded only when asked for: the admin server brings prom-client and its own state.
  const admin =
    config.admin === undefined
      ? undefined
      : new (await import('../admin/admin-server.js')).AdminServer({ server, config: config.admin, groupsDir: config.groupsDir });
  const registry = admin?.registry ?? new GroupRegistry({ server, groupsDir: config.groupsDir });
  // Ready for SIGHUP before anything is announced: its default action would end the process.
  const reload = new GroupsHotReload(registry, config.groupsDir, {
    watch: !values['no-watch'],
    onError: (error) => logger.error('reload-failed', `groups reload failed: ${error.message}`),
  });
  process.on('SIGHUP', () => {
    logger.info('reload', 'SIGHUP: reloading the groups directory', { signal: 'SIGHUP' });
    reload.reload('SIGHUP');
  });
  await registry.sync();
  if (server.readyGroup.size === 0) logger.warn('no-groups', `warning: no group registered from ${config.groupsDir}`, { groupsDir: config.groupsDir });
  for (const spec of server.readyGroup.values()) {
    const warning = spec.secretInFile ? permissionWarning(spec.file, `the secret of group ${spec.name}`) : undefined;
    if (warning) logger.warn('file-permissions', `warning: ${warning}`, { file: spec.file });
  }
  await server.listen();
  if (admin !== undefined) {
    await admin.listen();
    logger.info('admin-listening', `admin listening on ${admin.url()}${config.admin?.token ? ' (token required)' : ''}`, { url: admin.url(), tokenRequired: config.admin?.token !== undefined });
  }

  // Live users are reset by server.close(); the bound covers whatever else lingers.
  await new Promise<void>((resolve) => {
    onStopSignals(logger, (signal) => {
      logger.info('stopping', `${signal}: shutting down`, { signal });
      reload.close();
      void Promise.all([server.close(), admin?.close()])
        .then(() => trace?.close())
        .then(() => resolve());
    });
  });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) logger.fatal('config-error', `commonserver: config error: ${error.message}`);
    else logger.fatal('failed', `commonserver: ${(error as Error).message}`);
    process.exit(2);
  },
);
