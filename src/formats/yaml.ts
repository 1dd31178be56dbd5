// YAML secrets: one document whose top level is a mapping of NAME: value, read with the `yaml`
// package using the YAML 1.2 core schema (so `yes`, `no`, `on`, `off` stay strings, even under a
// `%YAML 1.1` directive).
//
// Values: a string as is; a number exactly as written in the file (`0123`, `1.50`, `0x1F`,
// `.inf` and `+5` all survive unchanged; the core schema would otherwise turn 0123 into 123);
// true/false (any case the core schema accepts) as "true"/"false"; null (`~`, `null`, nothing)
// omits the entry; a nested mapping or sequence becomes compact JSON. Inside that JSON a number
// keeps its source text when that text is valid JSON, and is otherwise written as its value
// (0x1F -> 31); .inf/.nan cannot be written as JSON and are an error there. Nested keys that
// are numbers or booleans become strings; other non-string keys are an error.
//
// Aliases (*name) are followed, with a cap on expansion. Merge keys (<<) are not part of the
// core schema: `<<` is an ordinary key. Duplicate keys (also nested ones, and keys such as 1
// and "1" that would collide in JSON), several documents, unknown tags and every other error
// or warning the library reports are errors. The library's messages are
// never shown (they can contain the text); ours give the line, column and the error code.

import {
  type Alias,
  type Document,
  type ErrorCode,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  parseDocument,
  type Scalar,
  type YAMLError,
} from 'yaml';
import type { FormatError } from '../errors.ts';
import type { SecretEntries } from '../secret.ts';
import { EntryCollector, MAX_NESTING, RawNumber, SourceText, stripBom, type Value } from './common.ts';

const HINT = 'the file must be one YAML mapping of NAME: value';
const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
/** Nodes visited through aliases in one file: bounds alias expansion ("billion laughs"). */
const MAX_NODES = 100_000;

const CODES: Readonly<Record<ErrorCode, string>> = {
  ALIAS_PROPS: 'an alias with a tag or anchor',
  BAD_ALIAS: 'an alias to an unknown anchor',
  BAD_COLLECTION_TYPE: 'a collection of the wrong type for its tag',
  BAD_DIRECTIVE: 'an invalid directive',
  BAD_DQ_ESCAPE: 'an invalid escape in a double-quoted string',
  BAD_INDENT: 'bad indentation',
  BAD_PROP_ORDER: 'an anchor or tag in the wrong place',
  BAD_SCALAR_START: 'a plain value starting with a reserved character',
  BLOCK_AS_IMPLICIT_KEY: 'a nested block where a key was expected',
  BLOCK_IN_FLOW: 'a block collection inside a flow collection',
  DUPLICATE_KEY: 'a duplicate key',
  IMPOSSIBLE: 'an unparsable construct',
  KEY_OVER_1024_CHARS: 'a key longer than 1024 characters',
  MISSING_CHAR: 'a missing character (an unclosed quote or bracket?)',
  MULTILINE_IMPLICIT_KEY: 'a key that spans lines',
  MULTIPLE_ANCHORS: 'a node with several anchors',
  MULTIPLE_DOCS: 'more than one document (only one is read)',
  MULTIPLE_TAGS: 'a node with several tags',
  NON_STRING_KEY: 'a key that is not a string',
  RESOURCE_EXHAUSTION: 'too many aliases',
  TAB_AS_INDENT: 'a tab used as indentation',
  TAG_RESOLVE_FAILED: 'an unknown tag',
  UNEXPECTED_TOKEN: 'an unexpected token',
};

export function parseYaml(text: string, name: string): SecretEntries {
  const src = new SourceText(stripBom(text), name);
  const doc = parseDocument(src.text, {
    schema: 'core',
    version: '1.2',
    // Duplicate keys are found below, in linear time: the library's own check (uniqueKeys)
    // compares each key with every earlier one, which takes minutes for 50,000 keys.
    uniqueKeys: false,
    prettyErrors: false,
    merge: false,
    keepSourceTokens: false,
  });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) throw yamlError(src, problem);

  const entries = new EntryCollector(src);
  const top = doc.contents;
  if (top === null || (isScalar(top) && top.value === null)) return entries.result();
  if (!isMap(top)) {
    const offset = top.range?.[0] ?? 0;
    throw src.error(offset, `the top level is ${describeNode(top)}; expected a mapping of NAME: value`, HINT);
  }
  const converter = new Converter(src, doc);
  for (const pair of top.items) {
    const key = pair.key;
    const keyOffset = isNodeWithRange(key) ? key.range[0] : 0;
    if (!isScalar(key) || typeof key.value !== 'string') {
      throw src.error(keyOffset, 'a key that is not a valid environment variable name', HINT);
    }
    const value = pair.value;
    const converted = value === null || value === undefined ? null : converter.convert(value, 0, true);
    entries.add(key.value, keyOffset, converted);
  }
  return entries.result();
}

