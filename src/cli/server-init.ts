import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, formatHostPort, GROUP_NAME_RULE, isGroupName, schemaComment, type HostPort } from '../config/index.js';
import { loadServerTransport } from '../server/index.js';

export interface InitOptions {
  /** The directory to fill (created when missing). */
  dir: string;
  /** The sample group's name. */
  group: string;
  /** Where the server listens (its common port). */
  bind: HostPort;
  /** The name or address hosts reach the server by: it goes into the group file's `server:`. */
  publicHost: string;
}

export interface InitResult {
  serverFile: string;
  groupFile: string;
  certFile: string;
  fingerprint: string;
}

/** 32 random bytes in base64url: 43 characters, far over MIN_SECRET_LENGTH (16). */
function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * `commonserver init DIR`: a starter server config, its TLS key and certificate, and one
 * sample group file with a generated secret (mode 600) and the certificate's fingerprint
 * pinned, so that the file can be copied to the host as it is. Never overwrites: when any of
 * the files exists, nothing is written.
 */
export function initServerDirectory(options: InitOptions): InitResult {
  const dir = resolve(options.dir);
  if (!isGroupName(options.group)) throw new ConfigError('CONFIG_INVALID', `--group: expected a group name of ${GROUP_NAME_RULE}`, dir, 'group');
  const serverFile = join(dir, 'commonserver.yaml');
  const groupFile = join(dir, 'groups', `${options.group}.yaml`);
  const certFile = join(dir, 'tls', 'commonserver.crt');
  const keyFile = join(dir, 'tls', 'commonserver.key');
  for (const file of [serverFile, groupFile, certFile, keyFile]) {
    if (existsSync(file)) {
      throw new ConfigError('CONFIG_INVALID', `${file} already exists: init never overwrites a file (remove it, or name another directory)`, file);
    }
  }
  mkdirSync(join(dir, 'groups'), { recursive: true });
  // The certificate first: openssl is what is most likely to fail, and then nothing is written.
  const { fingerprint } = loadServerTransport({ plaintext: false, certFile, keyFile });
  // `wx`: fails rather than overwrites, should a file appear after the check above.
  writeFileSync(serverFile, starterServerConfig(serverFile, options.bind), { flag: 'wx', mode: 0o644 });
  writeFileSync(groupFile, sampleGroupFile(groupFile, options, fingerprint!), { flag: 'wx', mode: 0o600 });
  // The umask may have taken bits off, never added: make the mode exactly what is promised.
  chmodSync(groupFile, 0o600);
  return { serverFile, groupFile, certFile, fingerprint: fingerprint! };
}

/** Each file starts with the schema comment, so that editors complete and check it as the other config files. */
function starterServerConfig(file: string, bind: HostPort): string {
  return `${schemaComment('commonserver', file)}
# The commonserver: one public common port for every group's control and work connections.
# Check it with: commonserver verify --config <this file>
bind: ${formatHostPort(bind)}    # the common port
groups: ./groups            # one file per host group (relative to this file); watched, and reloaded on SIGHUP
heartbeat: { interval: 10s, timeout: 30s }

# TLS: the key and self-signed certificate that init created; hosts pin its fingerprint.
tls:
  cert: ./tls/commonserver.crt
  key: ./tls/commonserver.key

# Policy: the public ports groups may ask for.
allowPorts: ["6000-6999"]
maxAppsPerGroup: 16

# Lines printed: error | warn | info | debug (--log-level overrides it).
# logLevel: info

# The admin API, dashboard and Prometheus metrics. Off unless this section exists.
# admin:
#   bind: 127.0.0.1:7500
#   token: \${NTP_ADMIN_TOKEN}
`;
}

function sampleGroupFile(file: string, options: InitOptions, fingerprint: string): string {
  return `${schemaComment('group', file)}
# Group ${options.group}: the same file serves the commonserver (its groups directory) and the
# groupclient on the host. It holds the group's secret: keep it mode 600 on both machines.
name: ${options.group}
secret: ${generateSecret()}
server: ${formatHostPort({ host: options.publicHost, port: options.bind.port })}
serverFingerprint: ${fingerprint}
apps:
  # local: where the groupclient dials on its host; remotePort: the public port on the server.
  - { name: ssh, local: 127.0.0.1:22, remotePort: 6022 }
`;
}
