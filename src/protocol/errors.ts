/** Errors that a peer caused by what it sent. `code` is stable; tests assert on it. */
export const PROTOCOL_ERROR_CODES = [
  'FRAME_TOO_LARGE',
  'TRUNCATED_FRAME',
  'BAD_JSON',
  'BAD_MESSAGE',
  'UNEXPECTED_MESSAGE',
  'VERSION_MISMATCH',
  'HANDSHAKE_TIMEOUT',
  'CONNECTION_CLOSED',
  // Not what it sent but what it did not read: more queued for it than allowed.
  'SLOW_PEER',
] as const;
export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number];

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
