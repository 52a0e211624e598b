import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import type { Parsed } from './values.js';
import type { YamlFile } from './yaml-file.js';

/** Who may use an app's public port (server side). */
export interface AppAccess {
  /** CIDRs ("10.0.0.0/8", "2001:db8::/32", a bare address); others are closed at accept. */
  readonly allow?: readonly string[];
  /** UserConns of this app at once (held or relayed); more are closed at accept. */
  readonly maxConnections?: number;
}

/** How the groupclient verifies the commonserver (client side). */
export interface ServerTrust {
  /** `sha256:...` of the server's certificate. */
  readonly serverFingerprint?: string;
  /** Absolute path of a CA file that signs the server's certificate. */
  readonly serverCaFile?: string;
  /** Only when written explicitly: no TLS at all. */
  readonly plaintext?: boolean;
  /** Mutual TLS: this client's certificate and key (absolute paths). */
  readonly clientCertFile?: string;
  readonly clientKeyFile?: string;
}

export const APP_ACCESS_KEYS = ['allow', 'maxConnections'] as const;
export const SERVER_TRUST_KEYS = ['serverFingerprint', 'serverCa', 'plaintext', 'clientCert', 'clientKey'] as const;

export function parseAppAccess(yaml: YamlFile, path: (string | number)[], app: Record<string, unknown>): AppAccess {
  const access: { allow?: string[]; maxConnections?: number } = {};
  if (app.allow !== undefined) access.allow = yaml.expect([...path, 'allow'], parseCidrList(app.allow));
  if (app.maxConnections !== undefined) {
    const max = app.maxConnections;
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) {
      throw yaml.error([...path, 'maxConnections'], `expected a whole number of at least 1, got ${JSON.stringify(max)}`);
    }
    access.maxConnections = max;
  }
  return access;
}

export function parseServerTrust(yaml: YamlFile, root: Record<string, unknown>): ServerTrust {
  const trust: { -readonly [K in keyof ServerTrust]: ServerTrust[K] } = {};
  const base = dirname(yaml.file);
  const path = (key: string): string | undefined => {
    const value = root[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value === '') throw yaml.error([key], 'expected a file path');
    return resolve(base, value);
  };
  if (root.serverFingerprint !== undefined) {
    const fingerprint = typeof root.serverFingerprint === 'string' ? canonicalFingerprint(root.serverFingerprint) : undefined;
    if (fingerprint === undefined) throw yaml.error(['serverFingerprint'], 'expected sha256: followed by 64 hex digits (as the commonserver prints it)');
    trust.serverFingerprint = fingerprint;
  }
  if (root.plaintext !== undefined && typeof root.plaintext !== 'boolean') throw yaml.error(['plaintext'], 'expected true or false');
  if (root.plaintext === true) {
    if (root.serverFingerprint !== undefined || root.serverCa !== undefined) {
      throw yaml.error(['plaintext'], 'plaintext: true contradicts serverFingerprint / serverCa; keep one');
    }
    trust.plaintext = true;
  }
  const ca = path('serverCa');
  if (ca) trust.serverCaFile = ca;
  const cert = path('clientCert');
  const key = path('clientKey');
  if ((cert === undefined) !== (key === undefined)) throw yaml.error([cert ? 'clientKey' : 'clientCert'], 'clientCert and clientKey go together');
  if (cert && key) Object.assign(trust, { clientCertFile: cert, clientKeyFile: key });
  return trust;
}

/** `sha256:` + 64 hex digits (colons between bytes allowed), lower-cased without colons. */
export function canonicalFingerprint(text: string): string | undefined {
  const match = /^sha256:((?:[0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2})$/i.exec(text.trim());
  return match ? `sha256:${match[1]!.replace(/:/g, '').toLowerCase()}` : undefined;
}

export function parseCidrList(value: unknown): Parsed<string[]> {
  const items = Array.isArray(value) ? value : [value];
  for (const item of items) {
    if (typeof item !== 'string' || parseCidr(item) === undefined) {
      return { ok: false, problem: `expected a list of addresses or CIDRs such as ["10.0.0.0/8", "203.0.113.7"], got ${JSON.stringify(item)}` };
    }
  }
  return { ok: true, value: items as string[] };
}

export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address, bits, ...rest] = text.trim().split('/');
  const version = isIP(address ?? '');
  if (rest.length > 0 || version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) return undefined;
  return { address: address!, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}
