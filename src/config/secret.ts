import { createHash, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';

/**
 * A secret that cannot leak by accident: printing, inspecting or serialising it shows a mask.
 * Only `reveal()` gives the value, and only the HMAC code calls it.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  /** Compared in time that depends neither on where two secrets differ nor on their lengths. */
  equals(other: Secret): boolean {
    return timingSafeEqual(digest(this.#value), digest(other.#value));
  }
  toString(): string {
    return '[secret]';
  }
  toJSON(): string {
    return '[secret]';
  }
  [inspect.custom](): string {
    return '[secret]';
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
