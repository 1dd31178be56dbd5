// TOML properties: a document written by the test's own TOML writer (following the TOML 1.0
// spec, sharing no code with the reader) reads back as the same variables that the same values
// give when written as JSON and as YAML by the test's other writers; and TOML-shaped noise with
// canaries in it either parses or fails with a typed error that quotes none of them.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SecretFetchError } from '../../src/errors.ts';
import { parseJson } from '../../src/formats/json.ts';
import { parseToml } from '../../src/formats/toml.ts';
import { parseYaml } from '../../src/formats/yaml.ts';

/** A value every format can hold: nested objects keep their key order. */
type Doc =
  | { kind: 'string'; value: string }
  | { kind: 'boolean'; value: boolean }
  | { kind: 'integer'; value: bigint }
  | { kind: 'float'; value: number }
  | { kind: 'array'; items: Doc[] }
  | { kind: 'object'; members: [string, Doc][] };

/** Text without NUL (no variable can hold it) and without lone surrogates (no UTF-8 file can). */
const text = fc.string({ unit: 'binary', maxLength: 20 }).filter((v) => !v.includes('\0'));
/** Nested keys: any text but integer-like keys, which JavaScript objects (and so TOML) order first. */
const nestedKey = text.filter((k) => !/^(0|[1-9][0-9]*)$/.test(k));
const envName = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/);
/** Floats whose shortest decimal has a fraction and no exponent: every format writes them alike. */
const float = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((v) => /^-?[0-9]+\.[0-9]+$/.test(String(v)));

const doc: fc.Arbitrary<Doc> = fc.letrec<{ doc: Doc }>((tie) => ({
  doc: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    text.map((value) => ({ kind: 'string', value }) as Doc),
    fc.boolean().map((value) => ({ kind: 'boolean', value }) as Doc),
    fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map((value) => ({ kind: 'integer', value }) as Doc),
    float.map((value) => ({ kind: 'float', value }) as Doc),
    fc.array(tie('doc'), { maxLength: 4 }).map((items) => ({ kind: 'array', items }) as Doc),
    fc
      .uniqueArray(fc.tuple(nestedKey, tie('doc')), { selector: ([k]) => k, maxLength: 4 })
      .map((members) => ({ kind: 'object', members }) as Doc),
  ),
})).doc;

const document = fc.uniqueArray(fc.tuple(envName, doc), { selector: ([n]) => n, minLength: 1, maxLength: 6 });

// The expected variables, by the rules the README states ---------------------------------------

function numberText(value: Doc): string {
  if (value.kind === 'integer') return value.value.toString();
  if (value.kind === 'float') return String(value.value);
  throw new Error('not a number');
}

function expectedJson(value: Doc): string {
  switch (value.kind) {
    case 'string':
      return JSON.stringify(value.value);
    case 'boolean':
      return String(value.value);
    case 'integer':
    case 'float':
      return numberText(value);
    case 'array':
      return `[${value.items.map(expectedJson).join(',')}]`;
    case 'object':
      return `{${value.members.map(([k, v]) => `${JSON.stringify(k)}:${expectedJson(v)}`).join(',')}}`;
  }
}

function expectedVariable(value: Doc): string {
  if (value.kind === 'string') return value.value;
  if (value.kind === 'boolean') return String(value.value);
  if (value.kind === 'integer' || value.kind === 'float') return numberText(value);
  return expectedJson(value);
}

// Writers ------------------------------------------------------------------------------------------

const hex = (cp: number, width: number) => cp.toString(16).toUpperCase().padStart(width, '0');

/** A TOML basic string: escapes for " and \, \uXXXX for control characters, the rest as UTF-8. */
function tomlString(value: string): string {
  let out = '"';
  for (const ch of value) {
    const cp = ch.codePointAt(0) as number;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (cp < 0x20 || cp === 0x7f) out += `\\u${hex(cp, 4)}`;
    else out += ch;
  }
  return `${out}"`;
}

function tomlValue(value: Doc): string {
  switch (value.kind) {
    case 'string':
      return tomlString(value.value);
    case 'boolean':
      return String(value.value);
    case 'integer':
    case 'float':
      return numberText(value);
    case 'array':
      return `[${value.items.map(tomlValue).join(', ')}]`;
    case 'object':
      return `{ ${value.members.map(([k, v]) => `${tomlString(k)} = ${tomlValue(v)}`).join(', ')} }`;
  }
}

