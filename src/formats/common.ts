// Shared by the parsers: positions, errors, the intermediate value tree, and the collector that
// turns NAME -> value pairs into SecretEntries.
//
// THE RULE for every message built here and in the parsers: never include any part of the
// secret text. A message names the file, a line and column, and the KIND of thing found. The
// only text taken from the file is a variable name, and only once it is known to be a valid
// identifier (the left-hand side of an assignment, which is not secret).

import { FormatError } from '../errors.ts';
import { SecretEntries } from '../secret.ts';

/** A valid environment variable name (POSIX portable subset). */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Deepest nesting of lists/objects accepted by the parsers (guards the call stack). */
export const MAX_NESTING = 256;

/**
 * Most keys and values one file may hold. With MAX_NESTING it bounds the time and memory a parse
 * takes by the file's shape, not only its size: YAML, the costliest, takes about 2.5 s and 400 MB
 * at all its limits (a million values took 7 s and 1.1 GB).
 */
export const MAX_VALUES = 100_000;

/**
 * Most escape sequences in the strings of one file, for the YAML and TOML libraries, which build
 * an unescaped string piece by piece (40 MB of "\n" escapes took them 900 MB); our own parsers
 * build strings in one buffer and need no such limit.
 */
export const MAX_ESCAPES = 1_000_000;

const LIMIT_WHY = "secret-fetch's limit, which bounds the time and memory a parse takes";

/** The error for a file past MAX_NESTING; `what` says what is nested ("values", "the value of \"A\" is"). */
export function nestedTooDeeply(src: SourceText, offset: number | undefined, what = 'values'): FormatError {
  return src.error(
    offset,
    `${what} nested too deeply (more than ${MAX_NESTING} levels, ${LIMIT_WHY})`,
    'flatten the structure, or pass the file whole with --format raw and --out',
  );
}

/** The error for a file with more than `limit` of `what` (keys and values, by default). */
export function tooManyValues(
  src: SourceText,
  offset: number | undefined,
  what = 'keys and values',
  limit = MAX_VALUES,
): FormatError {
  return src.error(
    offset,
    `more than ${limit.toLocaleString('en-US')} ${what} in one file (${LIMIT_WHY})`,
    'split it into several secrets, or pass it whole with --format raw and --out',
  );
}

/** Counts the keys and values (or other `what`) a parser creates, failing past `limit`. */
export class ValueBudget {
  readonly #src: SourceText;
  readonly #what: string;
  readonly #limit: number;
  #left: number;

  constructor(src: SourceText, what = 'keys and values', limit = MAX_VALUES) {
    this.#src = src;
    this.#what = what;
    this.#limit = limit;
    this.#left = limit;
  }

  /** `n` more, found at `offset`. */
  take(offset: number | undefined, n = 1): void {
    this.#left -= n;
    if (this.#left < 0) throw tooManyValues(this.#src, offset, this.#what, this.#limit);
  }
}

/**
 * Builds a string from pieces in a buffer of UTF-16 code units. Appending millions of small
 * strings with += (one per escape sequence) costs about 45 bytes each until the text is flattened:
 * 40 MB of "\n" escapes took 900 MB.
 */
export class TextBuilder {
  #units = new Uint16Array(64);
  #length = 0;

  /** Appends `text.slice(from, to)`. */
  slice(text: string, from: number, to: number): void {
    this.#reserve(to - from);
    for (let i = from; i < to; i++) this.#units[this.#length++] = text.charCodeAt(i);
  }

  text(text: string): void {
    this.slice(text, 0, text.length);
  }

