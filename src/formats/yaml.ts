// YAML secrets: one document whose top level is a mapping of NAME: value, read with the `yaml`
// package using the YAML 1.2 core schema (so `yes`, `no`, `on`, `off` stay strings, even under a
// `%YAML 1.1` directive).
//
// Values: a string as is; a number exactly as written in the file, at every depth (`0123`,
// `1.50`, `0x1F`, `.inf` and `+5` all survive unchanged; the core schema would otherwise turn
// 0123 into 123); true/false (any case the core schema accepts) as "true"/"false"; null (`~`,
// `null`, nothing) omits the entry; a nested mapping or sequence becomes compact JSON. Inside that
// JSON a number whose text is a JSON number is written as that number, and any other number as a
// JSON string of its text ({pin: 0123} -> {"pin":"0123"}), so no digit is lost. Nested keys that
// are numbers (as written) or booleans become strings; other non-string keys are an error.
//
// Aliases (*name) are followed, with a cap on expansion. Merge keys are merged, as YAML 1.1 and
// most readers (PyYAML, the `yaml` package's merge option) do: `<<: *base` or `<<: [*a, *b]`
// adds the keys of those mappings that the mapping does not set itself (an earlier source wins
// over a later one), in the place of the `<<`; a quoted "<<" is an ordinary key; a second `<<`
// in one mapping, or one whose value is not a mapping or a list of mappings, is an error.
// Duplicate keys (also nested ones, and keys that would collide in JSON), several documents,
// unknown tags and every other error or warning the library reports are errors. The library's
// messages are never shown (they can contain the text); ours give the line, column and the code.
//
// Before the library builds anything, a scan of its tokens bounds nesting (MAX_NESTING), the
// number of keys and values (MAX_VALUES), of escapes (MAX_ESCAPES) and of tokens: the library takes time and memory out of
// proportion to deep nesting (6 MB of `[` took 48 s and 3 GB, and it then reported a stack
// overflow as "aliases"), to anchors and tags, and to comment and blank lines.

import {
  type Alias,
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  parseDocument,
  type Scalar,
  type YAMLMap,
} from 'yaml';
import type { SecretEntries } from '../secret.ts';
import { EntryCollector, MAX_NESTING, nestedTooDeeply, RawNumber, SourceText, stripBom, type Value } from './common.ts';
import { checkShape, yamlError } from './yaml-scan.ts';

