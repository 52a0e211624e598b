import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import { problem, wholeNumber } from './values.js';

/** A non-empty path, resolved against `baseDir` (the directory of the file that names it). */
export function filePath(baseDir: string) {
  const expected = problem('expected a file path');
  return z
    .string(expected)
    .min(1, expected)
    .transform((path) => resolve(baseDir, path));
}

const CIDRS_EXPECTED = problem('expected a list of addresses or CIDRs such as ["10.0.0.0/8", "203.0.113.7"]');
const cidr = z.string(CIDRS_EXPECTED).refine((text) => parseCidr(text) !== undefined, CIDRS_EXPECTED);

/** Who may use an app's public port (server side); part of each app in a group file. */
export const appAccessShape = {
  allow: z
    .union([cidr.transform((one) => [one]), z.array(cidr, CIDRS_EXPECTED)], CIDRS_EXPECTED)
    .optional()
    .meta({ description: 'CIDRs ("10.0.0.0/8", "2001:db8::/32") or bare addresses that may connect; others are closed at accept' }),
  maxConnections: wholeNumber(1).optional().meta({ description: 'User connections of this app at once (held or relayed); more are closed at accept' }),
};

// Without flags: the pattern is also the JSON Schema's, which has none.
const FINGERPRINT = /^\s*[Ss][Hh][Aa]256:((?:[0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2})\s*$/;
const FINGERPRINT_EXPECTED = 'expected sha256: followed by 64 hex digits (as the commonserver prints it)';

/** How the groupclient verifies the commonserver (client side); part of a group file. */
export function serverTrustShape(baseDir: string) {
  return {
    serverFingerprint: z
      .string(FINGERPRINT_EXPECTED)
      .regex(FINGERPRINT, FINGERPRINT_EXPECTED)
      .transform((text) => canonicalFingerprint(text)!)
      .optional()
      .meta({ description: "sha256: and 64 hex digits: the commonserver certificate's fingerprint, as `commonserver init` prints it" }),
    serverCa: filePath(baseDir).optional().meta({ description: "A CA file that signs the server's certificate (relative to this file)" }),
    plaintext: z.boolean(problem('expected true or false')).optional().meta({ description: 'No TLS at all: only against a commonserver with plaintext: true' }),
    clientCert: filePath(baseDir).optional().meta({ description: "Mutual TLS: this client's certificate (with clientKey)" }),
    clientKey: filePath(baseDir).optional().meta({ description: "Mutual TLS: this client's key (with clientCert)" }),
  };
}

type TrustFields = z.output<z.ZodObject<ReturnType<typeof serverTrustShape>>>;

/** How the groupclient verifies the commonserver, as the code reads it (absolute paths). */
export interface ServerTrust {
  /** `sha256:...` of the server's certificate. */
  readonly serverFingerprint?: string;
  readonly serverCaFile?: string;
  /** Only when written explicitly: no TLS at all. */
  readonly plaintext?: boolean;
  readonly clientCertFile?: string;
  readonly clientKeyFile?: string;
}

/** The trust fields checked against each other, or an issue at the field to change. */
export function serverTrust(fields: TrustFields, ctx: z.RefinementCtx): ServerTrust {
  if (fields.plaintext === true && (fields.serverFingerprint !== undefined || fields.serverCa !== undefined)) {
    ctx.addIssue({ code: 'custom', path: ['plaintext'], message: 'plaintext: true contradicts serverFingerprint / serverCa; keep one' });
  }
  if ((fields.clientCert === undefined) !== (fields.clientKey === undefined)) {
    ctx.addIssue({ code: 'custom', path: [fields.clientCert ? 'clientKey' : 'clientCert'], message: 'clientCert and clientKey go together' });
  }
  return {
    ...(fields.serverFingerprint ? { serverFingerprint: fields.serverFingerprint } : {}),
    ...(fields.plaintext ? { plaintext: true } : {}),
    ...(fields.serverCa ? { serverCaFile: fields.serverCa } : {}),
    ...(fields.clientCert && fields.clientKey ? { clientCertFile: fields.clientCert, clientKeyFile: fields.clientKey } : {}),
  };
}

/** `sha256:` + 64 hex digits (colons between bytes allowed), lower-cased without colons. */
export function canonicalFingerprint(text: string): string | undefined {
  const match = FINGERPRINT.exec(text);
  return match ? `sha256:${match[1]!.replace(/:/g, '').toLowerCase()}` : undefined;
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