/** Plain key/values first, then each top-level object as a [table] section (TOML requires that order). */
function writeToml(entries: [string, Doc][], eol: string): string {
  const plain = entries.filter(([, v]) => v.kind !== 'object').map(([n, v]) => `${n} = ${tomlValue(v)}`);
  const sections = entries
    .filter(([, v]) => v.kind === 'object')
    .map(([n, v]) =>
      [
        `[${n}]`,
        ...(v as Extract<Doc, { kind: 'object' }>).members.map(([k, m]) => `${tomlString(k)} = ${tomlValue(m)}`),
      ].join(eol),
    );
  return [...plain, ...sections].join(eol) + eol;
}

/** A YAML double-quoted string: every code point outside printable ASCII escaped. */
function yamlString(value: string): string {
  let out = '"';
  for (const ch of value) {
    const cp = ch.codePointAt(0) as number;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (cp >= 0x20 && cp < 0x7f) out += ch;
    else out += cp > 0xffff ? `\\U${hex(cp, 8)}` : `\\u${hex(cp, 4)}`;
  }
  return `${out}"`;
}

function yamlValue(value: Doc): string {
  switch (value.kind) {
    case 'string':
      return yamlString(value.value);
    case 'boolean':
      return String(value.value);
    case 'integer':
    case 'float':
      return numberText(value);
    case 'array':
      return `[${value.items.map(yamlValue).join(', ')}]`;
    case 'object':
      return `{${value.members.map(([k, v]) => `${yamlString(k)}: ${yamlValue(v)}`).join(', ')}}`;
  }
}

function writeYaml(entries: [string, Doc][]): string {
  return entries.map(([n, v]) => `${n}: ${yamlValue(v)}\n`).join('');
}

function writeJson(entries: [string, Doc][]): string {
  return `{${entries.map(([n, v]) => `${JSON.stringify(n)}: ${expectedJson(v)}`).join(', ')}}`;
}

describe('toml round trip', () => {
  it('reads back what a TOML writer wrote, as the same variables as JSON and YAML', () => {
    fc.assert(
      fc.property(document, fc.constantFrom('\n', '\r\n'), (entries, eol) => {
        const expected = Object.fromEntries(entries.map(([n, v]) => [n, expectedVariable(v)]));
        const toml = Object.fromEntries(parseToml(writeToml(entries, eol), 'a.toml').entries());
        expect(toml).toEqual(expected);
        expect(Object.fromEntries(parseJson(writeJson(entries), 'a.json').entries())).toEqual(expected);
        expect(Object.fromEntries(parseYaml(writeYaml(entries), 'a.yaml').entries())).toEqual(expected);
      }),
      { numRuns: 400 },
    );
  });
});

// Noise ------------------------------------------------------------------------------------------

const CANARY = /^q[a-z0-9]{5}[-.][a-z0-9]{6}$/;
const canary = fc.stringMatching(/^[a-z0-9]{5}[-.][a-z0-9]{6}$/).map((c) => `q${c}`);
const TOKENS = [
  ...['A', 'KEY', 'a.b', '"q"', "'q'", ' = ', '=', '\n', '\r\n', ' ', '[', ']', '[[', ']]', '{', '}', ',', '#'],
  ...['"', "'", '"""', "'''", '\\', '\\u00e9', '\\U0001F600', '\\x41', '\\e', '1', '+1', '-0', '0x1F', '1_0'],
  ...['1.5', '1e3', 'inf', 'nan', 'true', 'false', '1979-05-27', 'T07:32:00', 'Z', '-07:00', '07:32', '.'],
];
const noise = fc
  .tuple(
    fc.array(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...TOKENS) }, { weight: 1, arbitrary: canary }), {
      maxLength: 60,
    }),
    fc.array(canary, { minLength: 1, maxLength: 2 }),
  )
  .map(([parts, canaries]) => ({
    text: [...parts, ' = "', ...canaries, '"\n'].join(''),
    canaries: [...parts.filter((p) => CANARY.test(p)), ...canaries],
  }));

describe('toml noise', () => {
  it('parses or throws a typed error that quotes no canary', () => {
    fc.assert(
      fc.property(noise, ({ text, canaries }) => {
        try {
          parseToml(text, 'a.toml');
        } catch (error) {
          expect(error).toBeInstanceOf(SecretFetchError);
          const { line } = error as SecretFetchError;
          for (const c of canaries) {
            expect(line).not.toContain(c);
            expect(line).not.toContain(c.slice(0, 7));
            expect(line).not.toContain(c.slice(-7));
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});
