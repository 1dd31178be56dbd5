// Properties of every parser in src/formats, called directly (not through parseEntries, whose
// catch-all would hide a foreign error): arbitrary input either parses or throws one of the
// project's typed errors, and no message ever carries a piece of the input that is not a name.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SecretFetchError } from '../../src/errors.ts';
import { parseDotenv } from '../../src/formats/dotenv.ts';
import { parseJson } from '../../src/formats/json.ts';
import { parsePyfile } from '../../src/formats/pyfile.ts';
import { parseToml } from '../../src/formats/toml.ts';
import { parseYaml } from '../../src/formats/yaml.ts';
import type { SecretEntries } from '../../src/secret.ts';

const PARSERS: Record<string, (text: string, name: string) => SecretEntries> = {
  dotenv: parseDotenv,
  json: parseJson,
  yaml: parseYaml,
  toml: parseToml,
  pyfile: parsePyfile,
};

const NAME = 'gs://vault/app/secrets';

/**
 * Canaries: secret-looking words that can never be a variable name (they hold a `-` or `.`), so
 * no message may ever contain one, whatever the parser makes of the text around it.
 */
const canary = fc.stringMatching(/^[a-z0-9]{5}[-.][a-z0-9]{6}$/).map((c) => `q${c}`);

/** Fragments of every format's syntax, so the generated text reaches deep into the parsers. */
const TOKENS = [
  ...['=', ':', ': ', ' = ', '"', "'", '`', '"""', "'''", '\\', '\\n', '\\x4', '\\u00e9', '\\U0001F600', '\\N{x}'],
  ...['\n', '\r\n', '\r', ' ', '  ', '\t', '#', '# c\n', '{', '}', '[', ']', '(', ')', ',', '-', '- ', '+', '.'],
  ...['export ', 'KEY', 'A_1', 'lower', 'True', 'False', 'None', 'null', 'true', '1', '-0', '0x1F', '1_000', '1e999'],
  ...['1.5', '.5', '1j', 'r"', 'b"', 'f"', 'u"', 'import os', 'os.environ', '&a ', '*a', '!!str ', '!!binary ', '---'],
  ...['...', '|', '|-\n  ', '>', '? ', '%YAML 1.2\n', '<<: ', '\u0000', '\ufeff', 'é', 'ж', '😀', '\u2028', 'NaN'],
];

const structured = fc
  .array(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...TOKENS) }, { weight: 1, arbitrary: canary }), {
    maxLength: 60,
  })
  .map((parts) => parts.join(''));

/** Text with at least one canary somewhere in it, and the canaries it holds. */
const withCanaries = fc
  .tuple(
    fc.oneof(structured, fc.string({ unit: 'binary', maxLength: 80 })),
    fc.array(canary, { minLength: 1, maxLength: 3 }),
    fc.nat(),
  )
  .map(([text, canaries, seed]) => {
    let out = text;
    for (const [i, c] of canaries.entries()) {
      const at = (seed * (i + 7)) % (out.length + 1);
      out = `${out.slice(0, at)}${c}${out.slice(at)}`;
    }
    return { text: out, canaries };
  });

function outcome(parse: (text: string, name: string) => SecretEntries, text: string): unknown {
  try {
    parse(text, NAME);
    return undefined;
  } catch (error) {
    return error;
  }
}

describe.each(Object.entries(PARSERS))('%s', (_format, parse) => {
  it('throws nothing but SecretFetchError on arbitrary text', () => {
    fc.assert(
      fc.property(fc.oneof(structured, fc.string({ unit: 'binary', maxLength: 200 })), (text) => {
        const error = outcome(parse, text);
        if (error !== undefined) expect(error).toBeInstanceOf(SecretFetchError);
      }),
      { numRuns: 600 },
    );
  });

  it('never puts a canary into a message, a hint or the printed line', () => {
    fc.assert(
      fc.property(withCanaries, ({ text, canaries }) => {
        const error = outcome(parse, text);
        if (error === undefined) return;
        expect(error).toBeInstanceOf(SecretFetchError);
        const { line, message } = error as SecretFetchError;
        expect(line.startsWith(message)).toBe(true);
        for (const c of canaries) {
          expect(line).not.toContain(c);
          // Nor a recognisable half of one.
          expect(line).not.toContain(c.slice(0, 7));
          expect(line).not.toContain(c.slice(-7));
        }
      }),
      { numRuns: 600 },
    );
  });

  it('survives deep nesting and long inputs with a typed error or a result', () => {
    for (const text of [
      '['.repeat(20_000),
      '{"A": '.repeat(20_000),
      `A = ${'('.repeat(20_000)}`,
      `A: ${'- '.repeat(5_000)}`,
      `A=${'"'.repeat(50_001)}`,
      'A'.repeat(200_000),
    ]) {
      const error = outcome(parse, text);
      if (error !== undefined) expect(error).toBeInstanceOf(SecretFetchError);
    }
  });
});
