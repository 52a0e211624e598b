import { X509Certificate } from 'node:crypto';

/**
 * Certificate fingerprints as users write them: `sha256:` then 64 hex digits (colons between
 * bytes are accepted, case does not matter). One canonical form for printing and comparing.
 */
export function formatFingerprint(hex: string): string {
  return `sha256:${hex.replace(/:/g, '').toLowerCase()}`;
}

/** SHA-256 fingerprint of the first certificate in a PEM text. */
export function certificateFingerprint(pem: string | Buffer): string {
  return formatFingerprint(new X509Certificate(pem).fingerprint256);
}

export type TrustErrorCode = 'TLS_FINGERPRINT_MISMATCH' | 'TLS_UNTRUSTED';

/**
 * The server could not be verified. Never retried and never downgraded to plaintext: either
 * this is the wrong server, or its certificate changed and a person has to look.
 */
export class ServerTrustError extends Error {
  override readonly name = 'ServerTrustError';
  constructor(
    readonly code: TrustErrorCode,
    message: string,
  ) {
    super(message);
  }
}
