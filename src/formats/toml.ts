// TOML secrets: one document of NAME = value (its top level is always a table), read with
// `smol-toml`, which is loaded only when a TOML secret needs it (a separate SEA asset, see
// scripts/build.ts).
//
// Values map as in the JSON and YAML formats (common.ts): a string as is; true/false as
// "true"/"false"; a table, an inline table, an array or an array of tables becomes compact JSON.
// TOML has no null, so every key gives a variable.
//
// The library keeps no source text, so a number comes out as its value: an integer in decimal
// with every digit (0x1F -> 31, 1_000 -> 1000, +5 -> 5); a float as the shortest decimal that
// reads back the same, with ".0" on a whole number so that a float stays a float (1.50 -> 1.5,
// 1e3 -> 1000.0); inf, -inf and nan as those words at the top level, and an error inside JSON,
// which cannot hold them. A date or time becomes its RFC 3339 text (T between date and time,
// a fraction of a second only when it is not zero, to the millisecond: the library keeps no
// more). Nested keys that look like integers come first in their JSON object (JavaScript orders
// such keys first, and the library hands over plain objects).
//
// Dates that do not exist (2023-02-29, 2023-04-31) are refused, as TOML and Python's tomllib
// require; the library would roll them over to the next month. A scan of the text before the
// library runs bounds the number of keys and values (MAX_VALUES) and of escape sequences
// (MAX_ESCAPES), and finds those dates; the
// library itself bounds nesting (MAX_NESTING).
//
// Errors: the library's messages quote the document (a code frame around the error), so they are
// never shown: ours give the line, the column and our own words for the kind of problem. Problems
// found after parsing (a name that is not a variable name, a NUL byte in a value) have no
// position, since the library reports none: they name the variable when its name is valid.

import { parse, TomlDate, TomlError } from 'smol-toml';
import type { FormatError } from '../errors.ts';
import type { SecretEntries } from '../secret.ts';
import {
  ENV_NAME,
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

const HINT = 'the file must be a TOML document of NAME = value';

/** The library's messages (the first line, after its prefix), in our words. */
const KINDS: Readonly<Record<string, string>> = {
  'control characters are not allowed in comments': 'a control character in a comment',
  'control characters are not allowed in strings': 'a control character in a string (escape it, e.g. \\t or \\u0000)',
  'document contains an unsafe property': 'a key that is not allowed',
  'document contains excessively nested structures. aborting.': 'values nested too deeply',
  'each key-value declaration must be followed by an end-of-line':
    'more after a value on its line (one key = value per line)',
  'expected comma or end of structure': 'a missing comma or closing bracket',
  'expected end of table array declaration': "an array-of-tables header not closed with ']]'",
  'illegal character in key': 'a character that a bare key cannot hold (quote the key?)',
  'illegal empty bare key': 'an empty key',
  'illegal leading zero': 'a number with a leading zero',
  'illegal quoted key: multiline strings are not allowed': 'a multi-line string used as a key',
  'illegal underscore': 'a misplaced underscore in a number',
  'illegal character in numeric literal': 'a character that a number cannot hold',
  'incomplete key-value: cannot find end of key': "a key without '= value'",
  'integer value cannot be represented losslessly': 'an integer too large to hold',
  'invalid date': 'an invalid date or time',
  'invalid date-time: date part is malformed': 'a malformed date',
  'invalid date-time: time part is malformed': 'a malformed time',
  'invalid escape: only line-ending whitespace may be escaped': 'a backslash before spaces that do not end the line',
  'invalid non-hex character in unicode escape': 'a \\u or \\U escape with a character that is not hexadecimal',
  'invalid unicode escape': 'a \\u or \\U escape that is not a Unicode scalar value',
  'invalid value': 'an invalid value (a string without quotes?)',
  'trying to redefine an already defined table or value': 'a key or table defined twice',
  'trying to redefine an already defined value': 'a key defined twice',
  'unexpected end of key': 'a missing key',
  'unfinished array': "an array that is never closed with ']'",
  'unfinished numeric value': 'an incomplete number',
  'unfinished string': 'an unterminated string',
  'unfinished table': "an inline table that is never closed with '}'",
  'unrecognised escape sequence': 'an invalid escape sequence in a string',
};

export function parseToml(text: string, name: string): SecretEntries {
  // CRLF reads as LF, also inside multi-line strings, as in the other formats (a lone CR is an error).
  const src = new SourceText(stripBom(text).replaceAll('\r\n', '\n'), name);
  const missingDate = scanToml(src);
  let doc: Record<string, unknown>;
  try {
    doc = parse(src.text, {
      integersAsBigInt: true,
      useLegacyDate: true,
      unsafeKeyBehaviour: 'keep',
      maxDepth: MAX_NESTING,
    });
  } catch (error) {
    if (error instanceof TomlError) throw tomlError(src, error);
    throw error; // not the library's own report: parseEntries withholds it
  }
  if (missingDate !== undefined) {
    throw src.error(missingDate, 'TOML error: a date that does not exist (its day is past the end of its month)', HINT);
  }
  const entries = new EntryCollector(src);
  for (const key of Object.keys(doc)) {
    const where = ENV_NAME.test(key) ? `the value of "${key}"` : 'a value';
    entries.add(key, undefined, convert(src, doc[key], where, 0, true));
  }
  return entries.result();
}

const BARE = /[A-Za-z0-9_:.+-]+/y;
const DATE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})/;

/**
 * One pass over the text outside strings and comments: counts keys and values (a key = value
 * counts two, each `,`, `[`, `{` and each dot of a dotted key one), failing past MAX_VALUES, past
 * MAX_ESCAPES escape sequences in basic strings, or past MAX_NESTING nested
 * arrays and inline tables (before the library builds them), and returns where the first
 * date value that does not exist is. A date-like bare key (`2023-02-29 = 1`, or in a [table]
 * header) is a key, not a date.
 */
