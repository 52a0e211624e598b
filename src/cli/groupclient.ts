#!/usr/bin/env node
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { clientTransport, DEFAULT_MAX_POOLED_WORK_CONNS, GroupClient, LoginRejectedError, TakenOverError } from '../client/index.js';
import { defaultClientId } from '../client/client-id.js';
import { filter, merge, Subject } from 'rxjs';
import { ConfigError, formatHostPort, type GroupSpec, type HostPort, type LogLevel, loadGroupFile, MAX_POOLED_WORK_CONNS_LIMIT, parseCount, parseHostPort, permissionWarning, watchDirectory } from '../config/index.js';
import { ServerTrustError } from '../net/index.js';
import { traceClient } from '../trace/index.js';
import { clientEntry } from './client-lines.js';
import { Logger, LOG_OPTIONS, LOG_USAGE, parseLogOptions } from './logger.js';
import { onStopSignals } from './stop-signals.js';

const USAGE = `usage: groupclient --group NAME [--server HOST:PORT] [--groups DIR]
       groupclient --config FILE [--server HOST:PORT]

  --group NAME       the group to serve; reads <groups>/<NAME>.yaml
  --groups DIR       directory of group files (default: config/groups)
  --config FILE      a group file, named directly
  --server HOST:PORT the commonserver (default: the file's "server"/"servers", else 127.0.0.1:7000);
                     a cluster's nodes as a comma-separated list, tried in turn
  --client-id ID     this agent's stable id (default: derived from the host and group)
  --keep-retrying    keep retrying when the server rejects the login
  --server-fingerprint sha256:...  pin the server's certificate (as commonserver prints it);
                     with several servers, one for all or one per server, comma-separated
  --plaintext        no TLS (only if the server says plaintext: true)
  --trace FILE       record the session as a Mermaid sequence diagram in FILE
  --max-pooled-work-conns N  pooled work conns the server may make this client hold,
                     being opened or idle (default ${DEFAULT_MAX_POOLED_WORK_CONNS}); more asked for are not opened
${LOG_USAGE}
  DEBUG=ntp:*        traces every event (ntp:net:frames: each frame's type and size)`;

/** Replaced once the command line is read: until then (and for a bad command line) plain text. */
let logger = new Logger();

/**
 * Exit codes: 0 stopped on a signal, 2 bad usage or config, 3 rejected by the server, taken
 * over, or the server could not be verified (wrong fingerprint, untrusted certificate).
 */
