import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** 128 bits of randomness, URL-safe: nonces, session ids, pairing ids. */
export function randomId(bytes = 16): string {
  return randomBytes(bytes).toString('base64url');
}

// Each proof names its purpose so that a login proof can never be replayed as a join proof.
export function loginProof(secret: string, nonce: string, group: string, clientId: string): string {
  return hmac(secret, ['login', nonce, group, clientId]);
}

export function joinProof(secret: string, sessionId: string, pairingId: string): string {
  return hmac(secret, ['join', sessionId, pairingId]);
}

/** Constant-time comparison of two hex proofs. */
export function proofsMatch(expected: string, received: string): boolean {
  const a = Buffer.from(expected, 'hex');
  const b = Buffer.from(received, 'hex');
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

function hmac(secret: string, parts: string[]): string {
  const mac = createHmac('sha256', secret);
  // Length-prefix each part so that ("ab","c") and ("a","bc") cannot collide.
  for (const part of parts) mac.update(`${Buffer.byteLength(part)}:${part};`);
  return mac.digest('hex');
}
