#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadGroupDirectory, loadServerConfig } from '../config/index.js';
import { CommonServer } from '../server/index.js';
import { fail, say } from './output.js';
import { serverLine } from './server-lines.js';

const USAGE = `usage: commonserver [--config FILE]

  --config FILE   server config (default: config/commonserver.yaml)
  DEBUG=ntp:*     traces every event`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { config: { type: 'string', default: 'config/commonserver.yaml' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    say(USAGE);
    return 0;
  }
  const config = loadServerConfig(values.config!);
  const registry = loadGroupDirectory(config.groupsDir);
  const server = new CommonServer(config);
  server.events$.subscribe((event) => {
    const line = serverLine(event);
    if (line !== undefined) say(line);
  });
  for (const error of registry.errors) say(`group file skipped: ${error.message}`);
  for (const spec of registry.groups) server.registerGroup(spec);
  if (registry.groups.length === 0) say(`warning: no group registered from ${config.groupsDir}`);
  await server.listen();

  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      say(`${signal}: shutting down`);
      void server.close().then(resolve);
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
