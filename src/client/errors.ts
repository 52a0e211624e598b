import type { LoginRejectCode } from '../protocol/index.js';

/** The server refused the login; `code` says why (bad secret, unknown group, in use...). */
export class LoginRejectedError extends Error {
  override readonly name = 'LoginRejectedError';
  constructor(
    readonly code: LoginRejectCode,
    readonly reason: string,
  ) {
    super(`login rejected (${code}): ${reason}`);
  }
}

/** Another session of this same client took the group over: this one must not fight back. */
export class TakenOverError extends Error {
  override readonly name = 'TakenOverError';
  readonly code = 'TAKEN_OVER';
}

export const TRUST_ERROR_CODES = ['TLS_FINGERPRINT_MISMATCH', 'TLS_UNTRUSTED'] as const;
export type TrustErrorCode = (typeof TRUST_ERROR_CODES)[number];

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

/** A refusal for good by one server of a cluster: its own certificate, or its own view of the login. */
export interface ServerRefusal {
  server: string;
  code: LoginRejectCode | TrustErrorCode;
  reason: string;
}

/**
 * Every server of a cluster refused, in one round, for the same reason no retry can change
 * (each a refusal for good: the same BAD_SECRET, UNKNOWN_GROUP, certificate mismatch...).
 * The message names each server and what it said.
 */
export class ClusterRefusedError extends Error {
  override readonly name = 'ClusterRefusedError';
  constructor(
    readonly code: ServerRefusal['code'],
    readonly refusals: ServerRefusal[],
  ) {
    // A trust error's reason starts with the server already.
    const each = refusals.map(({ server, reason }) => (reason.startsWith(`${server}: `) ? reason : `${server}: ${reason}`));
    super(`every server refused (${code}): ${each.join('; ')}`);
  }
}
