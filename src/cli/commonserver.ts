#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadServerConfig, permissionWarning, type ServerConfig } from '../config/index.js';
import { CommonServer, DirectoryRegistry, GroupsHotReload, loadServerTransport } from '../server/index.js';
import { traceServer } from '../trace/index.js';
import { fail, say } from './output.js';
import { serverLine } from './server-lines.js';
import { onStopSignals } from './stop-signals.js';

const USAGE = `usage: commonserver [--config FILE] [--no-watch] [--trace FILE]
       commonserver init [--config FILE]

  --config FILE   server config (default: config/commonserver.yaml)
  --no-watch      do not watch the groups directory (SIGHUP still reloads it)
  --trace FILE    record the session as a Mermaid sequence diagram in FILE
  init            create the TLS key and self-signed certificate (if missing), print the
                  fingerprint for clients to pin, and exit
  DEBUG=ntp:*     traces every event`;

/** Loads (or creates) the TLS material and says what clients need to know about it. */
function prepareTransport(config: ServerConfig): ReturnType<typeof loadServerTransport> {
  const loaded = loadServerTransport(config.tls);
  if (config.tls.plaintext) {
    say('warning: plaintext: true — the common port is NOT encrypted; secrets stay off the wire, but traffic and app names do not');
    return loaded;
  }
  if (loaded.created) say(`TLS certificate created: ${config.tls.certFile} (key ${config.tls.keyFile})`);
  say(`TLS on; certificate fingerprint ${loaded.fingerprint} (clients: serverFingerprint: ${loaded.fingerprint})`);
  if (config.tls.clientCaFile) say(`mutual TLS: clients need a certificate from ${config.tls.clientCaFile}`);
  const warning = permissionWarning(config.tls.keyFile, 'the TLS private key');
  if (warning) say(`warning: ${warning}`);
  return loaded;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      config: { type: 'string', default: 'config/commonserver.yaml' },
      'no-watch': { type: 'boolean', default: false },
      trace: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    say(USAGE);
    return 0;
  }
  if (positionals.length > 1 || (positionals.length === 1 && positionals[0] !== 'init')) {
    fail(`commonserver: unknown command ${JSON.stringify(positionals.join(' '))}\n\n${USAGE}`);
    return 2;
  }
  const config = loadServerConfig(values.config!);
  if (positionals[0] === 'init') {
    if (config.tls.plaintext) {
      fail(`commonserver: ${values.config} says plaintext: true; remove it to use TLS`);
      return 2;
    }
    prepareTransport(config);
    return 0;
  }
  const { transport } = prepareTransport(config);
  const server = new CommonServer({ ...config, transport });
  const trace = values.trace === undefined ? undefined : traceServer(server.events$, values.trace);
  server.events$.subscribe((event) => {
    const line = serverLine(event);
    if (line !== undefined) say(line);
  });
  const registry = new DirectoryRegistry({ server, groupsDir: config.groupsDir });
  // Loaded only when asked for: the admin server brings prom-client and its own state.
  const admin = config.admin === undefined ? undefined : new (await import('../admin/admin-server.js')).AdminServer({ server, config: config.admin, registry });
  // Ready for SIGHUP before anything is announced: its default action would end the process.
  const reload = new GroupsHotReload(registry, config.groupsDir, {
    watch: !values['no-watch'],
    onError: (error) => say(`groups reload failed: ${error.message}`),
  });
  process.on('SIGHUP', () => {
    say('SIGHUP: reloading the groups directory');
    reload.reload('SIGHUP');
  });
  await registry.sync();
  if (server.readyGroup.size === 0) say(`warning: no group registered from ${config.groupsDir}`);
  for (const spec of server.readyGroup.values()) {
    const warning = spec.secretInFile ? permissionWarning(spec.file, `the secret of group ${spec.name}`) : undefined;
    if (warning) say(`warning: ${warning}`);
  }
  await server.listen();
  if (admin !== undefined) {
    await admin.listen();
    say(`admin listening on ${admin.url()}${config.admin?.token ? ' (token required)' : ''}`);
  }

  // Live users are reset by server.close(); the bound covers whatever else lingers.
  await new Promise<void>((resolve) => {
    onStopSignals((signal) => {
      say(`${signal}: shutting down`);
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
    if (error instanceof ConfigError) fail(`commonserver: config error: ${error.message}`);
    else fail(`commonserver: ${(error as Error).message}`);
    process.exit(2);
  },
);
