// JSON secrets: one top-level object of NAME: value members (RFC 8259, strict: no comments, no
// trailing commas, no single quotes).
//
// Values: a string as is; a number exactly as written ("1.50" stays "1.50", big integers keep
// every digit); true/false as "true"/"false"; null omits the entry; an object or array becomes
// its compact JSON text (numbers inside are also kept as written).
//
// This is a small parser of its own rather than JSON.parse, because V8's messages quote the
// input; ours name only the line, column and kind of thing found. It also rejects duplicate
// keys (JSON.parse silently keeps the last one), at the top level and in nested objects.
// Nesting (MAX_NESTING) and the number of keys and values (MAX_VALUES) are bounded.

import type { FormatError } from '../errors.ts';
import type { SecretEntries } from '../secret.ts';
import {
  describeJsType,
  EntryCollector,
  MAX_NESTING,
  nestedTooDeeply,
  RawNumber,
  SourceText,
  stripBom,
  TextBuilder,
  type Value,
  ValueBudget,
} from './common.ts';

const HINT = 'the file must be one JSON object of NAME: value members';
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const WORD = /[A-Za-z_$][A-Za-z0-9_$]*/y;
const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

export function parseJson(text: string, name: string): SecretEntries {
  return new JsonParser(new SourceText(stripBom(text), name)).parse();
}

class JsonParser {
  readonly #src: SourceText;
  readonly #s: string;
  readonly #budget: ValueBudget;
  #pos = 0;

  constructor(src: SourceText) {
    this.#src = src;
    this.#s = src.text;
    this.#budget = new ValueBudget(src);
  }

  parse(): SecretEntries {
    const entries = new EntryCollector(this.#src);
    this.#skipWhitespace();
    const start = this.#pos;
    if (start >= this.#s.length) throw this.#error(start, 'an empty file; expected a JSON object');
    if (this.#s[start] === '{') {
      this.#object(0, (key, offset, value) => entries.add(key, offset, value));
    } else {
      const value = this.#value(0);
      throw this.#error(start, `the top level is ${describeJsType(value)}; expected an object of NAME: value members`);
    }
    this.#skipWhitespace();
    if (this.#pos < this.#s.length) {
      throw this.#error(this.#pos, `${this.#describe(this.#pos)} after the top-level object`);
    }
    return entries.result();
  }

  #error(offset: number, message: string): FormatError {
    return this.#src.error(offset, message, HINT);
  }

  #skipWhitespace(): void {
    const s = this.#s;
    let p = this.#pos;
    while (p < s.length && (s[p] === ' ' || s[p] === '\t' || s[p] === '\n' || s[p] === '\r')) p++;
    this.#pos = p;
  }