function scanToml(src: SourceText): number | undefined {
  const s = src.text;
  const budget = new ValueBudget(src);
  const escapes = new ValueBudget(src, 'escape sequences in strings', MAX_ESCAPES);
  let missing: number | undefined;
  let depth = 0;
  let lineStart = true;
  let header = false;
  let i = 0;
  while (i < s.length) {
    const c = s[i] as string;
    if (c === '\n') {
      lineStart = true;
      i++;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r') {
      i++;
      continue;
    }
    const atLineStart = lineStart;
    lineStart = false;
    if (c === '#') {
      const end = s.indexOf('\n', i);
      i = end === -1 ? s.length : end;
    } else if (c === '"' || c === "'") {
      const end = stringEnd(s, i);
      if (c === '"') {
        for (let e = s.indexOf('\\', i); e !== -1 && e < end; e = s.indexOf('\\', e + 2)) escapes.take(e);
      }
      i = end;
    } else if (c === '[' || c === '{') {
      if (c === '[' && atLineStart && depth === 0) header = true;
      else if (++depth > MAX_NESTING) throw nestedTooDeeply(src, i);
      budget.take(i);
      i++;
    } else if (c === ']' || c === '}') {
      if (header && depth === 0) header = false;
      else if (depth > 0) depth--;
      i++;
    } else if (c === '=' || c === ',') {
      budget.take(i, c === '=' ? 2 : 1);
      i++;
    } else {
      BARE.lastIndex = i;
      const word = BARE.exec(s)?.[0] ?? c;
      let next = i + word.length;
      while (s[next] === ' ' || s[next] === '\t') next++;
      const key = header || s[next] === '=' || s[next] === '.' || !/^[0-9+-]/.test(word);
      // Each part of a dotted key is a table the library builds (a million took 2.4 s and 600 MB).
      if (key) budget.take(i, word.split('.').length - 1);
      const date = DATE.exec(word);
      if (date && !key && missing === undefined && !dayExists(Number(date[1]), Number(date[2]), Number(date[3]))) {
        missing = i;
      }
      i += word.length;
    }
  }
  return missing;
}

/** The index after the string that starts at `i` (or the end of its line if it is never closed). */
function stringEnd(s: string, i: number): number {
  const q = s[i] as string;
  const basic = q === '"';
  const triple = s.startsWith(q.repeat(3), i);
  let j = i + (triple ? 3 : 1);
  while (j < s.length) {
    const c = s[j];
    if (basic && c === '\\') j += 2;
    else if (c === q && (!triple || s.startsWith(q.repeat(3), j))) {
      if (!triple) return j + 1;
      // Up to two quotes may end the content just before the closing three.
      let end = j + 3;
      while (end < j + 5 && s[end] === q) end++;
      return end;
    } else if (c === '\n' && !triple) return j;
    else j++;
  }
  return s.length;
}

function dayExists(year: number, month: number, day: number): boolean {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return days !== undefined && day >= 1 && day <= days;
}

/** Our own message for a library error: its position, and our words for its kind. */
function tomlError(src: SourceText, error: TomlError): FormatError {
  const first = (error.message.split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '');
  const offset = offsetOf(src.text, error.line, error.column);
  // The library stops at the line break of a string that is never closed, and calls it a control character.
  const lineBreak = /[\r\n]/.test(src.text[offset] ?? '') && first === 'control characters are not allowed in strings';
  const kind = lineBreak
    ? 'a line break inside a string (an unterminated string?)'
    : (KINDS[first] ?? 'a syntax error');
  return src.error(offset, `TOML error: ${kind}`, HINT);
}

/** The offset of a 1-based line and UTF-16 column, counted as the library counts them (lines end at \n). */
function offsetOf(text: string, line: number, column: number): number {
  let start = 0;
  for (let l = 1; l < line; l++) {
    const newline = text.indexOf('\n', start);
    if (newline === -1) return text.length;
    start = newline + 1;
  }
  return Math.min(start + Math.max(column, 1) - 1, text.length);
}

function convert(src: SourceText, value: unknown, where: string, depth: number, top: boolean): Value {
  if (depth > MAX_NESTING) throw nestedTooDeeply(src, undefined, `${where} is`);
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return new RawNumber(value.toString());
  if (typeof value === 'number') {
    if (!Number.isFinite(value) && !top) {
      throw src.error(undefined, `${where} holds an infinite or NaN number inside a nested value (JSON cannot)`, HINT);
    }
    return new RawNumber(floatText(value));
  }
  if (value instanceof TomlDate) return dateText(value);
  if (Array.isArray(value)) return value.map((item) => convert(src, item, where, depth + 1, false));
  if (typeof value === 'object' && value !== null) {
    const map = new Map<string, Value>();
    for (const [key, item] of Object.entries(value)) map.set(key, convert(src, item, where, depth + 1, false));
    return map;
  }
  throw src.error(undefined, `${where} is of an unsupported type`, HINT);
}

/** A float as the shortest decimal that reads back the same; whole numbers keep a ".0". */
export function floatText(value: number): string {
  if (Number.isNaN(value)) return 'nan';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  if (Object.is(value, -0)) return '-0.0';
  const text = String(value);
  return /[.e]/.test(text) ? text : `${text}.0`;
}

/** RFC 3339 text of a TOML date, time or date-time; a zero fraction of a second is left out. */
function dateText(date: TomlDate): string {
  return date.toISOString().replace(/\.000(?=$|[Zz+-])/, '');
}
