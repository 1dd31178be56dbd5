// Flask config files (`app.config.from_pyfile`), read WITHOUT executing them: a small tokenizer
// and recursive-descent parser for a safe subset of Python, close to what `ast.literal_eval`
// accepts. Each statement must be `NAME = literal`, where NAME is UPPERCASE: [A-Z_][A-Z0-9_]*
// with at least one letter, which is what Flask's `key.isupper()` loads for ASCII names.
// secret-fetch rejects the other names rather than silently skipping them.
// Comments, blank lines, `\` line continuations and a bare string (a docstring) are allowed.
//
// Literals:
//   strings   '..' ".." '''..''' """..""" (multi-line), adjacent literals concatenated
//             ("a" "b"), prefixes r/R (raw) and u/U; b'' (bytes), f'' (f-strings) and t''
//             are errors. Escapes in non-raw strings: \\ \' \" \a \b \f \n \r \t \v, octal
//             \ooo, \xhh, \uXXXX, \UXXXXXXXX, backslash-newline; an unknown escape such as \d
//             is kept as is (as Python does); \N{...} and surrogate code points are errors.
//   numbers   ints (1_000, 0x1F, 0o17, 0b101; a leading sign - or +), floats (1.5, .5, 1e-5).
//             Complex numbers (1j) are errors, and so are floats too large to represent.
//   constants True, False, None
//   containers [lists], (tuples), {dicts with string keys}, nested, trailing commas allowed;
//             a bare `A = 1, 2` is a tuple, as in Python. Sets are errors.
//
// Environment values: a string as is; an int in decimal (arbitrary size); a float as Python's
// repr() writes it (1.0 -> "1.0", 1e-05 -> "1e-05", 1e16 -> "1e+16"; JavaScript would write
// "1", "0.00001" and "10000000000000000"); True/False -> "true"/"false"; None omits the entry;
// a list, tuple or dict becomes compact JSON (tuples as arrays, True -> true, None -> null),
// matching json.dumps(value, separators=(',', ':'), ensure_ascii=False).
//
// Anything else (imports, calls, names, operators, attribute access, subscripts, lambdas,
// comprehensions, conditional expressions, augmented or chained assignments, semicolons,
// compound statements, indentation) is a FormatError naming the line, column and KIND of thing
// found, never its text.

import type { FormatError } from '../errors.ts';
import type { SecretEntries } from '../secret.ts';
import {
  EntryCollector,
  MAX_NESTING,
  nestedTooDeeply,
  normalizeNewlines,
  RawNumber,
  SourceText,
  stripBom,
  TextBuilder,
  type Value,
  ValueBudget,
} from './common.ts';

const UPPERCASE_NAME = /^[A-Z_][A-Z0-9_]*$/;
const NOT_ALLOWED = 'is not allowed; only NAME = literal assignments are read (secret-fetch never executes the file)';
const HINT = 'write each setting as NAME = a string, number, True/False/None, list, tuple or dict';

type TokenKind = 'name' | 'number' | 'string' | 'op' | 'newline' | 'eof';

interface Token {
  readonly kind: TokenKind;
  /** Where the token starts in the (normalised) text. */
  readonly offset: number;
  /** name: the identifier; op: the operator; others: empty. Never put into a message. */
  readonly text: string;
  /** string: the decoded string; number: its environment text (decimal or float repr). */
  readonly value: string;
}

const KEYWORDS = new Set(
  (
    'and as assert async await break class continue def del elif else except finally for from global if ' +
    'import in is lambda nonlocal not or pass raise return try while with yield'
  ).split(' '),
);

// Read longest first, so that `**=` is one token, not `**` and `=`.
const OPERATORS = new Set(
  '**= //= >>= <<= ... -> := ** // << >> <= >= == != += -= *= /= %= &= |= ^= @= + - * / % @ & | ^ ~ < > ( ) [ ] { } , : . ; ='.split(
    ' ',
  ),
);
const AUGMENTED = new Set(['+=', '-=', '*=', '/=', '//=', '%=', '**=', '>>=', '<<=', '&=', '|=', '^=', '@=']);

const DIGITS = '[0-9](?:_?[0-9])*';
const DEC_INT = /^(?:[1-9](?:_?[0-9])*|0(?:_?0)*)$/;
const RADIX_INT = /^0(?:[xX](?:_?[0-9a-fA-F])+|[oO](?:_?[0-7])+|[bB](?:_?[01])+)$/;
const POINT_FLOAT = `(?:(?:${DIGITS})?\\.${DIGITS}|${DIGITS}\\.)`;
const FLOAT = new RegExp(`^(?:${POINT_FLOAT}(?:[eE][+-]?${DIGITS})?|${DIGITS}[eE][+-]?${DIGITS})$`);
const LEADING_ZERO_INT = /^0[0-9_]*$/;