const HINT = 'the file must be one YAML mapping of NAME: value';
const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
/** Nodes visited through aliases in one file: bounds alias expansion ("billion laughs"). */
const MAX_NODES = 100_000;
export function parseYaml(text: string, name: string): SecretEntries {
  const src = new SourceText(stripBom(text), name);
  checkShape(src);
  const doc = parseDocument(src.text, {
    schema: 'core',
    version: '1.2',
    // Duplicate keys are found below, in linear time: the library's own check (uniqueKeys)
    // compares each key with every earlier one, which takes minutes for 50,000 keys.
    uniqueKeys: false,
    prettyErrors: false,
    // Marks a plain `<<` key (its value becomes a symbol); the merging itself is done below.
    merge: true,
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
  converter.entriesOf(top, (key, offset, value) => entries.add(key, offset, value));
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

/** A plain `<<` key, which the library marks with a symbol under the merge option. */
function isMergeKey(key: unknown): boolean {
  return isScalar(key) && typeof key.value === 'symbol';
}

/** One key of a mapping, its own or merged in: where to report it, and its value node. */
interface MapEntry {
  readonly key: string;
  readonly offset: number;
  readonly value: unknown;
  /** Merged from an alias: converting it counts against the expansion cap, errors point at the `<<`. */
  readonly viaAlias: boolean;
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

  /** The top-level mapping: each key (a string, checked by `add`) with its converted value. */
  entriesOf(top: YAMLMap, add: (key: string, offset: number, value: Value) => void): void {
    this.#resolving.add(top);
    const keyOf = (key: unknown, offset: number): string => {
      if (!isScalar(key) || typeof key.value !== 'string') {
        throw this.#src.error(offset, 'a key that is not a valid environment variable name', HINT);
      }
      return key.value;
    };
    for (const entry of this.#entries(top, 0, keyOf)) {
      const value = this.#entryValue(entry, 0, true);
      add(entry.key, entry.offset, value);
    }
    this.#resolving.delete(top);
  }

  /** A node as a Value; `top` means a top-level value (numbers keep their source text). */
  convert(node: unknown, depth: number, top: boolean): Value {
    const offset = this.#aliasOffset ?? (isNodeWithRange(node) ? node.range[0] : 0);
    if (depth > MAX_NESTING) throw nestedTooDeeply(this.#src, offset);
    this.#count(offset);

    if (isAlias(node)) return this.#alias(node, depth, top);
    if (isScalar(node)) return this.#scalar(node, offset, top);
    if (!isSeq(node) && !isMap(node)) throw this.#src.error(offset, 'a value of an unsupported type', HINT);
    this.#resolving.add(node);
    try {
      if (isSeq(node)) return node.items.map((item) => this.convert(item, depth + 1, false));
      const map = new Map<string, Value>();
      const offsets = new Map<string, number>();
      for (const entry of this.#entries(node, depth, (key, keyOffset) => this.#key(key, keyOffset))) {
        const first = offsets.get(entry.key);
        if (first !== undefined) {
          const firstLine = this.#src.position(first).line;
          throw this.#src.error(
            entry.offset,
            `a duplicate key in a nested mapping (the first is on line ${firstLine})`,
            HINT,
          );
        }
        offsets.set(entry.key, entry.offset);
        map.set(entry.key, this.#entryValue(entry, depth + 1, false));
      }
      return map;
    } finally {
      this.#resolving.delete(node);
    }
  }

  /** Counts `n` nodes reached through an alias against the expansion cap. */
  #count(offset: number, n = 1): void {
    if (this.#aliasOffset === undefined) return;
    this.#nodes += n;
    if (this.#nodes > MAX_NODES) {
      throw this.#src.error(offset, 'too many values (an alias expanding too far?)', HINT);
    }
  }

  #entryValue(entry: MapEntry, depth: number, top: boolean): Value {
    const { value } = entry;
    if (value === null || value === undefined) return null;
    if (!entry.viaAlias || this.#aliasOffset !== undefined) return this.convert(value, depth, top);
    this.#aliasOffset = entry.offset;
    try {
      return this.convert(value, depth, top);
    } finally {
      this.#aliasOffset = undefined;
    }
  }

  /**
   * The keys of `map` in order, a `<<` replaced by the keys it merges in that `map` does not set
   * itself. Duplicates among the mapping's own keys are left for the caller to report.
   */
  #entries(map: YAMLMap, depth: number, keyOf: (key: unknown, offset: number) => string): MapEntry[] {
    const own: (MapEntry | undefined)[] = [];
    const ownKeys = new Set<string>();
    let merge: { offset: number; value: unknown } | undefined;
    for (const pair of map.items) {
      const offset = this.#aliasOffset ?? (isNodeWithRange(pair.key) ? pair.key.range[0] : 0);
      if (isMergeKey(pair.key)) {
        if (merge !== undefined) {
          throw this.#src.error(
            offset,
            'a second merge key (<<) in one mapping',
            'merge several at once: <<: [*a, *b]',
          );
        }
        merge = { offset, value: pair.value };
        own.push(undefined);
        continue;
      }
      const key = keyOf(pair.key, offset);
      ownKeys.add(key);
      own.push({ key, offset, value: pair.value, viaAlias: false });
    }
    if (merge === undefined) return own as MapEntry[];
    const result: MapEntry[] = [];
    for (const entry of own) {
      if (entry !== undefined) {
        result.push(entry);
        continue;
      }
      const merged = new Set<string>();
      for (const source of this.#mergeSources(merge.value, merge.offset, depth)) {
        for (const item of source.entries) {
          if (ownKeys.has(item.key) || merged.has(item.key)) continue;
          merged.add(item.key);
          result.push({ key: item.key, offset: merge.offset, value: item.value, viaAlias: source.viaAlias });
        }
      }
    }
    return result;
  }

  /** The mappings a `<<` names (one, or a sequence of them), each with its own merges applied. */
  #mergeSources(value: unknown, offset: number, depth: number): { entries: MapEntry[]; viaAlias: boolean }[] {
    if (depth > MAX_NESTING) throw nestedTooDeeply(this.#src, offset);
    const notMapping = () =>
      this.#src.error(offset, 'a merge key (<<) whose value is not a mapping or a list of mappings', HINT);
    const one = (node: unknown, viaAlias: boolean): { entries: MapEntry[]; viaAlias: boolean } => {
      let target = node;
      let alias = viaAlias;
      if (isAlias(node)) {
        target = node.resolve(this.#doc);
        if (target === undefined) throw this.#src.error(offset, 'an alias to an unknown anchor', HINT);
        alias = true;
      }
      if (!isMap(target)) throw notMapping();
      if (this.#resolving.has(target)) throw this.#src.error(offset, 'a recursive alias', HINT);
      this.#resolving.add(target);
      const outer = this.#aliasOffset;
      if (alias && outer === undefined) this.#aliasOffset = offset;
      try {
        const entries = this.#entries(target, depth + 1, (key, keyOffset) => this.#key(key, keyOffset));
        this.#count(offset, entries.length + 1);
        return { entries, viaAlias: alias };
      } finally {
        this.#aliasOffset = outer;
        this.#resolving.delete(target);
      }
    };
    if (isSeq(value)) return value.items.map((item) => one(item, false));
    if (isAlias(value)) {
      const target = value.resolve(this.#doc);
      if (isSeq(target)) return target.items.map((item) => one(item, true));
    }
    return [one(value, false)];
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
      // The text as written, at every depth: inside JSON, as a string when it is not a JSON number.
      if (top || JSON_NUMBER.test(source)) return new RawNumber(source);
      return source;
    }
    if (typeof v === 'symbol') throw this.#src.error(offset, 'a merge key (<<) used as a value', HINT);
    throw this.#src.error(offset, 'a value of an unsupported type', HINT);
  }

  #key(key: unknown, offset: number): string {
    if (isAlias(key)) throw this.#src.error(offset, 'an alias used as a key', HINT);
    if (isScalar(key)) {
      const v = key.value;
      if (typeof v === 'string') return v;
      if (typeof v === 'boolean') return v ? 'true' : 'false';
      // A number key is its text as written, like a number value.
      if (typeof v === 'number') return typeof key.source === 'string' ? key.source : String(v);
    }
    throw this.#src.error(offset, 'a nested key that is not a string, number or boolean', HINT);
  }
}
