#!/usr/bin/env node
import { GroupsHotReload } from '../admin/hot-reload.js';
import { GroupRegistry } from '../admin/registry.js';
import { ConfigError, loadServerConfig, permissionWarning } from '../config/index.js';
import { CommonServer } from '../server/index.js';
import { traceServer } from '../trace/index.js';
import { parseCommand, splitSubcommand } from './command-line.js';
import { catchHangups } from './hangups.js';
import { fail, say } from './output.js';
import { DEFAULT_SERVER_CONFIG, initCommand, prepareTransport, verifyCommand } from './server-commands.js';
import { serverLine } from './server-lines.js';
import { onStopSignals } from './stop-signals.js';

const USAGE = `usage: commonserver [--config FILE] [--no-watch] [--trace FILE]
       commonserver init DIR | init [--config FILE]
       commonserver verify [--config FILE]
       commonserver --version

  --config FILE   server config (default: ${DEFAULT_SERVER_CONFIG})
  --no-watch      do not watch the groups directory (SIGHUP still reloads it)
  --trace FILE    record the session as a Mermaid sequence diagram in FILE
  init            write a starter config, TLS certificate and sample group file into DIR
                  (or create the TLS material of an existing config) and exit
  verify          check the config, TLS material, group files and ports; start nothing
  DEBUG=ntp:*     traces every event

  commonserver COMMAND --help   a command's own options`;

async function main(): Promise<number> {
  const hangups$ = catchHangups();
  const { command, args } = splitSubcommand(process.argv.slice(2), ['init', 'verify']);
  if (command === 'init') return initCommand(args);
  if (command === 'verify') return verifyCommand(args);
  const parsed = parseCommand(
    'commonserver',
    args,
    { config: { type: 'string', default: DEFAULT_SERVER_CONFIG }, 'no-watch': { type: 'boolean', default: false }, trace: { type: 'string' } },
    USAGE,
    { maxPositionals: 1 },
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  if (positionals.length > 0) {
    fail(`commonserver: unknown command ${JSON.stringify(positionals[0])}\n\n${USAGE}`);
    return 2;
  }
  const config = loadServerConfig(values.config!);
  const { transport } = prepareTransport(config);
  const server = new CommonServer({ ...config, transport });
  const trace = values.trace === undefined ? undefined : traceServer(server.events$, values.trace);
  server.events$.subscribe((event) => {
    const line = serverLine(event);
    if (line !== undefined) say(line);
  });
  // Loaded only when asked for: the admin server brings prom-client and its own state.
  const admin =
    config.admin === undefined
      ? undefined
      : new (await import('../admin/admin-server.js')).AdminServer({ server, config: config.admin, groupsDir: config.groupsDir });
  const registry = admin?.registry ?? new GroupRegistry({ server, groupsDir: config.groupsDir });
  // Ready for SIGHUP before anything is announced: its default action would end the process.
  const reload = new GroupsHotReload(registry, config.groupsDir, {
    watch: !values['no-watch'],
    onError: (error) => say(`groups reload failed: ${error.message}`),
  });
  hangups$.subscribe(() => {
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
