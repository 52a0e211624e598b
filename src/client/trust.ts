import { readFileSync } from 'node:fs';
import { canonicalFingerprint, ConfigError, type GroupSpec } from '../config/index.js';
import type { ClientTransport } from '../net/index.js';

export interface TrustOverrides {
  /** `--server-fingerprint`: replaces the file's serverFingerprint. */
  fingerprint?: string;
  /** `--plaintext`: no TLS; only ever by explicit request. */
  plaintext?: boolean;
}

/**
 * How this client reaches the common port, from its group file and the command line.
 * Nothing given means TLS checked against the system's CAs: never plaintext by default.
 */
export function clientTransport(spec: GroupSpec, overrides: TrustOverrides = {}): ClientTransport {
  let fingerprint = spec.serverFingerprint;
  if (overrides.fingerprint !== undefined) {
    fingerprint = canonicalFingerprint(overrides.fingerprint);
    if (fingerprint === undefined) {
      throw new ConfigError('CONFIG_INVALID', '--server-fingerprint: expected sha256: followed by 64 hex digits', spec.file, 'serverFingerprint');
    }
  }
  if (overrides.plaintext === true || spec.plaintext === true) {
    if (fingerprint !== undefined || spec.serverCaFile !== undefined) {
      throw new ConfigError('CONFIG_INVALID', 'plaintext contradicts a pinned fingerprint or serverCa; keep one', spec.file, 'plaintext');
    }
    return { kind: 'plain' };
  }
  return {
    kind: 'tls',
    ...(fingerprint ? { fingerprint } : {}),
    ...(spec.serverCaFile ? { ca: read(spec, spec.serverCaFile, 'serverCa') } : {}),
    ...(spec.clientCertFile && spec.clientKeyFile
      ? { cert: read(spec, spec.clientCertFile, 'clientCert'), key: read(spec, spec.clientKeyFile, 'clientKey') }
      : {}),
  };
}

function read(spec: GroupSpec, file: string, field: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError('CONFIG_READ', `${spec.file}: ${field}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, spec.file, field);
  }
}
