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
  CST,
  type Document,
  type ErrorCode,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  Lexer,
  parseDocument,
  type Scalar,
  type YAMLError,
  type YAMLMap,
} from 'yaml';
import type { FormatError } from '../errors.ts';
import type { SecretEntries } from '../secret.ts';
import {
  EntryCollector,
  MAX_ESCAPES,
  MAX_NESTING,
  nestedTooDeeply,
  RawNumber,
  SourceText,
  stripBom,
  type Value,
  ValueBudget,
} from './common.ts';

const HINT = 'the file must be one YAML mapping of NAME: value';
const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
/** Nodes visited through aliases in one file: bounds alias expansion ("billion laughs"). */
const MAX_NODES = 100_000;
/**
 * Tokens of the library's lexer in one file: every indicator, space, comment and line break is
 * one, and so is each line of a multi-line scalar. The library takes about 1.5 µs and 50 bytes a token (10 million comment lines: 30 s, 1.2 GB).
 */
const MAX_TOKENS = 1_000_000;

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

/**
 * Refuses, from the library's tokens alone (linear time, nothing kept), a document nested deeper
 * than MAX_NESTING, with more than MAX_VALUES keys and values (or anchors and tags), or with
 * more than MAX_TOKENS tokens. Block nesting is estimated from
 * the columns of the indicators (`-`, `?`, the start of a `key:`) still open on a line, flow
 * nesting by counting brackets; the converter checks the exact depth afterwards.
 */
function checkShape(src: SourceText): void {
  const budget = new ValueBudget(src);
  const tokens = new ValueBudget(
    src,
    'YAML tokens and lines (keys, values, indicators, comments, line breaks)',
    MAX_TOKENS,
  );
  const properties = new ValueBudget(src, 'anchors and tags');
  const escapes = new ValueBudget(src, 'escape sequences in quoted strings', MAX_ESCAPES);
  const block: number[] = [];
  let flow = 0;
  let offset = 0;
  let lineStart = 0;
  /** Column where the node being written on this line began (a key), or -1. */
  let nodeColumn = -1;
  /** An indicator (`-`, `?`, `:`) waits for its node; if none comes, it has an empty one. */
  let pending = false;
  let scalarNext = false;
  const open = (column: number, at: number): void => {
    while ((block.at(-1) ?? -1) >= column) block.pop();
    block.push(column);
    if (block.length + flow > MAX_NESTING) throw nestedTooDeeply(src, at);
  };
  for (const token of new Lexer().lex(src.text)) {
    const at = offset;
    tokens.take(at);
    const type = scalarNext ? 'scalar-text' : CST.tokenType(token);
    scalarNext = false;
    // Control tokens are the lexer's own marks, not part of the text.
    if (type !== 'doc-mode' && type !== 'flow-error-end' && type !== 'scalar') offset += token.length;
    const newline = token.lastIndexOf('\n');
    if (newline !== -1 && type !== 'scalar') {
      lineStart = at + newline + 1;
      // The lines of a multi-line scalar cost the library like tokens (5 million: 7 s, 1.2 GB).
      if (type !== 'newline') tokens.take(at, countOf(token, '\n'));
    }
    const column = at - lineStart;
    switch (type) {
      case 'scalar':
        scalarNext = true;
        if (nodeColumn === -1) nodeColumn = column;
        budget.take(at);
        pending = false;
        break;
      case 'alias':
      case 'single-quoted-scalar':
      case 'double-quoted-scalar':
        if (type === 'double-quoted-scalar') escapes.take(at, escapesIn(token));
        // In single quotes, '' is the escape of one quote.
        if (type === 'single-quoted-scalar') escapes.take(at, countOf(token.slice(1, -1), "''"));
        if (nodeColumn === -1) nodeColumn = column;
        budget.take(at);
        pending = false;
        break;
      case 'anchor':
      case 'tag':
        if (nodeColumn === -1) nodeColumn = column;
        properties.take(at);
        break;
      case 'block-scalar-header':
        if (nodeColumn === -1) nodeColumn = column;
        break;
      case 'flow-map-start':
      case 'flow-seq-start':
        if (nodeColumn === -1) nodeColumn = column;
        budget.take(at);
        pending = false;
        flow++;
        if (block.length + flow > MAX_NESTING) throw nestedTooDeeply(src, at);
        break;
      case 'flow-map-end':
      case 'flow-seq-end':
      case 'comma':
        if (pending) budget.take(at);
        pending = type === 'comma';
        if (type !== 'comma' && flow > 0) flow--;
        break;
      case 'seq-item-ind':
      case 'explicit-key-ind':
      case 'map-value-ind':
        if (pending) budget.take(at);
        pending = true;
        if (flow === 0) open(type === 'map-value-ind' && nodeColumn !== -1 ? nodeColumn : column, at);
        nodeColumn = -1;
        break;
      case 'newline':
        nodeColumn = -1;
        break;
      case 'doc-start':
      case 'doc-end':
        if (pending) budget.take(at);
        pending = false;
        block.length = 0;
        flow = 0;
        break;
      default:
        break;
    }
  }
  if (pending) budget.take(offset);
}

/** Occurrences of `part` in `text`, not overlapping. */
function countOf(text: string, part: string): number {
  let n = 0;
  for (let i = text.indexOf(part); i !== -1; i = text.indexOf(part, i + part.length)) n++;
  return n;
}

/** Escape sequences in a double-quoted scalar (a backslash and what it escapes). */
function escapesIn(token: string): number {
  let n = 0;
  for (let i = token.indexOf('\\'); i !== -1; i = token.indexOf('\\', i + 2)) n++;
  return n;
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