async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      group: { type: 'string' },
      groups: { type: 'string', default: 'config/groups' },
      config: { type: 'string' },
      server: { type: 'string' },
      'client-id': { type: 'string' },
      'keep-retrying': { type: 'boolean', default: false },
      'server-fingerprint': { type: 'string' },
      plaintext: { type: 'boolean', default: false },
      trace: { type: 'string' },
      'max-pooled-work-conns': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      ...LOG_OPTIONS,
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const logOptions = parseLogOptions(values);
  if (!logOptions.ok) {
    logger.fatal('usage', `groupclient: ${logOptions.problem}\n\n${USAGE}`);
    return 2;
  }
  logger = new Logger(logOptions.value);
  // --log-level wins over the group file's logLevel:, now and at every reload.
  const levelOf = (spec: GroupSpec): LogLevel => logOptions.value.level ?? spec.logLevel ?? 'info';
  if (values.group === undefined && values.config === undefined) {
    logger.fatal('usage', `groupclient: name a group with --group NAME (or a file with --config FILE)\n\n${USAGE}`);
    return 2;
  }
  const file = values.config ?? join(values.groups!, `${values.group}.yaml`);
  const spec = loadGroupFile(file);
  logger.level = levelOf(spec);
  if (values.group !== undefined && spec.name !== values.group) {
    logger.fatal('usage', `groupclient: ${file} defines group "${spec.name}", not "${values.group}"`);
    return 2;
  }
  let servers: { address: HostPort; fingerprint?: string }[] = spec.servers ? [...spec.servers] : [{ address: spec.server ?? { host: '127.0.0.1', port: 7000 } }];
  if (values.server !== undefined) {
    servers = [];
    for (const item of values.server.split(',')) {
      const parsed = parseHostPort(item);
      if (!parsed.ok) {
        logger.fatal('usage', `groupclient: --server: ${parsed.problem}`);
        return 2;
      }
      servers.push({ address: parsed.value });
    }
  }
  const fingerprints = values['server-fingerprint']?.split(',');
  if (fingerprints !== undefined && fingerprints.length !== 1 && fingerprints.length !== servers.length) {
    logger.fatal('usage', `groupclient: --server-fingerprint: give one fingerprint for all servers, or one per server (${servers.length})`);
    return 2;
  }
  const server = servers[0]!.address;

  let maxPooledWorkConns = DEFAULT_MAX_POOLED_WORK_CONNS;
  if (values['max-pooled-work-conns'] !== undefined) {
    const parsed = parseCount(values['max-pooled-work-conns'], { min: 0, max: MAX_POOLED_WORK_CONNS_LIMIT });
    if (!parsed.ok) {
      logger.fatal('usage', `groupclient: --max-pooled-work-conns: ${parsed.problem}`);
      return 2;
    }
    maxPooledWorkConns = parsed.value;
  }

  const warning = spec.secretInFile ? permissionWarning(file, `the secret of group ${spec.name}`) : undefined;
  if (warning) logger.warn('file-permissions', `warning: ${warning}`, { file });
  const endpoints = servers.map(({ address, fingerprint }, i) => {
    const pinned = fingerprints?.[fingerprints.length === 1 ? 0 : i] ?? fingerprint;
    return { server: address, transport: clientTransport(spec, { ...(pinned !== undefined ? { fingerprint: pinned } : {}), plaintext: values.plaintext! }) };
  });
  const transport = endpoints[0]!.transport;
  if (transport.kind === 'plain') logger.warn('plaintext', 'warning: plaintext: the connection to the commonserver is NOT encrypted');

  const client = new GroupClient({
    spec,
    server,
    transport,
    ...(endpoints.length > 1 ? { servers: endpoints } : {}),
    clientId: values['client-id'] ?? defaultClientId(spec.name),
    keepRetrying: values['keep-retrying']!,
    maxPooledWorkConns,
  });
  const trace = values.trace === undefined ? undefined : traceClient(client.events$, spec, values.trace);
  client.events$.subscribe((event) => logger.log(clientEntry(spec.name, event)));
  // client.stop() resets every live relay: their users see a reset, never a clean end.
  onStopSignals(logger, (signal) => {
    logger.info('stopping', `${signal}: disconnecting from ${servers.map(({ address }) => formatHostPort(address)).join(', ')}`, { signal });
    client.stop();
  });

  // Hot reload: an edited group file (or SIGHUP) changes local targets without dropping other apps.
  const reloadRequests = new Subject<void>();
  process.on('SIGHUP', () => reloadRequests.next());
  const reloads = merge(reloadRequests, watchDirectory(dirname(file)).pipe(filter((names) => names.has(basename(file)) || names.has('')))).subscribe(() => {
    try {
      const reloaded = loadGroupFile(file);
      logger.level = levelOf(reloaded);
      client.updateSpec(reloaded);
    } catch (error) {
      logger.error('reload-failed', `group file not reloaded, the previous version stays: ${(error as Error).message}`);
    }
  });
  try {
    return await serve(client);
  } finally {
    reloads.unsubscribe();
    await trace?.close();
  }
}

async function serve(client: GroupClient): Promise<number> {
  try {
    await client.run();
    return 0;
  } catch (error) {
    if (error instanceof ServerTrustError) {
      logger.fatal('server-not-verified', `groupclient: cannot verify the commonserver: ${error.message}`);
      return 3;
    }
    // The reason is already on stdout (login-rejected and stopped lines): exit 3 says the rest.
    if (error instanceof LoginRejectedError || error instanceof TakenOverError) return 3;
    throw error;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) logger.fatal('config-error', `groupclient: config error: ${error.message}`);
    else logger.fatal('failed', `groupclient: ${(error as Error).message}`);
    process.exit(2);
  },
);
