#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { AdminServer, GroupRegistry, GroupsHotReload } from '../admin/index.js';
import { ConfigError, loadServerConfig } from '../config/index.js';
import { CommonServer } from '../server/index.js';
import { traceServer } from '../trace/index.js';
import { fail, say } from './output.js';
import { serverLine } from './server-lines.js';

const USAGE = `usage: commonserver [--config FILE] [--no-watch] [--trace FILE]

  --config FILE   server config (default: config/commonserver.yaml)
  --no-watch      do not watch the groups directory (SIGHUP still reloads it)
  --trace FILE    record the session as a Mermaid sequence diagram in FILE
  DEBUG=ntp:*     traces every event`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', default: 'config/commonserver.yaml' },
      'no-watch': { type: 'boolean', default: false },
      trace: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    say(USAGE);
    return 0;
  }
  const config = loadServerConfig(values.config!);
  const server = new CommonServer(config);
  const trace = values.trace === undefined ? undefined : traceServer(server.events$, values.trace);
  server.events$.subscribe((event) => {
    const line = serverLine(event);
    if (line !== undefined) say(line);
  });
  const admin = config.admin === undefined ? undefined : new AdminServer({ server, config: config.admin, groupsDir: config.groupsDir });
  const registry = admin?.registry ?? new GroupRegistry({ server, groupsDir: config.groupsDir });
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
  await server.listen();
  if (admin !== undefined) {
    await admin.listen();
    say(`admin listening on ${admin.url()}${config.admin?.token ? ' (token required)' : ''}`);
  }

  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      say(`${signal}: shutting down`);
      reload.close();
      void Promise.all([server.close(), admin?.close()])
        .then(() => trace?.close())
        .then(() => resolve());
    };
    process.once('SIGINT', () => shutdown('SIGINT'));
    process.once('SIGTERM', () => shutdown('SIGTERM'));
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
