import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  isGroupName,
  GROUP_NAME_RULE,
  loadGroupFile,
  loadServerConfig,
  parseHostPort,
  permissionWarning,
  publicPolicyOf,
  type ServerConfig,
} from '../config/index.js';
import { loadServerTransport } from '../server/index.js';
import { commandLogger, parseCommand, print, type CommandLogger } from './command-line.js';
import { LOG_OPTIONS, LOG_USAGE, type Logger } from './logger.js';
import { initServerDirectory } from './server-init.js';
import { verifyServer } from './server-verify.js';
import { reportFindings } from './verify-report.js';
import { EXIT } from './exit-codes.js';

export const DEFAULT_SERVER_CONFIG = 'config/commonserver.yaml';

const INIT_USAGE = `usage: commonserver init DIR [--group NAME] [--public-host HOST] [--bind HOST:PORT]
       commonserver init [--config FILE] [--log-level LEVEL] [--log-format FMT]

  DIR                 write DIR/commonserver.yaml, DIR/tls/ (key and self-signed certificate)
                      and DIR/groups/NAME.yaml (a sample group: secret generated, mode 600,
                      the certificate's fingerprint pinned); print the groupclient line to run
                      on the host. Refuses to overwrite any existing file.
  --group NAME        the sample group's name (default: my-host)
  --public-host HOST  the name or address hosts reach this server by (default: this host's name)
  --bind HOST:PORT    the common port (default: 0.0.0.0:7000)
  --config FILE       without DIR: create the TLS key and certificate of an existing config
                      (if missing) and print the fingerprint for clients to pin (default
                      config: ${DEFAULT_SERVER_CONFIG})
${LOG_USAGE}`;

const VERIFY_USAGE = `usage: commonserver verify [--config FILE] [--log-level LEVEL] [--log-format FMT]

  Checks without starting anything: the server config, its TLS key and certificate, every
  group file of its groups directory (secrets present and long enough, secretFile private to
  its owner, ports allowed by allowPorts), and whether the common and admin ports can be
  bound. Prints every check and every problem found.

  --config FILE   server config (default: ${DEFAULT_SERVER_CONFIG})
  --log-level, --log-format  accepted and checked, so that the server's own command line
                  can be verified as it is; the report itself is plain text

  exit 0: all good; 1: warnings only (it would run); 2: the configuration is invalid`;

/** Loads (or creates) the TLS material and says what clients need to know about it. */
export function prepareTransport(config: ServerConfig, logger: Logger): ReturnType<typeof loadServerTransport> {
  const loaded = loadServerTransport(config.tls);
  if (config.tls.plaintext) {
    logger.warn('plaintext', 'warning: plaintext: true — the common port is NOT encrypted; secrets stay off the wire, but traffic and app names do not');
    return loaded;
  }
  if (loaded.created)
    logger.info('certificate-created', `TLS certificate created: ${config.tls.certFile} (key ${config.tls.keyFile})`, {
      certFile: config.tls.certFile,
      keyFile: config.tls.keyFile,
    });
  logger.info('tls-on', `TLS on; certificate fingerprint ${loaded.fingerprint} (clients: serverFingerprint: ${loaded.fingerprint})`, {
    fingerprint: loaded.fingerprint,
  });
  if (config.tls.clientCaFile)
    logger.info('mutual-tls', `mutual TLS: clients need a certificate from ${config.tls.clientCaFile}`, { clientCaFile: config.tls.clientCaFile });
  const warning = permissionWarning(config.tls.keyFile, 'the TLS private key');
  if (warning) logger.warn('file-permissions', `warning: ${warning}`, { file: config.tls.keyFile });
  return loaded;
}

