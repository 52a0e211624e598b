import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { recordSecret } from './artifacts.js';

export interface TestAppEntry {
  name: string;
  /** The local app's port on 127.0.0.1. */
  localPort: number;
  /** 0 lets the server choose. */
  remotePort?: number;
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
  /**
   * TLS on the common port: a self-signed certificate is created on first start (the
   * default here is `plaintext: true`, so most tests skip the handshake cost).
   */
  tls?: boolean | { clientCa: string };
  /** Extra top-level keys for the server's YAML. */
  /** Pooled work conns per session (the server's default when unset). */
  workConnPool?: number;
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
    apps: group.apps.map((app) => ({ name: app.name, local: `127.0.0.1:${app.localPort}`, remotePort: app.remotePort ?? 0 })),
  });
}

export function makeConfigDir(groups: TestGroup[], settings: TestServerSettings = {}): TestConfigDir {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-test-'));
  const groupsDir = join(dir, 'groups');
  const serverFile = join(dir, 'commonserver.yaml');
  mkdirSync(groupsDir);
  writeFileSync(
    serverFile,
    stringify({
      bind: `127.0.0.1:${settings.bindPort ?? 0}`,
      groups: './groups',
      heartbeat: { interval: settings.heartbeatInterval ?? '200ms', timeout: settings.heartbeatTimeout ?? '1s' },
      pairingTimeout: settings.pairingTimeout ?? '3s',
      handshakeTimeout: settings.handshakeTimeout ?? '2s',
      ...(settings.tls ? { tls: typeof settings.tls === 'object' ? { clientCa: settings.tls.clientCa } : {} } : { plaintext: true }),
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
