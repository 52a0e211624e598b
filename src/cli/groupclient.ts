#!/usr/bin/env node
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { clientTransport, DEFAULT_MAX_POOLED_WORK_CONNS, GroupClient, LoginRejectedError, ServerTrustError, TakenOverError } from '../client/index.js';
import { defaultClientId } from '../client/client-id.js';
import { filter, merge, Subject } from 'rxjs';
import { ConfigError, formatHostPort, loadGroupFile, MAX_POOLED_WORK_CONNS_LIMIT, parseCount, parseHostPort, permissionWarning, watchDirectory } from '../config/index.js';
import { traceClient } from '../trace/index.js';
import { clientLine } from './client-lines.js';
import { fail, say } from './output.js';
import { onStopSignals } from './stop-signals.js';

const USAGE = `usage: groupclient --group NAME [--server HOST:PORT] [--groups DIR]
       groupclient --config FILE [--server HOST:PORT]

  --group NAME       the group to serve; reads <groups>/<NAME>.yaml
  --groups DIR       directory of group files (default: config/groups)
  --config FILE      a group file, named directly
  --server HOST:PORT the commonserver (default: the file's "server", else 127.0.0.1:7000)
  --client-id ID     this agent's stable id (default: derived from the host and group)
  --keep-retrying    keep retrying when the server rejects the login
  --server-fingerprint sha256:...  pin the server's certificate (as commonserver prints it)
  --plaintext        no TLS (only if the server says plaintext: true)
  --trace FILE       record the session as a Mermaid sequence diagram in FILE
  --max-pooled-work-conns N  pooled work conns the server may make this client hold,
                     being opened or idle (default ${DEFAULT_MAX_POOLED_WORK_CONNS}); more asked for are not opened
  DEBUG=ntp:*        traces every event`;

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
    },
    strict: true,
  });
  if (values.help) {
    say(USAGE);
    return 0;
  }
  if (values.group === undefined && values.config === undefined) {
    fail(`groupclient: name a group with --group NAME (or a file with --config FILE)\n\n${USAGE}`);
    return 2;
  }
  const file = values.config ?? join(values.groups!, `${values.group}.yaml`);
  const spec = loadGroupFile(file);
  if (values.group !== undefined && spec.name !== values.group) {
    fail(`groupclient: ${file} defines group "${spec.name}", not "${values.group}"`);
    return 2;
  }
  let server = spec.server ?? { host: '127.0.0.1', port: 7000 };
  if (values.server !== undefined) {
    const parsed = parseHostPort(values.server);
    if (!parsed.ok) {
      fail(`groupclient: --server: ${parsed.problem}`);
      return 2;
    }
    server = parsed.value;
  }

  let maxPooledWorkConns = DEFAULT_MAX_POOLED_WORK_CONNS;
  if (values['max-pooled-work-conns'] !== undefined) {
    const parsed = parseCount(values['max-pooled-work-conns'], { min: 0, max: MAX_POOLED_WORK_CONNS_LIMIT });
    if (!parsed.ok) {
      fail(`groupclient: --max-pooled-work-conns: ${parsed.problem}`);
      return 2;
    }
    maxPooledWorkConns = parsed.value;
  }

  const warning = spec.secretInFile ? permissionWarning(file, `the secret of group ${spec.name}`) : undefined;
  if (warning) say(`warning: ${warning}`);
  const transport = clientTransport(spec, {
    ...(values['server-fingerprint'] !== undefined ? { fingerprint: values['server-fingerprint'] } : {}),
    plaintext: values.plaintext!,
  });
  if (transport.kind === 'plain') say('warning: plaintext: the connection to the commonserver is NOT encrypted');

  const client = new GroupClient({
    spec,
    server,
    transport,
    clientId: values['client-id'] ?? defaultClientId(spec.name),
    keepRetrying: values['keep-retrying']!,
    maxPooledWorkConns,
  });
  const trace = values.trace === undefined ? undefined : traceClient(client.events$, spec, values.trace);
  client.events$.subscribe((event) => {
    const line = clientLine(spec.name, event);
    if (line !== undefined) say(line);
  });
  // client.stop() resets every live relay: their users see a reset, never a clean end.
  onStopSignals((signal) => {
    say(`${signal}: disconnecting from ${formatHostPort(server)}`);
    client.stop();
  });

  // Hot reload: an edited group file (or SIGHUP) changes local targets without dropping other apps.
  const reloadRequests = new Subject<void>();
  process.on('SIGHUP', () => reloadRequests.next());
  const reloads = merge(reloadRequests, watchDirectory(dirname(file)).pipe(filter((names) => names.has(basename(file)) || names.has('')))).subscribe(() => {
    try {
      client.updateSpec(loadGroupFile(file));
    } catch (error) {
      say(`group file not reloaded, the previous version stays: ${(error as Error).message}`);
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
      fail(`groupclient: cannot verify the commonserver: ${error.message}`);
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
    if (error instanceof ConfigError) fail(`groupclient: config error: ${error.message}`);
    else fail(`groupclient: ${(error as Error).message}`);
    process.exit(2);
  },
);