/** `commonserver init`: a new directory from nothing, or the TLS material of an existing config. */
export function initCommand(argv: string[]): number {
  const parsed = parseCommand(
    'commonserver init',
    argv,
    {
      config: { type: 'string' },
      group: { type: 'string', default: 'my-host' },
      'public-host': { type: 'string' },
      bind: { type: 'string', default: '0.0.0.0:7000' },
      ...LOG_OPTIONS,
    },
    INIT_USAGE,
    { maxPositionals: 1 },
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  const log = commandLogger('commonserver init', values, INIT_USAGE);
  if (log === undefined) return EXIT.failed;
  const { logger } = log;
  const dir = positionals[0];
  if (dir !== undefined && values.config !== undefined) {
    logger.fatal('usage', `commonserver init: name a new directory (init DIR) or an existing config (init --config FILE), not both\n\n${INIT_USAGE}`);
    return EXIT.failed;
  }
  if (dir === undefined) return initTls(values.config ?? DEFAULT_SERVER_CONFIG, log);
  const bind = parseHostPort(values.bind, { allowPortZero: true });
  if (!bind.ok) {
    logger.fatal('usage', `commonserver init: --bind: ${bind.problem}`);
    return EXIT.failed;
  }
  const publicHost = values['public-host'] ?? hostname();
  const created = initServerDirectory({ dir, group: values.group!, bind: bind.value, publicHost });
  const groupFileName = `${values.group}.yaml`;
  print(`wrote ${created.serverFile}
wrote ${created.groupFile} (group ${values.group}: secret generated, mode 600)
TLS certificate created: ${created.certFile}; fingerprint ${created.fingerprint} (pinned in the group file)

Next:
  1. edit the apps in ${created.groupFile} (local: the app on the host; remotePort: its public port)
  2. start the server:
       commonserver --config ${created.serverFile}
  3. copy ${created.groupFile} to the host (mode 600: it holds the secret) and run there:
       groupclient --config ${groupFileName}
     (it connects to ${publicHost}:${bind.value.port}, the file's server: line; hosts must be able to reach it)`);
  return EXIT.ok;
}

function initTls(configFile: string, { logger, follow }: CommandLogger): number {
  const config = loadServerConfig(configFile);
  follow(config.logLevel);
  if (config.tls.plaintext) {
    logger.fatal('usage', `commonserver: ${configFile} says plaintext: true; remove it to use TLS`);
    return EXIT.failed;
  }
  prepareTransport(config, logger);
  return EXIT.ok;
}

/** `commonserver verify`: every check, every problem, nothing started. */
export async function verifyCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('commonserver verify', argv, { config: { type: 'string', default: DEFAULT_SERVER_CONFIG }, ...LOG_OPTIONS }, VERIFY_USAGE);
  if (parsed.exit !== undefined) return parsed.exit;
  if (commandLogger('commonserver verify', parsed.values, VERIFY_USAGE) === undefined) return EXIT.failed;
  return reportFindings('commonserver verify', await verifyServer(parsed.values.config!));
}

const CLUSTER_USAGE = `usage: commonserver cluster import DIR [--config FILE] [--log-level LEVEL] [--log-format FMT]

  import DIR      store every group file of DIR in the cluster's etcd (groups already there
                  are kept); the config's cluster: section says where etcd is
  --config FILE   server config (default: ${DEFAULT_SERVER_CONFIG})
${LOG_USAGE}

  exit 0: every file imported or kept; 2: a file was refused, or a bad command line or config`;

