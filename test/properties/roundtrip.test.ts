// Values survive a trip through a file: each test writes entries with its own serializer
// (independent of the parser under test, following the documented dialects) and parses them back.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDotenv } from '../../src/formats/dotenv.ts';
import { parsePyfile } from '../../src/formats/pyfile.ts';

/** Any text a decrypted UTF-8 file can hold in an environment value: no NUL, no lone surrogate. */
const anyValue = fc.string({ unit: 'binary', maxLength: 40 }).filter((v) => !v.includes('\0'));

const envName = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/);
const pyName = fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,12}$/).filter((n) => /[A-Z]/.test(n));

function entries<T>(name: fc.Arbitrary<string>, value: fc.Arbitrary<T>) {
  return fc.uniqueArray(fc.tuple(name, value), { selector: ([n]) => n, minLength: 1, maxLength: 8 });
}

function parsed(result: { entries(): IterableIterator<[string, string]> }): [string, string][] {
  return [...result.entries()];
}

// dotenv ----------------------------------------------------------------------------------------

type DotenvStyle = 'double' | 'single' | 'backtick' | 'bare';

function dotenvLine(name: string, value: string, style: DotenvStyle, exported: boolean, spaced: boolean): string {
  const eq = spaced ? ' = ' : '=';
  const key = `${exported ? 'export ' : ''}${name}`;
  switch (style) {
    case 'double': {
      const escaped = [...value]
        .map((ch) => ({ '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[ch] ?? ch)
        .join('');
      return `${key}${eq}"${escaped}"`;
    }
    case 'single':
      return `${key}${eq}'${value}'`;
    case 'backtick':
      return `${key}${eq}\`${value}\``;
    case 'bare':
      return `${key}${eq}${value}`;
  }
}

/** Whether the style can carry the value literally, per the dialect in src/formats/dotenv.ts. */
function fits(value: string, style: DotenvStyle): boolean {
  switch (style) {
    case 'double':
      return true;
    case 'single':
      return !/['\r]/.test(value);
    case 'backtick':
      return !/[`\r]/.test(value);
    case 'bare':
      return (
        !/[\r\n]/.test(value) &&
        value === value.trim() &&
        !/[ \t]#/.test(` ${value}`) &&
        !/^["'`]/.test(value) &&
        !value.startsWith('#')
      );
  }
}

const dotenvEntry = fc
  .tuple(
    fc.oneof(anyValue, fc.stringMatching(/^[!-~]{0,20}$/)),
    fc.constantFrom<DotenvStyle>('double', 'single', 'backtick', 'bare'),
    fc.boolean(),
    fc.boolean(),
  )
  .map(([value, style, exported, spaced]) => ({
    value,
    style: fits(value, style) ? style : 'double',
    exported,
    spaced,
  }));

describe('dotenv round trip', () => {
  it('reads back every value in every quoting style', () => {
    fc.assert(
      fc.property(entries(envName, dotenvEntry), fc.constantFrom('\n', '\r\n'), fc.boolean(), (list, eol, comments) => {
        const lines = list.map(([name, e]) => dotenvLine(name, e.value, e.style, e.exported, e.spaced));
        const text = (comments ? lines.flatMap((l) => ['# a comment', '', l]) : lines).join(eol) + eol;
        // A quoted value's own line breaks are LF whatever the file's line ending: only CR/CRLF
        // written raw inside single quotes or backticks would change, and fits() keeps CR out.
        expect(parsed(parseDotenv(text, 'a.env'))).toEqual(list.map(([name, e]) => [name, e.value]));
      }),
      { numRuns: 500 },
    );
  });

  it('keeps $VAR, its braced form and $(command) literally', () => {
    fc.assert(
      fc.property(envName, fc.constantFrom('$HOME', `$${'{'}HOME}`, '$(id)', '`id`', 'a$b'), (name, value) => {
        const text = `${name}="${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"\n${name}_2='${value}'\n`;
        expect(parsed(parseDotenv(text, 'a.env'))).toEqual([
          [name, value],
          [`${name}_2`, value],
        ]);
      }),
    );
  });
});

// pyfile ----------------------------------------------------------------------------------------

/** A Python string literal for `value`, written by rules taken from the Python language reference. */
function pyString(value: string, quote: '"' | "'" | '"""' | "'''", escapeAll: boolean): string {
  const q = quote[0] as string;
  const body = [...value]
    .map((ch) => {
      const cp = ch.codePointAt(0) as number;
      if (ch === '\\') return '\\\\';
      if (ch === q) return `\\${q}`;
      if (ch === '\n') return quote.length === 3 && !escapeAll ? '\n' : '\\n';
      if (ch === '\r') return '\\r';
      if (escapeAll && (cp < 0x20 || cp > 0x7e)) {
        if (cp <= 0xff) return `\\x${cp.toString(16).padStart(2, '0')}`;
        if (cp <= 0xffff) return `\\u${cp.toString(16).padStart(4, '0')}`;
        return `\\U${cp.toString(16).padStart(8, '0')}`;
      }
      return ch;
    })
    .join('');
  // A triple-quoted body must not end in its quote character (it would merge with the closing quotes).
  const safe = quote.length === 3 && body.endsWith(q) ? `${body.slice(0, -1)}\\${q}` : body;
  return `${quote}${safe}${quote}`;
}

const pyStringEntry = fc
  .tuple(anyValue, fc.constantFrom<'"' | "'" | '"""' | "'''">('"', "'", '"""', "'''"), fc.boolean(), fc.nat(40))
  .map(([value, quote, escapeAll, split]) => {
    // Adjacent literals are concatenated: sometimes write the value as two of them.
    const chars = [...value];
    const cut = Math.min(split, chars.length);
    const literal =
      split % 3 === 0
        ? `${pyString(chars.slice(0, cut).join(''), quote, escapeAll)} ${pyString(chars.slice(cut).join(''), '"', true)}`
        : pyString(value, quote, escapeAll);
    return { literal, expected: value };
  });

const pyOtherEntry = fc.oneof(
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map((n) => ({ literal: n.toString(), expected: n.toString() })),
  fc.boolean().map((b) => ({ literal: b ? 'True' : 'False', expected: b ? 'true' : 'false' })),
  fc.array(fc.oneof(fc.integer(), fc.boolean(), fc.stringMatching(/^[ -~]{0,8}$/)), { maxLength: 4 }).map((items) => ({
    literal: `[${items.map((v) => (typeof v === 'string' ? pyString(v, "'", true) : typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v))).join(', ')}]`,
    expected: JSON.stringify(items),
  })),
);

describe('pyfile round trip', () => {
  it('reads back strings written with any quotes and escapes, and the other literals', () => {
    fc.assert(
      fc.property(
        entries(pyName, fc.oneof({ weight: 3, arbitrary: pyStringEntry }, { weight: 1, arbitrary: pyOtherEntry })),
        fc.constantFrom('\n', '\r\n'),
        (list, eol) => {
          const text = `"""Flask settings."""${eol}${list.map(([name, e]) => `${name} = ${e.literal}  # note`).join(eol)}${eol}`;
          // A raw newline inside a triple-quoted string is a line break in the file: CRLF reads as LF.
          expect(parsed(parsePyfile(text, 'a.cfg'))).toEqual(list.map(([name, e]) => [name, e.expected]));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('omits None', () => {
    fc.assert(
      fc.property(pyName, (name) => {
        expect(parsed(parsePyfile(`${name} = None\n`, 'a.cfg'))).toEqual([]);
      }),
    );
  });
});
