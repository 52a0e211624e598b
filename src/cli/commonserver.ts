#!/usr/bin/env node
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadServerConfig, permissionWarning, type ServerConfig } from '../config/index.js';
import { CommonServer, DirectoryRegistry, GroupsHotReload, loadServerTransport } from '../server/index.js';
import { traceServer } from '../trace/index.js';
import { fail, say } from './output.js';
import { serverLine } from './server-lines.js';
import { onStopSignals } from './stop-signals.js';

const USAGE = `usage: commonserver [--config FILE] [--no-watch] [--trace FILE]
       commonserver init [--config FILE]
       commonserver cluster import DIR [--config FILE]

  --config FILE   server config (default: config/commonserver.yaml)
  --no-watch      do not watch the groups directory (SIGHUP still reloads it)
  --trace FILE    record the session as a Mermaid sequence diagram in FILE
  init            create the TLS key and self-signed certificate (if missing), print the
                  fingerprint for clients to pin, and exit
  cluster import DIR  store every group file of DIR in the cluster's etcd (groups already
                  there are kept); the config's cluster: section says where etcd is
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
  const command = positionals.join(' ');
  const importing = positionals.length === 3 && positionals[0] === 'cluster' && positionals[1] === 'import';
  if (!importing && (positionals.length > 1 || (positionals.length === 1 && command !== 'init'))) {
    fail(`commonserver: unknown command ${JSON.stringify(positionals.join(' '))}\n\n${USAGE}`);
    return 2;
  }
  const config = loadServerConfig(values.config!);
  if (importing) return importIntoCluster(config, values.config!, positionals[2]!);
  if (positionals[0] === 'init') {
    if (config.tls.plaintext) {
      fail(`commonserver: ${values.config} says plaintext: true; remove it to use TLS`);
      return 2;
    }
    prepareTransport(config);
    return 0;
  }
  const { transport } = prepareTransport(config);
  // Loaded only for a cluster: a single server never loads etcd's client.
  const cluster = config.cluster === undefined ? undefined : new (await import('../server/cluster/index.js')).ClusterNode({ config: config.cluster, baseDir: dirname(config.file ?? values.config!), say });
  if (cluster !== undefined) {
    say(`cluster: node ${config.cluster!.node} joining etcd ${config.cluster!.etcd.join(',')} (prefix ${config.cluster!.prefix}, lease ${config.cluster!.leaseTtlMs / 1000}s)`);
    await cluster.join((reason) => say(`cluster: no etcd lease yet (${reason}); retrying`));
    say(`cluster: the registry is etcd ${config.cluster!.prefix}/groups/ (the groups directory is not read; store it once with: commonserver cluster import DIR)`);
  }
  const server = new CommonServer({ ...config, transport, ...(cluster ? { activationGate: cluster.claims } : {}) });
  const trace = values.trace === undefined ? undefined : traceServer(server.events$, values.trace);
  server.events$.subscribe((event) => {
    const line = serverLine(event);
    if (line !== undefined) say(line);
  });
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
          onError: (error) => say(`groups reload failed: ${error.message}`),
        });
  process.on('SIGHUP', () => {
    say(`SIGHUP: reloading the registry (${registry.source})`);
    if (reload !== undefined) reload.reload('SIGHUP');
    else void registry.sync();
  });
  await registry.sync();
  if (server.readyGroup.size === 0) say(`warning: no group registered from ${registry.source}`);
  for (const spec of server.readyGroup.values()) {
    const warning = spec.secretInFile ? permissionWarning(spec.file, `the secret of group ${spec.name}`) : undefined;
    if (warning) say(`warning: ${warning}`);
  }
  const { port } = await server.listen();
  await cluster?.announce(port);
  if (admin !== undefined) {
    await admin.listen();
    say(`admin listening on ${admin.url()}${config.admin?.token ? ' (token required)' : ''}`);
  }

  // Live users are reset by server.close(); the bound covers whatever else lingers.
  await new Promise<void>((resolve) => {
    onStopSignals((signal) => {
      say(`${signal}: shutting down`);
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

async function importIntoCluster(config: ServerConfig, configFile: string, dir: string): Promise<number> {
  if (config.cluster === undefined) {
    fail(`commonserver: ${configFile} has no cluster: section; cluster import needs to know where etcd is`);
    return 2;
  }
  const { importGroupDirectory } = await import('../server/cluster/index.js');
  const result = await importGroupDirectory(config.cluster, dir);
  for (const problem of result.refused) say(`not imported: ${problem}`);
  say(`imported ${result.imported.length} group(s) into etcd ${config.cluster.prefix}/groups/${result.kept.length ? `; ${result.kept.length} already there, kept: ${result.kept.join(', ')}` : ''}`);
  return result.refused.length > 0 ? 2 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) fail(`commonserver: config error: ${error.message}`);
    else fail(`commonserver: ${(error as Error).message}`);
    process.exit(2);
  },
);