/** `commonserver cluster import DIR`: a groups directory stored once in the cluster's etcd. */
export async function clusterCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('commonserver cluster', argv, { config: { type: 'string', default: DEFAULT_SERVER_CONFIG }, ...LOG_OPTIONS }, CLUSTER_USAGE, {
    maxPositionals: 2,
  });
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  const log = commandLogger('commonserver cluster', values, CLUSTER_USAGE);
  if (log === undefined) return EXIT.failed;
  const { logger } = log;
  const [action, dir] = positionals;
  if (action !== 'import' || dir === undefined) {
    logger.fatal('usage', `commonserver: unknown command ${JSON.stringify(['cluster', ...positionals].join(' '))}\n\n${CLUSTER_USAGE}`);
    return EXIT.failed;
  }
  const config = loadServerConfig(values.config!);
  log.follow(config.logLevel);
  if (config.cluster === undefined) {
    logger.fatal('usage', `commonserver: ${values.config} has no cluster: section; cluster import needs to know where etcd is`);
    return EXIT.failed;
  }
  // Loaded only here: a single server never loads etcd's client.
  const { importGroupDirectory } = await import('../server/cluster/index.js');
  const result = await importGroupDirectory(config.cluster, dir, { vhost: config.vhost, pools: config.pools }, publicPolicyOf(config));
  for (const problem of result.refused) logger.error('import-refused', `not imported: ${problem}`);
  for (const group of result.unchecked) logger.warn('import-unchecked', `not checked against group ${group}`);
  logger.info(
    'imported',
    `imported ${result.imported.length} group(s) into etcd ${config.cluster.prefix}/groups/${result.kept.length ? `; ${result.kept.length} already there, kept: ${result.kept.join(', ')}` : ''}`,
  );
  return result.refused.length > 0 ? EXIT.failed : EXIT.ok;
}

const HOSTFILE_USAGE = `usage: commonserver hostfile GROUP [--config FILE] [--public-host HOST] [--out FILE]

  Prints group GROUP's file as its host needs it: the registry's copy with server:, the
  fingerprint of the server's certificate and the group's secret written in. Copy it to the
  host and run there: groupclient --config GROUP.yaml
  --config FILE       server config (default: ${DEFAULT_SERVER_CONFIG})
  --public-host HOST  the name or address hosts reach this server by, when the group's file
                      has no server: line (default: this host's name; the port is bind's)
  --out FILE          write the file (mode 600: it holds the secret) instead of printing it
${LOG_USAGE}`;

/** `commonserver hostfile GROUP`: the registry's group file, ready to copy to its host. */
export async function hostfileCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand(
    'commonserver hostfile',
    argv,
    { config: { type: 'string', default: DEFAULT_SERVER_CONFIG }, 'public-host': { type: 'string' }, out: { type: 'string' }, ...LOG_OPTIONS },
    HOSTFILE_USAGE,
    { maxPositionals: 1 },
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  const log = commandLogger('commonserver hostfile', values, HOSTFILE_USAGE);
  if (log === undefined) return EXIT.failed;
  const { logger } = log;
  const name = positionals[0];
  if (name === undefined || !isGroupName(name)) {
    logger.fatal(
      'usage',
      `commonserver hostfile: ${name === undefined ? 'name the group' : `expected a group name of ${GROUP_NAME_RULE}`}\n\n${HOSTFILE_USAGE}`,
    );
    return EXIT.failed;
  }
  const config = loadServerConfig(values.config!);
  log.follow(config.logLevel);
  if (config.cluster !== undefined) {
    logger.fatal(
      'usage',
      `commonserver hostfile: ${values.config} is a cluster node whose registry is in etcd: ask a node's admin API (GET /api/groups/${name}/hostfile)`,
    );
    return EXIT.failed;
  }
  const spec = loadGroupFile(join(config.groupsDir, `${name}.yaml`));
  const { fingerprint } = loadServerTransport(config.tls, { create: false });
  // Loaded only here: the admin module is not part of the server's start.
  const { hostFileText } = await import('../admin/host-file.js');
  const text = await hostFileText(spec, { server: { host: values['public-host'] ?? hostname(), port: config.bind.port }, fingerprint, withSecret: true });
  if (values.out === undefined) {
    process.stdout.write(text);
    return EXIT.ok;
  }
  // Private before the secret is in it, whether the file is new or replaced.
  if (existsSync(values.out)) chmodSync(values.out, 0o600);
  writeFileSync(values.out, text, { mode: 0o600 });
  chmodSync(values.out, 0o600);
  logger.info('hostfile-written', `wrote ${values.out} (group ${name}, mode 600: it holds the secret); on the host: groupclient --config ${values.out}`, {
    file: values.out,
  });
  return EXIT.ok;
}
