#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=134217728 node --initial-old-space-size=64 --max-semi-space-size=2
import { existsSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import {
  clientEndpoints,
  ClientStatus,
  ClusterRefusedError,
  ControlSocket,
  defaultControlSocketPath,
  DEFAULT_MAX_POOLED_WORK_CONNS,
  describeRoute,
  GroupClient,
  GroupFileReload,
  LoginRejectedError,
  ServerTrustError,
  TakenOverError,
  verifyGroupClient,
} from '../client/index.js';
import { defaultClientId } from '../client/client-id.js';
import { ConfigError, formatHostPort, loadGroupFile, parseClientCounts, parseGroupFile, permissionWarning, YamlFile, type GroupSpec } from '../config/index.js';
import { MUX_LIMITS_DEFAULTS } from '../net/index.js';
import { CONTROL_SOCKET_USAGE, controlCommand } from './client-control.js';
import { clientEntry } from './client-lines.js';
import { commandLogger, currentLogger, parseCommand, splitSubcommand } from './command-line.js';
import { logInternalError } from './internal-error-line.js';
import { catchHangups } from './hangups.js';
import { LOG_OPTIONS, LOG_USAGE } from './logger.js';
import { debugNodeFlags } from './node-flags.js';
import { onStopSignals } from './stop-signals.js';
import { reportFindings } from './verify-report.js';
import { EXIT } from './exit-codes.js';

const DEFAULT_GROUPS_DIR = 'config/groups';

const USAGE = `usage: groupclient --group NAME [--server HOST:PORT] [--groups DIR] [--log-level LEVEL] [--log-format FMT]
       groupclient --config FILE [--server HOST:PORT] [--log-level LEVEL] [--log-format FMT]
       groupclient verify (the same options)
       groupclient status|reload --group NAME   ask the running groupclient (see --help of each)
       groupclient --version

  --group NAME       the group to serve; reads <groups>/<NAME>.yaml
  --groups DIR       directory of group files (default: ${DEFAULT_GROUPS_DIR})
  --config FILE      a group file, named directly
  --secret-file F    with --group and no group file: the group's secret (mode 600); the
                     apps come from the server, local targets bounded by loopback
  --server HOST:PORT the commonserver (default: the file's "server"/"servers", else 127.0.0.1:7000);
                     a cluster's nodes as a comma-separated list, tried in turn (a node
                     that refuses for itself or fails verification is skipped; the client
                     stops when every node of a round refused for the same reason)
  --client-id ID     this agent's stable id (default: derived from the host and group)
  --keep-retrying    keep retrying when the server (every node) rejects the login
  --server-fingerprint sha256:...  pin the server's certificate (as commonserver prints it);
                     with several servers, one for all or one per server, comma-separated
  --plaintext        no TLS (only if the server says plaintext: true)
  --proxy URL        reach the server through http://[user:pass@]HOST:PORT (CONNECT) or
                     socks5://[user:pass@]HOST:PORT; replaces the file's proxy:
  --no-watch         do not watch the group file (SIGHUP and groupclient reload still reload it)
${CONTROL_SOCKET_USAGE}
  --trace FILE       record the session as a Mermaid sequence diagram in FILE
  --max-pooled-work-conns N  pooled work conns the server may make this client hold,
                     being opened or idle (default ${DEFAULT_MAX_POOLED_WORK_CONNS}); more asked for are not opened
  --max-mux-streams N  users the server may have on this client's mux conn at once, each a
                     dial of a local app (default ${MUX_LIMITS_DEFAULTS.maxStreams}); more are refused and reported
${LOG_USAGE}
  verify             check the group file, its secret, local targets (each dialed) and
                     server settings; dial the server (no login)
  status             the running client's state, server, session age, apps and live conns
  reload             make the running client reload its group file; print what changed
  DEBUG=ntp:*        traces every event (ntp:net:frames: each frame's type and size)

  groupclient verify --help   its own options and exit codes`;

const VERIFY_USAGE = `usage: groupclient verify --group NAME [--groups DIR] [--server HOST:PORT] ...
       groupclient verify --config FILE ...

  Checks without logging in: the group file (its secret present and long enough, a secretFile
  private to its owner), where its apps come from (the server) and the allowLocal that bounds
  them, its own local targets (each TCP one dialed: "nothing listens on HOST:PORT" is a warning
  that leaves the exit code alone), the server address, how the server's certificate will be
  verified, and that each server answers and proves itself (a certificate other than the one
  trusted is a problem; no answer, a warning that leaves the exit code alone). Takes the same
  options as running the client (--log-level and --log-format included), so that a command
  line can be checked as it is.
  Prints every check and every problem found.

  exit 0: all good; 1: warnings only (it would run); 2: the configuration is invalid`;

const RUN_OPTIONS = {
  group: { type: 'string' },
  groups: { type: 'string', default: DEFAULT_GROUPS_DIR },
  config: { type: 'string' },
  'secret-file': { type: 'string' },
  server: { type: 'string' },
  'client-id': { type: 'string' },
  'keep-retrying': { type: 'boolean', default: false },
  'server-fingerprint': { type: 'string' },
  plaintext: { type: 'boolean', default: false },
  proxy: { type: 'string' },
  'no-watch': { type: 'boolean', default: false },
  'control-socket': { type: 'string' },
  trace: { type: 'string' },
  'max-pooled-work-conns': { type: 'string' },
  'max-mux-streams': { type: 'string' },
  ...LOG_OPTIONS,
} as const;

/** The group file the options name: `--config FILE`, else `<groups>/<group>.yaml`. */
function groupFileOf(values: { group?: string; groups?: string; config?: string }, usage: string, name: string): string | undefined {
  if (values.group === undefined && values.config === undefined) {
    currentLogger().fatal('usage', `${name}: name a group with --group NAME (or a file with --config FILE)\n\n${usage}`);
    return undefined;
  }
  return values.config ?? join(values.groups!, `${values.group}.yaml`);
}

async function verifyCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('groupclient verify', argv, RUN_OPTIONS, VERIFY_USAGE);
  if (parsed.exit !== undefined) return parsed.exit;
  const { values } = parsed;
  if (commandLogger('groupclient verify', values, VERIFY_USAGE) === undefined) return EXIT.failed;
  const file = groupFileOf(values, VERIFY_USAGE, 'groupclient verify');
  if (file === undefined) return EXIT.failed;
  const findings = await verifyGroupClient({
    file,
    ...(values.group !== undefined ? { group: values.group } : {}),
    ...(values.server !== undefined ? { server: values.server } : {}),
    ...(values['server-fingerprint'] !== undefined ? { serverFingerprint: values['server-fingerprint'] } : {}),
    ...(values.proxy !== undefined ? { proxy: values.proxy } : {}),
    counts: values,
    plaintext: values.plaintext!,
  });
  return reportFindings('groupclient verify', findings);
}

