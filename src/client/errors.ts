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
