import { createHmac, randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto';

/**
 * Entropy drawn from the system CSPRNG a few KB at a time: a pooled user costs a pairing id,
 * and one call into OpenSSL per id was a measurable share of a connection's setup. Each byte
 * is handed out once.
 */
const ENTROPY_BATCH = 4096;
const entropy = Buffer.alloc(ENTROPY_BATCH);
let entropyUsed = ENTROPY_BATCH;

/** 128 bits of randomness, URL-safe: nonces, session ids, pairing ids. */
export function randomId(bytes = 16): string {
  if (bytes > ENTROPY_BATCH) return randomBytes(bytes).toString('base64url');
  if (entropyUsed + bytes > ENTROPY_BATCH) {
    randomFillSync(entropy);
    entropyUsed = 0;
  }
  const id = entropy.toString('base64url', entropyUsed, entropyUsed + bytes);
  entropyUsed += bytes;
  return id;
}

// Each proof names its purpose so that a login proof can never be replayed as a join proof.
export function loginProof(secret: string, nonce: string, group: string, clientId: string): string {
  return hmac(secret, ['login', nonce, group, clientId]);
}

export function joinProof(secret: string, sessionId: string, pairingId: string): string {
  return hmac(secret, ['join', sessionId, pairingId]);
}

/** Proves a visitor knows a private app's visitorSecret without sending it; bound to one visit. */
export function visitProof(secret: string, visitorGroup: string, group: string, app: string, visitId: string): string {
  return hmac(secret, ['visit', visitorGroup, group, app, visitId]);
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
