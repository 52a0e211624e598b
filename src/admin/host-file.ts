import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { formatHostPort, type GroupSpec, type HostPort } from '../config/index.js';
import type { AdminErrorCode } from './http-util.js';

/** What a host file says instead of the secret when it is printed without it. */
const SECRET_PLACEHOLDER = '${NTP_GROUP_SECRET}';

export interface HostFileOptions {
  /** The `server:` line when the group's file names none: where hosts reach the common port. */
  server: HostPort;
  /** `sha256:…` of the server's certificate; undefined on a plaintext server. */
  fingerprint: string | undefined;
  /** The secret itself (only for whoever holds the admin token or the server's files), else a `${VAR}` reference. */
  withSecret: boolean;
}

/** The registry cannot give the group's file (a cluster's registry lives in etcd). */
export class HostFileError extends Error {
  readonly code = 'HOSTFILE_UNAVAILABLE' satisfies AdminErrorCode;
}

/**
 * The group file as the host needs it: the registry's copy (apps and comments kept) with
 * `server:`, the fingerprint of the certificate the server really uses, and the secret
 * written in (a `secretFile:` on the server means nothing on the host).
 */
export async function hostFileText(spec: GroupSpec, options: HostFileOptions): Promise<string> {
  let text: string;
  try {
    text = await readFile(spec.file, 'utf8');
  } catch (error) {
    throw new HostFileError(
      `group "${spec.name}": its file ${spec.file} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  const doc = parseDocument(text);
  if (!doc.has('server') && !doc.has('servers')) doc.set('server', formatHostPort(options.server));
  // The certificate in use wins over an older pin; a CA-based trust is left as the operator wrote it.
  if (options.fingerprint !== undefined && !doc.has('serverCa')) doc.set('serverFingerprint', options.fingerprint);
  doc.delete('secretFile');
  doc.set('secret', options.withSecret ? spec.secret.reveal() : SECRET_PLACEHOLDER);
  const header = options.withSecret
    ? `# Host file of group ${spec.name}: it holds the secret, keep it mode 600.\n# Run on the host: groupclient --config ${spec.name}.yaml\n`
    : `# Host file of group ${spec.name}, without its secret: give it as ${SECRET_PLACEHOLDER.slice(2, -1)} in the environment.\n# Run on the host: groupclient --config ${spec.name}.yaml\n`;
  return header + doc.toString();
}
