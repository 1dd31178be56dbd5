// Plaintext travels in a Secret, whose every printable form is "[redacted]": a stray
// console.log, template string, JSON.stringify or util.inspect cannot leak it.

import { FormatError } from './errors.ts';

const REDACTED = '[redacted]';
const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

export class Secret {
  readonly #bytes: Buffer;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  get byteLength(): number {
    return this.#bytes.byteLength;
  }

  /** The plaintext bytes. Call only where they are handed to a sink. */
  reveal(): Buffer {
    return this.#bytes;
  }

  /** The plaintext as UTF-8 text; invalid UTF-8 is a FormatError naming `what`, never quoting bytes. */
  text(what: string): string {
    try {
      return utf8.decode(this.#bytes);
    } catch {
      throw new FormatError(`${what} is not valid UTF-8 text`, 'use --format raw with --out for binary secrets');
    }
  }

  /** Overwrite the plaintext in memory once no sink needs it any more. */
  wipe(): void {
    this.#bytes.fill(0);
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspectSymbol](): string {
    return REDACTED;
  }
}

/**
 * Parsed entries (NAME -> value). Like Secret, it prints as "[redacted]" but lists its names,
 * which are safe to log.
 */
export class SecretEntries {
  readonly #map: Map<string, string>;

  constructor(map: Map<string, string> = new Map()) {
    this.#map = map;
  }

  get size(): number {
    return this.#map.size;
  }

  names(): string[] {
    return [...this.#map.keys()];
  }

  has(name: string): boolean {
    return this.#map.has(name);
  }

  get(name: string): string | undefined {
    return this.#map.get(name);
  }

  set(name: string, value: string): void {
    this.#map.set(name, value);
  }

  entries(): IterableIterator<[string, string]> {
    return this.#map.entries();
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspectSymbol](): string {
    return `SecretEntries(${this.names().join(', ')}) [redacted]`;
  }
}