function isNodeWithRange(node: unknown): node is { range: [number, number, number] } {
  return typeof node === 'object' && node !== null && Array.isArray((node as { range?: unknown }).range);
}

function describeNode(node: unknown): string {
  if (isSeq(node)) return 'a sequence';
  if (isAlias(node)) return 'an alias';
  if (isScalar(node)) {
    const v = node.value;
    if (typeof v === 'string') return 'a string';
    if (typeof v === 'number') return 'a number';
    if (typeof v === 'boolean') return 'a boolean';
  }
  return 'not a mapping';
}

/** Our own message for a library error: position and code, never the library's text. */
function yamlError(src: SourceText, problem: YAMLError): FormatError {
  const offset = problem.pos[0];
  return src.error(offset, `YAML error: ${CODES[problem.code] ?? 'an error'} (${problem.code})`, HINT);
}

class Converter {
  readonly #src: SourceText;
  readonly #doc: Document.Parsed;
  /** Nodes visited through aliases so far. */
  #nodes = 0;
  /** Collections being converted: an alias to one of them is a recursive alias. */
  readonly #resolving = new Set<unknown>();
  /** Where the outermost alias being followed is: errors inside it are reported there. */
  #aliasOffset: number | undefined;

  constructor(src: SourceText, doc: Document.Parsed) {
    this.#src = src;
    this.#doc = doc;
  }

  /** A node as a Value; `top` means a top-level value (numbers keep their source text). */
  convert(node: unknown, depth: number, top: boolean): Value {
    const offset = this.#aliasOffset ?? (isNodeWithRange(node) ? node.range[0] : 0);
    if (depth > MAX_NESTING) throw this.#src.error(offset, 'values nested too deeply', HINT);
    if (this.#aliasOffset !== undefined && ++this.#nodes > MAX_NODES) {
      throw this.#src.error(offset, 'too many values (an alias expanding too far?)', HINT);
    }

    if (isAlias(node)) return this.#alias(node, depth, top);
    if (isScalar(node)) return this.#scalar(node, offset, top);
    if (!isSeq(node) && !isMap(node)) throw this.#src.error(offset, 'a value of an unsupported type', HINT);
    this.#resolving.add(node);
    try {
      if (isSeq(node)) return node.items.map((item) => this.convert(item, depth + 1, false));
      const map = new Map<string, Value>();
      const offsets = new Map<string, number>();
      for (const pair of node.items) {
        const keyOffset = this.#aliasOffset ?? (isNodeWithRange(pair.key) ? pair.key.range[0] : offset);
        const key = this.#key(pair.key, keyOffset);
        const first = offsets.get(key);
        if (first !== undefined) {
          const firstLine = this.#src.position(first).line;
          throw this.#src.error(
            keyOffset,
            `a duplicate key in a nested mapping (the first is on line ${firstLine})`,
            HINT,
          );
        }
        offsets.set(key, keyOffset);
        const value = pair.value;
        map.set(key, value === null || value === undefined ? null : this.convert(value, depth + 1, false));
      }
      return map;
    } finally {
      this.#resolving.delete(node);
    }
  }

  #alias(alias: Alias, depth: number, top: boolean): Value {
    const offset = this.#aliasOffset ?? alias.range?.[0] ?? 0;
    const target = alias.resolve(this.#doc);
    if (target === undefined) throw this.#src.error(offset, 'an alias to an unknown anchor', HINT);
    if (this.#resolving.has(target)) throw this.#src.error(offset, 'a recursive alias', HINT);
    const outermost = this.#aliasOffset === undefined;
    if (outermost) this.#aliasOffset = offset;
    try {
      return this.convert(target, depth + 1, top);
    } finally {
      if (outermost) this.#aliasOffset = undefined;
    }
  }

  #scalar(node: Scalar, offset: number, top: boolean): Value {
    const v = node.value;
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') {
      const source = typeof node.source === 'string' ? node.source : String(v);
      if (top || JSON_NUMBER.test(source)) return new RawNumber(source);
      if (!Number.isFinite(v)) {
        throw this.#src.error(offset, 'an infinite or NaN number inside a nested value (JSON cannot hold it)', HINT);
      }
      return new RawNumber(JSON.stringify(v));
    }
    throw this.#src.error(offset, 'a value of an unsupported type', HINT);
  }

  #key(key: unknown, offset: number): string {
    if (isAlias(key)) throw this.#src.error(offset, 'an alias used as a key', HINT);
    if (isScalar(key)) {
      const v = key.value;
      if (typeof v === 'string') return v;
      if (typeof v === 'boolean') return v ? 'true' : 'false';
      if (typeof v === 'number') {
        const source = typeof key.source === 'string' ? key.source : String(v);
        return JSON_NUMBER.test(source) ? source : String(v);
      }
    }
    throw this.#src.error(offset, 'a nested key that is not a string, number or boolean', HINT);
  }
}
