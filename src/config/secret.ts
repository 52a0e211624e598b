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
  equals(other: Secret): boolean {
    return this.#value === other.#value;
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