/**
 * Exit codes: 0 stopped on a signal, 2 bad usage or config, 3 rejected by the server, taken
 * over, or the server could not be verified (wrong fingerprint, untrusted certificate).
 */
async function main(): Promise<number> {
  debugNodeFlags('groupclient');
  const hangups$ = catchHangups();
  const { command, args } = splitSubcommand(process.argv.slice(2), ['verify', 'status', 'reload']);
  if (command === 'verify') return verifyCommand(args);
  if (command === 'status' || command === 'reload') return controlCommand(command, args);
  const parsed = parseCommand('groupclient', args, RUN_OPTIONS, USAGE);
  if (parsed.exit !== undefined) return parsed.exit;
  const { values } = parsed;
  const log = commandLogger('groupclient', values, USAGE);
  if (log === undefined) return EXIT.failed;
  const { logger } = log;
  const file = groupFileOf(values, USAGE, 'groupclient');
  if (file === undefined) return EXIT.failed;
  const identityOnly = values['secret-file'];
  if (identityOnly !== undefined && (values.config !== undefined || existsSync(file))) {
    logger.fatal('usage', `groupclient: --secret-file is for a host with no group file (${file} exists): write the secret there instead`);
    return EXIT.failed;
  }
  // No file: the command line is the whole identity, and the server sends the apps.
  const load = (): GroupSpec =>
    identityOnly === undefined
      ? loadGroupFile(file, process.env, { anyFileName: true })
      : parseGroupFile(YamlFile.parse(file, JSON.stringify({ name: values.group, secretFile: identityOnly })), process.env, {
          anyFileName: true,
          baseDir: process.cwd(),
        });
  const spec = load();
  // --log-level wins over the group file's logLevel:, now and at every reload.
  log.follow(spec.logLevel);
  if (values.group !== undefined && spec.name !== values.group) {
    logger.fatal('usage', `groupclient: ${file} defines group "${spec.name}", not "${values.group}"`);
    return EXIT.failed;
  }
  if (basename(file, extname(file)) !== spec.name)
    logger.warn('file-name', `warning: ${file} is not named after its group: it defines group ${spec.name} (the name inside is used)`, {
      file,
      group: spec.name,
    });
  const endpoints = clientEndpoints(spec, {
    ...(values.server !== undefined ? { server: values.server } : {}),
    ...(values['server-fingerprint'] !== undefined ? { serverFingerprint: values['server-fingerprint'] } : {}),
    ...(values.proxy !== undefined ? { proxy: values.proxy } : {}),
    plaintext: values.plaintext!,
  });
  if (!endpoints.ok) {
    logger.fatal('usage', `groupclient: ${endpoints.problem}`);
    return EXIT.failed;
  }
  const servers = endpoints.value;
  const { server, transport } = servers[0]!;

  const counts = parseClientCounts(values);
  if (!counts.ok) {
    logger.fatal('usage', `groupclient: --${counts.option}: ${counts.problem}`);
    return EXIT.failed;
  }

  const warning = spec.secretInFile ? permissionWarning(file, `the secret of group ${spec.name}`) : undefined;
  if (warning) logger.warn('file-permissions', `warning: ${warning}`, { file });
  if (transport.kind === 'plain') logger.warn('plaintext', 'warning: plaintext: the connection to the commonserver is NOT encrypted');
  if (transport.route !== undefined)
    logger.info('route', `reaching the server over ${describeRoute(transport.route)}`, { route: describeRoute(transport.route) });

  const client = new GroupClient({
    spec,
    server,
    transport,
    ...(servers.length > 1 ? { servers } : {}),
    clientId: values['client-id'] ?? defaultClientId(spec.name),
    keepRetrying: values['keep-retrying']!,
    maxPooledWorkConns: counts.counts['max-pooled-work-conns'] ?? DEFAULT_MAX_POOLED_WORK_CONNS,
    maxMuxStreams: counts.counts['max-mux-streams'] ?? MUX_LIMITS_DEFAULTS.maxStreams,
  });
  // Loaded only with --trace, as the admin server only when configured: memory at rest.
  client.internalErrors.logTo(logInternalError(logger));
  const trace =
    values.trace === undefined ? undefined : (await import('../trace/index.js')).traceClient(client.events$, spec, values.trace, client.internalErrors.report);
  client.observe('lines', (event) => logger.log(clientEntry(spec.name, event)));
  // client.stop() resets every live relay: their users see a reset, never a clean end.
  onStopSignals(logger, (signal) => {
    logger.info('stopping', `${signal}: disconnecting from ${servers.map((endpoint) => formatHostPort(endpoint.server)).join(', ')}`, { signal });
    client.stop();
  });

  // Hot reload: an edited group file (or SIGHUP) changes local targets without dropping other apps.
  const reload = new GroupFileReload(client, file, {
    watch: !values['no-watch'] && identityOnly === undefined,
    load,
    onError: (error) => logger.error('reload-failed', `group file not reloaded, the previous version stays: ${error.message}`),
    onLoaded: (reloaded) => log.follow(reloaded.logLevel),
  });
  hangups$.subscribe(() => {
    logger.info('reload', 'SIGHUP: reloading the group file', { signal: 'SIGHUP' });
    reload.reload('SIGHUP');
  });
  const status = new ClientStatus(() => client.servedSpec);
  client.observe('status', status.take);
  const controlPath = values['control-socket'] ?? defaultControlSocketPath(spec.name);
  const control = await ControlSocket.open(
    controlPath,
    {
      status: () => ({ ok: true, result: status.report() }),
      reload: () => {
        logger.info('reload', 'groupclient reload: reloading the group file');
        const outcome = reload.reloadNow('groupclient reload');
        return outcome.ok ? { ok: true, result: outcome } : { ok: false, error: `group file not reloaded, the previous version stays: ${outcome.error}` };
      },
    },
    (error) => logger.warn('control-socket', `control socket ${controlPath}: ${error.message}`, { path: controlPath }),
  ).catch((error: Error) => {
    // Status and reload are a convenience: the tunnel runs without them.
    logger.warn('control-socket', `warning: no control socket at ${controlPath} (${error.message}): groupclient status and reload will not reach this client`, {
      path: controlPath,
    });
    return undefined;
  });
  if (control?.tookOver)
    logger.warn('control-socket', `warning: another running groupclient answered on ${controlPath}: taken over, status and reload reach this one now`, {
      path: controlPath,
    });
  try {
    return await serve(client);
  } finally {
    control?.socket.close();
    reload.close();
    await trace?.close();
  }
}

async function serve(client: GroupClient): Promise<number> {
  try {
    await client.run();
    return EXIT.ok;
  } catch (error) {
    if (error instanceof ServerTrustError) {
      currentLogger().fatal('server-not-verified', `groupclient: cannot verify the commonserver: ${error.message}`);
      return EXIT.refused;
    }
    if (error instanceof ClusterRefusedError) {
      currentLogger().fatal('cluster-refused', `groupclient: ${error.message}`);
      return EXIT.refused;
    }
    // The reason is already on stdout (login-rejected and stopped lines): exit 3 says the rest.
    if (error instanceof LoginRejectedError || error instanceof TakenOverError) return EXIT.refused;
    throw error;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) currentLogger().fatal('config-error', `groupclient: config error: ${error.message}`, error.where());
    else currentLogger().fatal('failed', `groupclient: ${(error as Error).message}`);
    process.exit(EXIT.failed);
  },
);
