import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadGroupFile, type GroupSpec } from '../../src/config/index.js';
import { createSelfSigned } from '../../src/server/index.js';
import { recordSecret } from './artifacts.js';

export interface TestAppEntry {
  name: string;
  /** The local app's port on 127.0.0.1. */
  localPort: number;
  /** 0 lets the server choose; for a pooled app, unset leaves it to the pool. */
  remotePort?: number;
  /** A shared pool to join (`pool:`), with its health check as the group file writes it. */
  pool?: string;
  healthCheck?: Record<string, unknown>;
  /** A UDP app (`type: udp`), with its `udp:` settings if any. */
  type?: 'udp';
  udp?: { idleTimeout?: string; maxSessions?: number; maxDatagramBytes?: number };
  /** CIDRs allowed to use the public port. */
  allow?: string[];
  /** More app fields, as written in the group file (`proxyProtocol`, `bandwidth`...). */
  extra?: Record<string, unknown>;
}

export interface TestGroup {
  name: string;
  secret: string;
  apps: TestAppEntry[];
}

export interface TestServerSettings {
  heartbeatInterval?: string;
  heartbeatTimeout?: string;
  pairingTimeout?: string;
  handshakeTimeout?: string;
  bindPort?: number;
  /** The common port's (and so the public ports') address; another 127.x address keeps nodes of one test apart. */
  bindHost?: string;
  /**
   * The common port's link. Unset or `true`: TLS, the default link (clients pin the
   * fingerprint startServer / startCommonServerProcess return); `{ clientCa }` adds mutual
   * TLS; `false`: `plaintext: true`, for tests about plaintext and the explicit variants.
   */
  tls?: boolean | { clientCa: string };
  /**
   * Where the server's key and certificate come from when TLS is on. `shared` (the default):
   * one self-signed pair made once per test process by the server's own createSelfSigned,
   * copied to the default TLS paths (an openssl run per config would cost more than the test).
   * `on-start`: no files, so the server creates them on first start as on a user's first run.
   */
  certificate?: 'shared' | 'on-start';
  /** Pooled work conns per session (the server's default when unset). */
  workConnPool?: number;
  /** Extra top-level keys for the server's YAML. */
  extra?: Record<string, unknown>;
}

/** A throwaway config directory: commonserver.yaml and groups/<name>.yaml. */
export interface TestConfigDir {
  dir: string;
  serverFile: string;
  groupsDir: string;
  groupFile(name: string): string;
  writeGroup(group: TestGroup): string;
}

/** A fresh secret, recorded so that the final scan can prove no log line contains it. */
export function randomSecret(): string {
  const secret = `test-secret-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`;
  recordSecret(secret);
  return secret;
}

export function groupYaml(group: TestGroup): string {
  return stringify({
    name: group.name,
    secret: group.secret,
    apps: group.apps.map((app) => ({
      name: app.name,
      local: `127.0.0.1:${app.localPort}`,
      ...(app.pool !== undefined && app.remotePort === undefined ? {} : { remotePort: app.remotePort ?? 0 }),
      ...(app.pool === undefined ? {} : { pool: app.pool }),
      ...(app.healthCheck === undefined ? {} : { healthCheck: app.healthCheck }),
      ...(app.type === undefined ? {} : { type: app.type }),
      ...(app.udp === undefined ? {} : { udp: app.udp }),
      ...(app.allow === undefined ? {} : { allow: app.allow }),
      ...app.extra,
    })),
  });
}

export function makeConfigDir(groups: TestGroup[], settings: TestServerSettings = {}): TestConfigDir {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-test-'));
  const groupsDir = join(dir, 'groups');
  const serverFile = join(dir, 'commonserver.yaml');
  mkdirSync(groupsDir);
  const tls = settings.tls ?? true;
  if (tls !== false && (settings.certificate ?? 'shared') === 'shared') copySharedCertificate(join(dir, 'tls'));
  writeFileSync(
    serverFile,
    stringify({
      bind: `${settings.bindHost ?? '127.0.0.1'}:${settings.bindPort ?? 0}`,
      groups: './groups',
      // Generous by default: a test run shares two cores, and a second without a Pong there is load,
      // not a lost client. Tests about heartbeat loss set their own.
      heartbeat: { interval: settings.heartbeatInterval ?? '500ms', timeout: settings.heartbeatTimeout ?? '5s' },
      pairingTimeout: settings.pairingTimeout ?? '3s',
      handshakeTimeout: settings.handshakeTimeout ?? '2s',
      ...(tls === false ? { plaintext: true } : { tls: typeof tls === 'object' ? { clientCa: tls.clientCa } : {} }),
      ...(settings.workConnPool === undefined ? {} : { workConnPool: settings.workConnPool }),
      ...settings.extra,
    }),
  );
  const config: TestConfigDir = {
    dir,
    serverFile,
    groupsDir,
    groupFile: (name) => join(groupsDir, `${name}.yaml`),
    writeGroup: (group) => {
      const file = join(groupsDir, `${group.name}.yaml`);
      writeFileSync(file, groupYaml(group));
      return file;
    },
  };
  for (const group of groups) config.writeGroup(group);
  return config;
}

let sharedCertificate: { cert: string; key: string } | undefined;

/** Copies this process's one key and certificate into `tlsDir` under the config's default names. */
function copySharedCertificate(tlsDir: string): void {
  if (sharedCertificate === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'ntp-test-cert-'));
    sharedCertificate = { cert: join(dir, 'commonserver.crt'), key: join(dir, 'commonserver.key') };
    createSelfSigned(sharedCertificate.cert, sharedCertificate.key);
  }
  mkdirSync(tlsDir);
  copyFileSync(sharedCertificate.cert, join(tlsDir, 'commonserver.crt'));
  copyFileSync(sharedCertificate.key, join(tlsDir, 'commonserver.key'));
  chmodSync(join(tlsDir, 'commonserver.key'), 0o600);
}

/**
 * A host's group file of identity only (name and secret; `more` adds lines such as allowLocal),
 * in a directory of its own, loaded as a groupclient loads it: its apps come from the server.
 */
export function hostIdentity(name: string, secret: string, more = ''): GroupSpec {
  const file = join(mkdtempSync(join(tmpdir(), 'ntp-host-')), `${name}.yaml`);
  writeFileSync(file, `name: ${name}\nsecret: ${secret}\n${more}`, { mode: 0o600 });
  return loadGroupFile(file, process.env, { anyFileName: true });
}