export function parsePyfile(text: string, name: string): SecretEntries {
  const src = new SourceText(normalizeNewlines(stripBom(text)), name);
  checkCoding(src);
  return new Parser(src).parseFile();
}

// PEP 263: a comment matching this on line 1, or on line 2 after a blank or comment-only line 1,
// names the encoding Python reads the file in.
const CODING = /^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)/;
const BLANK_OR_COMMENT = /^[ \t\f]*(?:#|$)/;
/** Python's other names for UTF-8 (codecs.lookup), after its normalisation. */
const UTF8_ALIASES = new Set(['utf_8', 'utf8', 'u8', 'utf', 'utf8_ucs2', 'utf8_ucs4', 'cp65001']);

/**
 * secret-fetch reads every file as UTF-8: a file that declares another encoding (latin-1, utf-7)
 * would give Flask other values than the environment and the --out file, so it is refused.
 */
function checkCoding(src: SourceText): void {
  let offset = 0;
  for (let line = 1; line <= 2; line++) {
    const end = src.text.indexOf('\n', offset);
    const text = src.text.slice(offset, end === -1 ? src.text.length : end);
    const cookie = CODING.exec(text);
    if (cookie) {
      if (isUtf8((cookie[1] as string).toLowerCase())) return;
      throw src.error(
        offset + text.indexOf('coding'),
        'a coding declaration for an encoding other than UTF-8; secret-fetch reads the file as UTF-8, so Python would read other values',
        'save the file as UTF-8 and declare "# -*- coding: utf-8 -*-", or remove the line',
      );
    }
    if (!BLANK_OR_COMMENT.test(text) || end === -1) return;
    offset = end + 1;
  }
}

function isUtf8(name: string): boolean {
  // tokenize's own shortcut (the first 12 characters, "_" as "-"), then codecs.lookup's aliases.
  const normal = name.slice(0, 12).replaceAll('_', '-');
  if (normal === 'utf-8' || normal.startsWith('utf-8-')) return true;
  return UTF8_ALIASES.has(name.replace(/[^a-z0-9.]+/g, '_').replace(/^_|_$/g, ''));
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

class Lexer {
  readonly #src: SourceText;
  readonly #s: string;
  #pos = 0;
  #depth = 0;
  #lastKind: TokenKind = 'newline';

  constructor(src: SourceText) {
    this.#src = src;
    this.#s = src.text;
  }

  error(offset: number, message: string): FormatError {
    return this.#src.error(offset, message, HINT);
  }

  next(): Token {
    const token = this.#scan();
    this.#lastKind = token.kind;
    return token;
  }

  #scan(): Token {
    const s = this.#s;
    for (;;) {
      const c = s[this.#pos];
      if (c === undefined) {
        // Like Python, end every file with a NEWLINE so the last statement is closed.
        if (this.#lastKind !== 'newline' && this.#lastKind !== 'eof') return this.#token('newline', this.#pos);
        return this.#token('eof', this.#pos);
      }
      if (c === ' ' || c === '\t' || c === '\f') {
        this.#pos++;
      } else if (c === '#') {
        const nl = s.indexOf('\n', this.#pos);
        this.#pos = nl === -1 ? s.length : nl;
      } else if (c === '\\') {
        if (s[this.#pos + 1] !== '\n') throw this.error(this.#pos, 'a backslash outside a string');
        this.#pos += 2;
      } else if (c === '\n') {
        const at = this.#pos++;
        // Inside brackets a line break is only whitespace; blank lines produce nothing.
        if (this.#depth === 0 && this.#lastKind !== 'newline') return this.#token('newline', at);
      } else {
        return this.#tokenAt(c);
      }
    }
  }

  #token(kind: TokenKind, offset: number, text = '', value = ''): Token {
    return { kind, offset, text, value };
  }

  #tokenAt(c: string): Token {
    const s = this.#s;
    const start = this.#pos;
    if (isNameStart(c)) {
      const name = /[A-Za-z_][A-Za-z0-9_]*/y;
      name.lastIndex = start;
      const word = name.exec(s)?.[0] ?? c;
      const after = s[start + word.length];
      if ((after === "'" || after === '"') && /^[rRbBuUfFtT]{1,2}$/.test(word)) {
        this.#pos = start + word.length;
        return this.#string(start, word.toLowerCase());
      }
      if (after !== undefined && after.charCodeAt(0) > 0x7f) {
        throw this.error(start, 'a name with non-ASCII characters');
      }
      this.#pos = start + word.length;
      return this.#token('name', start, word);
    }
    if (isDigit(c) || (c === '.' && isDigit(s[start + 1]))) return this.#number(start);
    if (c === "'" || c === '"') return this.#string(start, '');
    for (let length = 3; length > 0; length--) {
      const op = s.slice(start, start + length);
      if (!OPERATORS.has(op)) continue;
      this.#pos = start + length;
      if (op === '(' || op === '[' || op === '{') this.#depth++;
      else if ((op === ')' || op === ']' || op === '}') && this.#depth > 0) this.#depth--;
      return this.#token('op', start, op);
    }
    if (c.charCodeAt(0) > 0x7f) throw this.error(start, 'a non-ASCII character outside a string');
    throw this.error(start, 'an unexpected character');
  }

  #number(start: number): Token {
    const s = this.#s;
    let p = start;
    const radix = /^0[xXoObB]/.test(s.slice(start, start + 2));
    while (p < s.length) {
      const c = s[p];
      if (isNameStart(c) || isDigit(c) || c === '.') p++;
      else if ((c === '+' || c === '-') && !radix && (s[p - 1] === 'e' || s[p - 1] === 'E')) p++;
      else break;
    }
    const raw = s.slice(start, p);
    this.#pos = p;
    const digits = raw.replaceAll('_', '');
    if (DEC_INT.test(raw) || RADIX_INT.test(raw)) {
      return this.#token('number', start, raw, BigInt(digits).toString(10));
    }
    if (FLOAT.test(raw)) {
      const value = Number(digits);
      if (!Number.isFinite(value)) throw this.error(start, 'a float too large to represent');
      return this.#token('number', start, raw, pythonFloatRepr(value));
    }
    const body = raw.slice(0, -1);
    if (/[jJ]$/.test(raw) && (FLOAT.test(body) || new RegExp(`^${DIGITS}$`).test(body))) {
      throw this.error(start, `a complex number ${NOT_ALLOWED}`);
    }
    if (LEADING_ZERO_INT.test(raw)) {
      throw this.error(start, 'a decimal integer with a leading zero (Python rejects it; quote it as a string)');
    }
    throw this.error(start, 'an invalid number');
  }

  /** A string literal; `this.#pos` is at its opening quote, `start` at its prefix (if any). */
  #string(start: number, prefix: string): Token {
    if (prefix.includes('b')) throw this.error(start, `a bytes literal (b'...') ${NOT_ALLOWED}; use a plain string`);
    if (prefix.includes('f')) throw this.error(start, `an f-string ${NOT_ALLOWED}; use a plain string`);
    if (prefix.includes('t')) throw this.error(start, `a t-string ${NOT_ALLOWED}; use a plain string`);
    if (prefix.length > 1) throw this.error(start, 'an invalid string prefix');
    const raw = prefix === 'r';

    const s = this.#s;
    const quote = s[this.#pos] ?? '"';
    const triple = s.startsWith(quote.repeat(3), this.#pos);
    const close = triple ? quote.repeat(3) : quote;
    const unterminated = triple ? 'an unterminated triple-quoted string' : 'an unterminated string';
    let p = this.#pos + close.length;
    // Built only once an escape is seen: most strings are one slice of the text.
    let out: TextBuilder | undefined;
    let chunk = p;
    const special = quote === "'" ? /['\\\n]/g : /["\\\n]/g;
    for (;;) {
      special.lastIndex = p;
      p = special.exec(s)?.index ?? s.length; // skip to the next quote, backslash or line break
      const c = s[p];
      if (c === undefined || (c === '\n' && !triple)) throw this.error(start, unterminated);
      if (c === '\n') {
        p++;
        continue;
      }
      if (c === quote) {
        if (s.startsWith(close, p)) break;
        p++;
        continue;
      }
      out ??= new TextBuilder();
      out.slice(s, chunk, p);
      if (s[p + 1] === undefined) throw this.error(start, unterminated);
      if (raw) {
        // A raw string keeps the backslash and the character after it (even a quote or newline).
        out.slice(s, p, p + 2);
        p += 2;
      } else {
        const [text, length] = this.#escape(p);
        out.text(text);
        p += length;
      }
      chunk = p;
    }
    this.#pos = p + close.length;
    if (out === undefined) return this.#token('string', start, '', s.slice(chunk, p));
    out.slice(s, chunk, p);
    return this.#token('string', start, '', out.toString());
  }

  /** The escape sequence at `p` (a backslash): its text and its length in the source. */
  #escape(p: number): [string, number] {
    const s = this.#s;
    const e = s[p + 1] ?? '';
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) return [simple, 2];
    if (/[0-7]/.test(e)) {
      const octal = /[0-7]{1,3}/y;
      octal.lastIndex = p + 1;
      const digits = octal.exec(s)?.[0] ?? e;
      return [String.fromCodePoint(Number.parseInt(digits, 8)), 1 + digits.length];
    }
    const hexLength = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (hexLength > 0) {
      const hex = s.slice(p + 2, p + 2 + hexLength);
      if (hex.length !== hexLength || !/^[0-9A-Fa-f]+$/.test(hex)) {
        throw this.error(p, `a truncated \\${e} escape (it needs ${hexLength} hex digits)`);
      }
      const code = Number.parseInt(hex, 16);
      if (code > 0x10ffff) throw this.error(p, 'a \\U escape beyond the last Unicode code point');
      if (code >= 0xd800 && code <= 0xdfff) {
        throw this.error(p, 'an escape for a surrogate code point, which is not a character');
      }
      return [String.fromCodePoint(code), 2 + hexLength];
    }
    if (e === 'N') {
      throw this.error(
        p,
        'a \\N{...} named escape, which secret-fetch does not support; write the character or a \\u escape',
      );
    }
    // Python keeps an unknown escape as it is: the backslash and the character.
    return ['\\', 1];
  }
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '\n': '',
  '\\': '\\',
  "'": "'",
  '"': '"',
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
};

/** A float as Python's repr() writes it (same shortest digits as JavaScript, Python's layout). */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa = '0', exponent = '0'] = Math.abs(x).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const exp = Number(exponent);
  const point = exp + 1; // digits before the decimal point
  if (point <= -4 || point > 16) {
    const rest = digits.length > 1 ? `.${digits.slice(1)}` : '';
    return `${sign}${digits[0]}${rest}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}.0`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

// ---------------------------------------------------------------------------------------------
// Parser

class Parser {
  readonly #src: SourceText;
  readonly #lexer: Lexer;
  readonly #ahead: Token[] = [];
  readonly #budget: ValueBudget;

  constructor(src: SourceText) {
    this.#src = src;
    this.#lexer = new Lexer(src);
    this.#budget = new ValueBudget(src);
  }

  parseFile(): SecretEntries {
    const entries = new EntryCollector(this.#src);
    for (;;) {
      const t = this.#next();
      if (t.kind === 'eof') break;
      if (t.kind === 'newline') continue;
      if (t.offset > 0 && this.#src.text[t.offset - 1] !== '\n') {
        throw this.#error(t.offset, 'an indented line (statements must start in the first column)');
      }
      if (t.kind === 'string') {
        // A bare string statement (a docstring) does nothing.
        while (this.#peek().kind === 'string') this.#next();
        this.#endOfStatement();
        continue;
      }
      if (t.kind !== 'name') throw this.#notAllowed(t.offset, 'an expression statement');
      if (KEYWORDS.has(t.text)) throw this.#notAllowed(t.offset, keywordStatement(t.text));
      const after = this.#peek();
      if (!isOp(after, '=')) {
        const atEnd = after.kind === 'newline' || after.kind === 'eof';
        throw this.#notAllowed(atEnd ? t.offset : after.offset, this.#statementKind(after));
      }
      this.#next();
      if (!UPPERCASE_NAME.test(t.text) || !/[A-Z]/.test(t.text)) {
        throw this.#error(
          t.offset,
          `"${t.text}" is not an UPPERCASE name; Flask loads only UPPERCASE names, so secret-fetch rejects the others`,
          'rename it in UPPERCASE, or remove it',
        );
      }
      this.#budget.take(t.offset);
      const value = this.#valueList();
      this.#endOfStatement();
      entries.add(t.text, t.offset, value);
    }
    return entries.result();
  }

  #next(): Token {
    return this.#ahead.shift() ?? this.#lexer.next();
  }

  #peek(n = 0): Token {
    while (this.#ahead.length <= n) this.#ahead.push(this.#lexer.next());
    return this.#ahead[n] as Token;
  }

  #error(offset: number, message: string, hint = HINT): FormatError {
    return this.#src.error(offset, message, hint);
  }

  #notAllowed(offset: number, kind: string): FormatError {
    return this.#error(offset, `${kind} ${NOT_ALLOWED}`);
  }

  /** After `NAME` at the start of a statement, when the next token is not `=`. */
  #statementKind(t: Token): string {
    if (t.kind === 'op') {
      if (AUGMENTED.has(t.text)) return 'an augmented assignment';
      if (t.text === ':') return 'an annotated assignment';
      if (t.text === ',') return 'an unpacking assignment';
    }
    if (t.kind === 'newline' || t.kind === 'eof') return 'an expression statement';
    return this.#trailingKind(t);
  }

  #endOfStatement(): void {
    const t = this.#peek();
    if (t.kind === 'newline' || t.kind === 'eof') return;
    if (isOp(t, '=')) throw this.#notAllowed(t.offset, 'a chained assignment');
    const kind = this.#trailingKind(t);
    if (t.kind === 'number' || t.kind === 'string' || isClosing(t) || isOp(t, ':')) {
      throw this.#error(t.offset, `${kind} where the statement should end`);
    }
    throw this.#notAllowed(t.offset, kind);
  }

  /** What a token that follows a complete value (where only `,` / a closer / end may) means. */
  #trailingKind(t: Token): string {
    switch (t.kind) {
      case 'name':
        if (t.text === 'if') return 'a conditional expression';
        if (t.text === 'for' || t.text === 'async') return 'a comprehension';
        if (KEYWORDS.has(t.text)) return 'an operator';
        return 'a name';
      case 'number':
        return 'a number';
      case 'string':
        return 'a string';
      case 'op':
        if (t.text === '(') return 'a function call';
        if (t.text === '[') return 'a subscript';
        if (t.text === '.') return 'attribute access';
        if (t.text === ';') return 'a semicolon';
        if (t.text === '=' || t.text === ':=') return 'an assignment';
        if (t.text === ':') return 'a colon';
        if (t.text === ',') return 'a comma';
        if (t.text === ')' || t.text === ']' || t.text === '}') return 'an unmatched closing bracket';
        return 'an operator';
      default:
        return 'the end of the line';
    }
  }

  /** The right-hand side of an assignment: one value, or a bare tuple `1, 2`. */
  #valueList(): Value {
    const first = this.#value(0);
    if (!isOp(this.#peek(), ',')) return first;
    const items = [first];
    while (isOp(this.#peek(), ',')) {
      this.#next();
      const t = this.#peek();
      if (t.kind === 'newline' || t.kind === 'eof') break;
      items.push(this.#value(0));
    }
    return items;
  }

  #value(depth: number): Value {
    const t = this.#next();
    if (depth > MAX_NESTING) throw nestedTooDeeply(this.#src, t.offset);
    this.#budget.take(t.offset);
    switch (t.kind) {
      case 'string': {
        let text = t.value;
        while (this.#peek().kind === 'string') {
          // Each adjacent literal costs memory until the text is flattened: count it.
          this.#budget.take(this.#peek().offset);
          text += this.#next().value;
        }
        return text;
      }
      case 'number':
        return new RawNumber(t.value);
      case 'name':
        if (t.text === 'True') return true;
        if (t.text === 'False') return false;
        if (t.text === 'None') return null;
        throw this.#notAllowed(t.offset, this.#nameKind(t));
      case 'op':
        if (t.text === '-' || t.text === '+') {
          const n = this.#peek();
          if (n.kind !== 'number') throw this.#notAllowed(t.offset, 'an operator');
          this.#next();
          return new RawNumber(t.text === '-' ? negate(n.value) : n.value);
        }
        if (t.text === '[') return this.#list(t, depth);
        if (t.text === '(') return this.#tuple(t, depth);
        if (t.text === '{') return this.#dict(t, depth);
        if (isClosing(t)) throw this.#error(t.offset, 'an unmatched closing bracket where a value was expected');
        if (t.text === '...') throw this.#notAllowed(t.offset, 'an ellipsis');
        if (t.text === ',' || t.text === ':' || t.text === '=' || t.text === ';') {
          throw this.#error(t.offset, `${this.#trailingKind(t)} where a value was expected`);
        }
        throw this.#notAllowed(t.offset, 'an operator');
      default:
        throw this.#error(t.offset, 'a missing value (the line ends where a value was expected)');
    }
  }

  /** A name where a value was expected: what the writer was doing with it. */
  #nameKind(t: Token): string {
    if (t.text === 'lambda') return 'a lambda';
    if (t.text === 'not' || t.text === 'await') return 'an operator';
    if (t.text === 'yield') return 'a yield expression';
    if (KEYWORDS.has(t.text)) return 'a keyword';
    const after = this.#peek();
    if (isOp(after, '=')) return 'a chained assignment';
    if (isOp(after, '(')) return 'a function call';
    if (isOp(after, '.')) return 'attribute access';
    if (isOp(after, '[')) return 'a subscript';
    if (after.kind === 'name' && (after.text === 'for' || after.text === 'async')) return 'a comprehension';
    if (after.kind === 'name' && after.text === 'if') return 'a conditional expression';
    return 'a name (a reference to another variable or a built-in)';
  }

  /** Items up to `close`, separated by commas (a trailing comma allowed). */
  #items(open: Token, close: string, item: () => void): void {
    for (;;) {
      if (isOp(this.#peek(), close)) {
        this.#next();
        return;
      }
      this.#checkOpen(open);
      item();
      const t = this.#peek();
      if (isOp(t, ',')) {
        this.#next();
        continue;
      }
      if (isOp(t, close)) continue;
      this.#unexpectedInContainer(open, t);
    }
  }

  /** An EOF inside brackets is reported at the bracket that was never closed. */
  #checkOpen(open: Token): void {
    if (this.#peek().kind === 'eof' || this.#peek().kind === 'newline') {
      throw this.#error(open.offset, 'a bracket that is never closed');
    }
  }

  #unexpectedInContainer(open: Token, t: Token): never {
    if (t.kind === 'eof' || t.kind === 'newline') throw this.#error(open.offset, 'a bracket that is never closed');
    if (isClosing(t)) {
      throw this.#error(t.offset, 'a closing bracket that does not match the opening one');
    }
    const kind = this.#trailingKind(t);
    if (t.kind === 'number' || t.kind === 'string' || isOp(t, ':')) {
      throw this.#error(t.offset, `${kind} where a comma or a closing bracket was expected`);
    }
    throw this.#notAllowed(t.offset, kind);
  }

  #list(open: Token, depth: number): Value[] {
    const items: Value[] = [];
    this.#items(open, ']', () => items.push(this.#value(depth + 1)));
    return items;
  }

  #tuple(open: Token, depth: number): Value {
    if (isOp(this.#peek(), ')')) {
      this.#next();
      return [];
    }
    this.#checkOpen(open);
    const first = this.#value(depth + 1);
    const t = this.#peek();
    if (isOp(t, ')')) {
      this.#next();
      return first; // (x) is just x
    }
    if (!isOp(t, ',')) this.#unexpectedInContainer(open, t);
    this.#next();
    const items = [first];
    this.#items(open, ')', () => items.push(this.#value(depth + 1)));
    return items;
  }

  #dict(open: Token, depth: number): Value {
    const map = new Map<string, Value>();
    this.#items(open, '}', () => {
      const keyToken = this.#peek();
      const key = this.#value(depth + 1);
      const colon = this.#peek();
      if (!isOp(colon, ':')) {
        if (isOp(colon, ',') || isOp(colon, '}')) throw this.#notAllowed(open.offset, 'a set');
        this.#unexpectedInContainer(open, colon);
      }
      if (typeof key !== 'string') throw this.#error(keyToken.offset, 'a dict key that is not a string');
      this.#next();
      if (map.has(key)) throw this.#error(keyToken.offset, 'a duplicate dict key (Python would keep only the last)');
      map.set(key, this.#value(depth + 1));
    });
    return map;
  }
}

function isNameStart(c: string | undefined): boolean {
  return c !== undefined && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c === '_');
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

function isOp(t: Token, op: string): boolean {
  return t.kind === 'op' && t.text === op;
}

function isClosing(t: Token): boolean {
  return t.kind === 'op' && (t.text === ')' || t.text === ']' || t.text === '}');
}

function negate(text: string): string {
  if (text.startsWith('-')) return text.slice(1);
  if (text === '0') return '0';
  return `-${text}`;
}

function keywordStatement(keyword: string): string {
  if (keyword === 'import' || keyword === 'from') return 'an import statement';
  if (['if', 'for', 'while', 'def', 'class', 'with', 'try', 'async'].includes(keyword)) return 'a compound statement';
  if (keyword === 'lambda' || keyword === 'not' || keyword === 'await' || keyword === 'yield') {
    return 'an expression statement';
  }
  return 'a statement other than an assignment';
}