  toString(): string {
    let result = '';
    for (let i = 0; i < this.#length; i += 8192) {
      result += String.fromCharCode(...this.#units.subarray(i, Math.min(this.#length, i + 8192)));
    }
    return result;
  }

  #reserve(n: number): void {
    if (this.#length + n <= this.#units.length) return;
    const grown = new Uint16Array(Math.max(this.#units.length * 2, this.#length + n));
    grown.set(this.#units.subarray(0, this.#length));
    this.#units = grown;
  }
}

export interface Position {
  /** 1-based line. */
  readonly line: number;
  /** 1-based column, counted in Unicode code points. */
  readonly col: number;
}

/** Drop a leading UTF-8 byte order mark, as most tools reading these files do. */
export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Turn CRLF and lone CR line endings into LF (line and column numbers are unaffected). */
export function normalizeNewlines(text: string): string {
  return text.replace(/\r\n?/g, '\n');
}

/** The text being parsed and its file name: maps offsets to positions and builds errors. */
export class SourceText {
  readonly text: string;
  readonly name: string;

  constructor(text: string, name: string) {
    this.text = text;
    this.name = name;
  }

  /**
   * Scans from the start each time: positions are needed only for an error or two, and a table of
   * line starts would cost 8 bytes per line (300 MB for a file of 40 million empty lines).
   */
  position(offset: number): Position {
    const text = this.text;
    const target = Math.max(0, Math.min(offset, text.length));
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < target; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x0a || (c === 0x0d && text.charCodeAt(i + 1) !== 0x0a)) {
        line++;
        lineStart = i + 1;
      }
    }
    let col = 1;
    for (let i = lineStart; i < target; i++) {
      const code = text.charCodeAt(i);
      // The second half of a surrogate pair does not start a new code point.
      if (!(code >= 0xdc00 && code <= 0xdfff && i > lineStart && isHighSurrogate(text.charCodeAt(i - 1)))) col++;
    }
    return { line, col };
  }

  /**
   * `name:line:col: message` as a FormatError, or `name: message` when the position is unknown
   * (a parser that keeps no offsets). `message` must not quote the secret text.
   */
  error(offset: number | undefined, message: string, hint?: string): FormatError {
    if (offset === undefined) return new FormatError(`${this.name}: ${message}`, hint);
    const { line, col } = this.position(offset);
    return new FormatError(`${this.name}:${line}:${col}: ${message}`, hint);
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** A number kept as text, so that nothing is lost to floating point (big integers, "1.50"). */
export class RawNumber {
  /** Valid JSON number text. */
  readonly text: string;

  constructor(text: string) {
    this.text = text;
  }
}

/** What the parsers produce for a value, before it becomes an environment string. */
export type Value = null | boolean | string | RawNumber | readonly Value[] | ReadonlyMap<string, Value>;

/** Compact JSON for a value (no spaces); numbers are written from their kept text. */
export function toJsonText(value: Value): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof RawNumber) return value.text;
  if (value instanceof Map) {
    const parts: string[] = [];
    for (const [key, item] of value) parts.push(`${JSON.stringify(key)}:${toJsonText(item)}`);
    return `{${parts.join(',')}}`;
  }
  return `[${(value as readonly Value[]).map(toJsonText).join(',')}]`;
}

/** The environment string for a top-level value; undefined (null/None) means "omit the entry". */
export function toEnvValue(value: Value): string | undefined {
  if (value === null) return undefined;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return value;
  if (value instanceof RawNumber) return value.text;
  return toJsonText(value);
}

/**
 * Collects NAME -> value pairs, checking each name, duplicates and the value's characters.
 * `offset` is where the name appears in the source; it places errors and duplicate reports
 * (undefined: unknown, for a parser that keeps no offsets and rejects duplicates itself).
 */
export class EntryCollector {
  readonly #src: SourceText;
  readonly #values = new Map<string, string>();
  readonly #seen = new Map<string, number | undefined>();

  constructor(src: SourceText) {
    this.#src = src;
  }

  add(name: string, offset: number | undefined, value: Value): void {
    const src = this.#src;
    if (!ENV_NAME.test(name)) {
      // The name is not quoted: it is not an identifier, so it may be secret text.
      throw src.error(
        offset,
        'a name that is not a valid environment variable name',
        'names must be letters, digits and _, not starting with a digit',
      );
    }
    if (this.#seen.has(name)) {
      const first = this.#seen.get(name);
      if (first === undefined || offset === undefined)
        throw src.error(offset, `"${name}" is defined twice`, 'keep one of them');
      const firstLine = src.position(first).line;
      const line = src.position(offset).line;
      throw src.error(
        offset,
        `"${name}" is defined twice, on line ${firstLine} and on line ${line}`,
        'keep one of them',
      );
    }
    this.#seen.set(name, offset);
    const env = toEnvValue(value);
    if (env === undefined) return;
    if (env.includes('\0')) {
      throw src.error(offset, `the value of "${name}" contains a NUL byte, which an environment variable cannot hold`);
    }
    if (!env.isWellFormed()) {
      throw src.error(
        offset,
        `the value of "${name}" contains an unpaired UTF-16 surrogate, which is not valid Unicode`,
      );
    }
    this.#values.set(name, env);
  }

  result(): SecretEntries {
    return new SecretEntries(this.#values);
  }
}

/** "a"/"an" + noun, for messages that describe a kind of thing. */
export function describeJsType(value: Value): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return 'a boolean';
  if (typeof value === 'string') return 'a string';
  if (value instanceof RawNumber) return 'a number';
  if (value instanceof Map) return 'an object';
  return 'an array';
}
