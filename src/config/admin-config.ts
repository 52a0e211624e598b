import { isIP } from 'node:net';
import { parseSecret } from './secret-source.js';
import type { Secret } from './secret.js';
import { parseHostPort, type HostPort } from './values.js';
import type { YamlFile } from './yaml-file.js';

/** The `admin:` section of commonserver.yaml: where the admin API and dashboard listen. */
export interface AdminConfig {
  readonly bind: HostPort;
  /** Bearer token for every /api route and /metrics; required off loopback. */
  readonly token?: Secret;
}

export const ADMIN_DEFAULT_BIND = '127.0.0.1:7500';
const ADMIN_KEYS = ['bind', 'token'] as const;

/** True for 127.0.0.0/8, ::1 and "localhost": addresses no other host can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host.startsWith('::ffff:127.');
}

/** Validates the `admin:` section; an exposed admin server without a token is refused. */
export function parseAdminSection(yaml: YamlFile, raw: unknown, env: NodeJS.ProcessEnv = process.env): AdminConfig {
  const section = yaml.mapAt(['admin'], raw ?? {});
  yaml.onlyKeys(['admin'], section, ADMIN_KEYS);
  const bind = yaml.expect(['admin', 'bind'], parseHostPort(section.bind ?? ADMIN_DEFAULT_BIND, { allowPortZero: true }));
  const token = section.token === undefined ? undefined : parseSecret(yaml, section.token, env, ['admin', 'token']);
  if (token === undefined && !isLoopback(bind.host)) {
    throw yaml.error(['admin', 'token'], `required when admin.bind (${bind.host}) is not a loopback address: anyone who can reach it could change the registry`);
  }
  return Object.freeze({ bind: Object.freeze(bind), ...(token ? { token } : {}) });
}
