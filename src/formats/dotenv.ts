// The dotenv dialect secret-fetch reads. It follows what users of the `dotenv` npm package and
// `docker --env-file` expect, minus anything that could run code or change a value behind the
// writer's back:
//
//   # a comment line                      blank lines and full-line comments are skipped
//   KEY=value                             unquoted: trimmed on both sides, taken literally
//   export KEY=value                      an optional `export ` prefix is ignored
//   KEY = value                           spaces around `=` are allowed
//   KEY=value # note                      a `#` preceded by a space or tab starts a comment...
//   KEY=pass#word                         ...a `#` inside a word does not ("pass#word"), as in
//   KEY=#x                                python-dotenv (npm dotenv reads "pass"); `notes` gets a
//                                         warning naming each such entry; `KEY= #x` is empty
//   KEY=                                  an empty value
//   KEY='single $(quoted)'                single quotes: literal, no escapes, may span lines
//   KEY=`backticks`                       backticks: like single quotes (never a command)
//   KEY="a\nb \"q\" \\ \t \r"             double quotes: escapes \n \r \t \" \\ only; any other
//                                         backslash is kept as is; may span lines
//   KEY="v" # note                        a comment may follow a closing quote; nothing else may
//
// Never expanded: `$VAR`, `${VAR}` and `$(command)` are kept literally in every form.
// Errors: a line without `=`; a name that is not a valid environment variable name; an
// unterminated quote (reported at the line where the quote opened); text after a closing
// quote; a name defined twice (both lines are named); a NUL byte in a value. Line endings may
// be LF, CRLF or CR (a quoted value's line breaks become LF). The scan is linear in the file's
// size, and a file may hold at most MAX_VALUES entries.

import type { SecretEntries } from '../secret.ts';
import { EntryCollector, normalizeNewlines, SourceText, stripBom, ValueBudget } from './common.ts';

const HINT = 'expected NAME=value lines';

/**
 * `notes` receives a warning for each entry whose meaning other dotenv readers disagree on (a `#`
 * inside an unquoted value); a warning names the entry and its line, never the value.
 */
export function parseDotenv(text: string, name: string, notes?: (message: string) => void): SecretEntries {
  const src = new SourceText(normalizeNewlines(stripBom(text)), name);
  const entries = new EntryCollector(src);
  const budget = new ValueBudget(src);
  const s = src.text;
  let pos = 0;

  while (pos < s.length) {
    pos = skipBlanks(s, pos);
    const eol = lineEnd(s, pos);
    if (pos === eol || s[pos] === '#') {
      pos = eol + 1;
      continue;
    }

    budget.take(pos, 2); // a key and its value
    let keyStart = pos;
    const exported = /^export[ \t]+/.exec(s.slice(pos, eol));
    if (exported && s[pos + exported[0].length] !== '=') keyStart = pos + exported[0].length;

    const eq = s.indexOf('=', keyStart);
    if (eq === -1 || eq > eol) {
      throw src.error(pos, "a line without '='", HINT);
    }
    const key = s.slice(keyStart, eq).trimEnd();

    const valueStart = skipBlanks(s, eq + 1);
    const quote = s[valueStart];
    let value: string;
    let ambiguousHash = false;
    if (quote === '"' || quote === "'" || quote === '`') {
      const close = quote === '"' ? findDoubleQuoteEnd(s, valueStart + 1) : s.indexOf(quote, valueStart + 1);
      if (close === -1) {
        throw src.error(valueStart, 'an unterminated quoted value', `close the quote that opens here`);
      }
      const inner = s.slice(valueStart + 1, close);
      value = quote === '"' ? unescapeDouble(inner) : inner;
      pos = close + 1;
      const after = skipBlanks(s, pos);
      const end = lineEnd(s, after);
      if (after !== end && s[after] !== '#') {
        throw src.error(
          after,
          'unexpected text after the closing quote',
          'put a comment after a # or quote the whole value',
        );
      }
      pos = end + 1;
    } else {
      let raw = s.slice(eq + 1, eol);
      const comment = /[ \t]#/.exec(raw);
      if (comment) raw = raw.slice(0, comment.index);
      value = raw.trim();
      pos = eol + 1;
      if (notes !== undefined && value.includes('#')) ambiguousHash = true;
    }
    entries.add(key, keyStart, value);
    if (ambiguousHash && notes !== undefined) {
      // The name is valid (add accepted it), so it may be shown; the value never is.
      notes(
        `${src.name}:${src.position(keyStart).line}: the unquoted value of "${key}" contains a '#' that npm dotenv ` +
          'would read as the start of a comment; secret-fetch keeps it, as python-dotenv does (quote the value to be sure)',
      );
    }
  }
  return entries.result();
}

function skipBlanks(s: string, pos: number): number {
  let p = pos;
  while (s[p] === ' ' || s[p] === '\t') p++;
  return p;
}

function lineEnd(s: string, pos: number): number {
  const nl = s.indexOf('\n', pos);
  return nl === -1 ? s.length : nl;
}

/** Index of the closing `"` (a backslash escapes the next character), or -1. */
function findDoubleQuoteEnd(s: string, from: number): number {
  for (let i = from; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') i++;
    else if (c === '"') return i;
  }
  return -1;
}

const DOUBLE_ESCAPES: Readonly<Record<string, number>> = { n: 0x0a, r: 0x0d, t: 0x09, '"': 0x22, '\\': 0x5c };

/**
 * The value of a double-quoted string, in one pass into a buffer of code units: building it from
 * millions of small strings (one per escape) took 2.5 GB for 40 MB of "\n".
 */
function unescapeDouble(inner: string): string {
  if (!inner.includes('\\')) return inner;
  const out = new Uint16Array(inner.length);
  let n = 0;
  for (let i = 0; i < inner.length; i++) {
    const c = inner.charCodeAt(i);
    const escaped = c === 0x5c && i + 1 < inner.length ? DOUBLE_ESCAPES[inner[i + 1] as string] : undefined;
    if (escaped === undefined) {
      out[n++] = c;
    } else {
      out[n++] = escaped;
      i++;
    }
  }
  let value = '';
  for (let k = 0; k < n; k += 8192) value += String.fromCharCode(...out.subarray(k, Math.min(n, k + 8192)));
  return value;
}
