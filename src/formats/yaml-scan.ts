// What the YAML reader checks around the `yaml` library: before it builds anything, a scan of its
// tokens that bounds nesting, values, escapes and tokens (see yaml.ts for why); after, our own
// message for each error code it reports, which never quotes the text.

import { CST, type ErrorCode, Lexer, type YAMLError } from 'yaml';
import type { FormatError } from '../errors.ts';
import { MAX_ESCAPES, MAX_NESTING, nestedTooDeeply, type SourceText, ValueBudget } from './common.ts';

const HINT = 'the file must be one YAML mapping of NAME: value';

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

/**
 * Refuses, from the library's tokens alone (linear time, nothing kept), a document nested deeper
 * than MAX_NESTING, with more than MAX_VALUES keys and values (or anchors and tags), or with
 * more than MAX_TOKENS tokens. Block nesting is estimated from
 * the columns of the indicators (`-`, `?`, the start of a `key:`) still open on a line, flow
 * nesting by counting brackets; the converter checks the exact depth afterwards.
 */
export function checkShape(src: SourceText): void {
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

/** Our own message for a library error: position and code, never the library's text. */
export function yamlError(src: SourceText, problem: YAMLError): FormatError {
  const offset = problem.pos[0];
  return src.error(offset, `YAML error: ${CODES[problem.code] ?? 'an error'} (${problem.code})`, HINT);
}