  /** What is at `offset`, as a kind (never the text itself). */
  #describe(offset: number): string {
    const c = this.#s[offset];
    if (c === undefined) return 'the end of the file';
    if (c === '"') return 'a string';
    if (c === "'") return 'a single-quoted string (JSON strings use double quotes)';
    if (c === '-' || (c >= '0' && c <= '9')) return 'a number';
    if (c === '{') return "an opening '{'";
    if (c === '}') return "a closing '}'";
    if (c === '[') return "an opening '['";
    if (c === ']') return "a closing ']'";
    if (c === ',') return 'a comma';
    if (c === ':') return 'a colon';
    if (c === '/') return 'a comment (JSON has no comments)';
    if (/[A-Za-z_$]/.test(c)) return 'a bare word (JSON strings must be double-quoted)';
    return 'an unexpected character';
  }

  #value(depth: number): Value {
    const s = this.#s;
    const start = this.#pos;
    const c = s[start];
    this.#budget.take(start);
    if (c === '{') {
      const members = new Map<string, Value>();
      const offsets = new Map<string, number>();
      this.#object(depth, (key, offset, value) => {
        const first = offsets.get(key);
        if (first !== undefined) {
          const firstLine = this.#src.position(first).line;
          throw this.#error(offset, `a duplicate key in a nested object (the first is on line ${firstLine})`);
        }
        offsets.set(key, offset);
        members.set(key, value);
      });
      return members;
    }
    if (c === '[') return this.#array(depth);
    if (c === '"') return this.#string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = start;
      const m = NUMBER.exec(s);
      const end = start + (m?.[0].length ?? 0);
      const next = s[end];
      if (!m || (next !== undefined && /[0-9A-Za-z_.+-]/.test(next))) throw this.#error(start, 'an invalid number');
      this.#pos = end;
      return new RawNumber(m[0]);
    }
    WORD.lastIndex = start;
    const word = WORD.exec(s)?.[0];
    if (word === 'true' || word === 'false' || word === 'null') {
      this.#pos = start + word.length;
      return word === 'null' ? null : word === 'true';
    }
    throw this.#error(start, `${this.#describe(start)} where a value was expected`);
  }

  /** Parses `{...}` at the current position, handing each member to `onMember`. */
  #object(depth: number, onMember: (key: string, offset: number, value: Value) => void): void {
    const open = this.#pos;
    if (depth >= MAX_NESTING) throw nestedTooDeeply(this.#src, open, 'objects and arrays');
    this.#pos++;
    this.#skipWhitespace();
    if (this.#s[this.#pos] === '}') {
      this.#pos++;
      return;
    }
    for (;;) {
      const keyOffset = this.#pos;
      const c = this.#s[keyOffset];
      if (c !== '"') {
        if (c === undefined) throw this.#error(open, "an object that is never closed with '}'");
        throw this.#error(keyOffset, `${this.#describe(keyOffset)} where a key (a double-quoted string) was expected`);
      }
      this.#budget.take(keyOffset);
      const key = this.#string();
      this.#skipWhitespace();
      if (this.#s[this.#pos] !== ':') {
        throw this.#error(this.#pos, `${this.#describe(this.#pos)} where a colon was expected after the key`);
      }
      this.#pos++;
      this.#skipWhitespace();
      onMember(key, keyOffset, this.#value(depth + 1));
      this.#skipWhitespace();
      const sep = this.#s[this.#pos];
      if (sep === '}') {
        this.#pos++;
        return;
      }
      if (sep !== ',') {
        if (sep === undefined) throw this.#error(open, "an object that is never closed with '}'");
        throw this.#error(this.#pos, `${this.#describe(this.#pos)} where a comma or '}' was expected`);
      }
      const comma = this.#pos;
      this.#pos++;
      this.#skipWhitespace();
      if (this.#s[this.#pos] === '}') throw this.#error(comma, 'a trailing comma (JSON does not allow one)');
    }
  }

  #array(depth: number): Value[] {
    const open = this.#pos;
    if (depth >= MAX_NESTING) throw nestedTooDeeply(this.#src, open, 'objects and arrays');
    const items: Value[] = [];
    this.#pos++;
    this.#skipWhitespace();
    if (this.#s[this.#pos] === ']') {
      this.#pos++;
      return items;
    }
    for (;;) {
      if (this.#pos >= this.#s.length) throw this.#error(open, "an array that is never closed with ']'");
      items.push(this.#value(depth + 1));
      this.#skipWhitespace();
      const sep = this.#s[this.#pos];
      if (sep === ']') {
        this.#pos++;
        return items;
      }
      if (sep !== ',') {
        if (sep === undefined) throw this.#error(open, "an array that is never closed with ']'");
        throw this.#error(this.#pos, `${this.#describe(this.#pos)} where a comma or ']' was expected`);
      }
      const comma = this.#pos;
      this.#pos++;
      this.#skipWhitespace();
      if (this.#s[this.#pos] === ']') throw this.#error(comma, 'a trailing comma (JSON does not allow one)');
    }
  }

  /** A double-quoted string at the current position, unescaped. */
  #string(): string {
    const s = this.#s;
    const open = this.#pos;
    // Built only once an escape is seen: most strings are one slice of the text.
    let out: TextBuilder | undefined;
    let p = open + 1;
    let chunk = p;
    for (;;) {
      if (p >= s.length) throw this.#error(open, 'an unterminated string');
      const code = s.charCodeAt(p);
      if (code === 0x22) break;
      if (code === 0x5c) {
        out ??= new TextBuilder();
        out.slice(s, chunk, p);
        const e = s[p + 1];
        if (e === 'u') {
          const hex = s.slice(p + 2, p + 6);
          if (!/^[0-9A-Fa-f]{4}$/.test(hex)) throw this.#error(p, 'an invalid \\u escape in a string');
          out.text(String.fromCharCode(Number.parseInt(hex, 16)));
          p += 6;
        } else {
          const replacement = e === undefined ? undefined : ESCAPES[e];
          if (replacement === undefined) {
            if (e === undefined) throw this.#error(open, 'an unterminated string');
            throw this.#error(p, 'an invalid escape sequence in a string');
          }
          out.text(replacement);
          p += 2;
        }
        chunk = p;
        continue;
      }
      if (code === 0x0a || code === 0x0d) {
        throw this.#error(p, 'a line break inside a string (an unterminated string? write \\n for a line break)');
      }
      if (code < 0x20) throw this.#error(p, 'a control character inside a string (escape it, e.g. \\t or \\u0000)');
      p++;
    }
    this.#pos = p + 1;
    if (out === undefined) return s.slice(chunk, p);
    out.slice(s, chunk, p);
    return out.toString();
  }
}
