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
