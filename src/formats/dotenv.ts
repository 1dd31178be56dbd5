// The dotenv dialect secret-fetch reads. It follows what users of the `dotenv` npm package and
// `docker --env-file` expect, minus anything that could run code or change a value behind the
// writer's back:
//
//   # a comment line                      blank lines and full-line comments are skipped
//   KEY=value                             unquoted: trimmed on both sides, taken literally
//   export KEY=value                      an optional `export ` prefix is ignored
//   KEY = value                           spaces around `=` are allowed
//   KEY=value # note                      a `#` preceded by a space or tab starts a comment...
//   KEY=pass#word                         ...a `#` inside a word does not ("pass#word")
//   KEY=#x                                so a value may start with `#`; but `KEY= #x` is empty
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
// be LF, CRLF or CR (a quoted value's line breaks become LF).

import type { SecretEntries } from '../secret.ts';
import { EntryCollector, normalizeNewlines, SourceText, stripBom } from './common.ts';

const HINT = 'expected NAME=value lines';

export function parseDotenv(text: string, name: string): SecretEntries {
  const src = new SourceText(normalizeNewlines(stripBom(text)), name);
  const entries = new EntryCollector(src);
  const s = src.text;
  let pos = 0;

  while (pos < s.length) {
    pos = skipBlanks(s, pos);
    const eol = lineEnd(s, pos);
    if (pos === eol || s[pos] === '#') {
      pos = eol + 1;
      continue;
    }

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
    }
    entries.add(key, keyStart, value);
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

const DOUBLE_ESCAPES: Readonly<Record<string, string>> = { n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' };

function unescapeDouble(inner: string): string {
  return inner.replace(/\\([\s\S])/g, (whole, c: string) => DOUBLE_ESCAPES[c] ?? whole);
}
