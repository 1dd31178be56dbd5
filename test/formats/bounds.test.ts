// Parsing is bounded by the input's shape, not only its size: deep nesting and huge numbers of
// keys and values fail fast with a format error (65) that names the limit, in every format, and
// the inputs that once took seconds and gigabytes stay within a modest amount of memory.

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EXIT, FormatError } from '../../src/errors.ts';
import { MAX_NESTING } from '../../src/formats/common.ts';
import { parseDotenv } from '../../src/formats/dotenv.ts';
import { parseJson } from '../../src/formats/json.ts';
import { parsePyfile } from '../../src/formats/pyfile.ts';
import { parseToml } from '../../src/formats/toml.ts';
import { parseYaml } from '../../src/formats/yaml.ts';
import { CANARY, entriesOf, type Parse } from './helpers.ts';

const PARSERS: Record<string, Parse> = {
  json: parseJson,
  yaml: parseYaml,
  toml: parseToml,
  pyfile: parsePyfile,
  dotenv: parseDotenv,
};

function failure(parse: Parse, text: string): FormatError {
  let caught: unknown;
  try {
    parse(text, 'f');
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(FormatError);
  const error = caught as FormatError;
  expect(error.exitCode).toBe(EXIT.format);
  expect(error.message).not.toContain('CANARY');
  return error;
}

const DEEP = /nested too deeply \(more than 256 levels, secret-fetch's limit/;
const MANY = /more than 100,000 keys and values in one file \(secret-fetch's limit/;

describe('nesting is bounded', () => {
  const open = 300;
  const cases: [string, string][] = [
    ['json', `{"A": ${'['.repeat(open)}"${CANARY}"${']'.repeat(open)}}`],
    ['yaml', `A: ${'['.repeat(open)}${CANARY}${']'.repeat(open)}\n`],
    ['yaml', `A: ${'{a: '.repeat(open)}${CANARY}${'}'.repeat(open)}\n`],
    ['yaml', `A:\n${'- '.repeat(open)}${CANARY}\n`],
    ['yaml', `A:\n${'? '.repeat(open)}${CANARY}\n`],
    [
      'yaml',
      `A:\n${Array.from({ length: open }, (_, i) => `${' '.repeat(i + 1)}k:\n`).join('')}${' '.repeat(open + 1)}${CANARY}\n`,
    ],
    ['toml', `A = ${'['.repeat(open)}"${CANARY}"${']'.repeat(open)}\n`],
    ['pyfile', `A = ${'['.repeat(open)}'${CANARY}'${']'.repeat(open)}\n`],
  ];
  it.each(cases)('%s: %#', (format, text) => {
    const error = failure(PARSERS[format] as Parse, text);
    expect(error.message).toMatch(DEEP);
    expect(error.hint).toMatch(/flatten the structure, or pass the file whole with --format raw and --out/);
  });

  it('YAML: deep nesting is refused before the library builds it, with the true reason', () => {
    // 200,000 '[' took the library 3 s and 350 MB, then it reported its stack overflow as "too many aliases".
    const error = failure(parseYaml, `A: ${'['.repeat(200_000)}\n`);
    expect(error.message).toMatch(DEEP);
    expect(error.message).not.toMatch(/alias/);
    expect(error.message).toMatch(/^f:1:259: /);
  });

  it.each([
    ['json', (d: number) => `{"A": ${'['.repeat(d)}1${']'.repeat(d)}}`],
    ['yaml', (d: number) => `A: ${'['.repeat(d)}1${']'.repeat(d)}\n`],
    ['yaml', (d: number) => `A:\n${'- '.repeat(d)}1\n`],
    [
      'yaml',
      (d: number) =>
        `A:\n${Array.from({ length: d - 1 }, (_, i) => `${' '.repeat(i + 1)}k:\n`).join('')}${' '.repeat(d)}- 1\n`,
    ],
    ['toml', (d: number) => `A = ${'['.repeat(d)}1${']'.repeat(d)}\n`],
    ['pyfile', (d: number) => `A = ${'['.repeat(d)}1${']'.repeat(d)}\n`],
  ])('%s: nesting within the limit still parses (%#)', (format, text) => {
    const parsed = entriesOf((PARSERS[format] as Parse)(text(MAX_NESTING - 10), 'f'));
    expect(parsed.A).toMatch(/1/);
  });
});

describe('the number of keys and values is bounded', () => {
  const n = 100_000; // values, so keys and values together pass the limit
  const cases: [string, string][] = [
    ['json', `{"A": [${'1,'.repeat(n)}"${CANARY}"]}`],
    ['yaml', `A: [${'1,'.repeat(n)}${CANARY}]\n`],
    ['yaml', `A:\n${'- 1\n'.repeat(n)}- ${CANARY}\n`],
    ['yaml', `${'-\n'.repeat(n + 1)}`],
    ['yaml', `A: [${','.repeat(n)}]\n`],
    ['toml', `A = [${'1,'.repeat(n)}"${CANARY}"]\n`],
    ['pyfile', `A = [${'1,'.repeat(n)}'${CANARY}']\n`],
    ['pyfile', `A = ${"'x' ".repeat(n)}'${CANARY}'\n`],
    ['dotenv', `${Array.from({ length: n / 2 + 1 }, (_, i) => `K${i}=${CANARY}\n`).join('')}`],
  ];
  it.each(cases)('%s: %#', (format, text) => {
    const error = failure(PARSERS[format] as Parse, text);
    expect(error.message).toMatch(MANY);
    expect(error.hint).toMatch(/split it into several secrets, or pass it whole with --format raw and --out/);
  });

  it.each(Object.keys(PARSERS))('%s: 40,000 entries still parse', (format) => {
    const lines = Array.from({ length: 40_000 }, (_, i) => {
      if (format === 'json') return `${i ? ',' : '{'}"K${i}": "v"`;
      if (format === 'yaml') return `K${i}: v\n`;
      if (format === 'dotenv') return `K${i}=v\n`;
      return `K${i} = "v"\n`;
    });
    const text = lines.join('') + (format === 'json' ? '}' : '');
    expect((PARSERS[format] as Parse)(text, 'f').size).toBe(40_000);
  });
});

describe('YAML: what else the library pays for is bounded too', () => {
  it.each([
    ['anchors', `A: ${'&a '.repeat(100_001)}${CANARY}\n`],
    ['tags', `A: ${'!t '.repeat(100_001)}${CANARY}\n`],
  ])('%s', (_title, text) => {
    expect(failure(parseYaml, text).message).toMatch(
      /more than 100,000 anchors and tags in one file \(secret-fetch's limit/,
    );
  });

  it.each([
    ['comment lines', `${'# c\n'.repeat(1_000_001)}A: ${CANARY}\n`],
    ['blank lines', `${'\n'.repeat(1_000_001)}A: ${CANARY}\n`],
    ['lines of a block scalar', `A: |\n${'  y\n'.repeat(1_000_001)}B: ${CANARY}\n`],
    ['lines of a plain scalar', `A: x\n${'  y\n'.repeat(1_000_001)}B: ${CANARY}\n`],
  ])('%s', (_title, text) => {
    expect(failure(parseYaml, text).message).toMatch(
      /more than 1,000,000 YAML tokens and lines \(keys, values, indicators, comments, line breaks\) in one file/,
    );
  });

  it('a file of many anchored, commented values within the limits parses', () => {
    const text = Array.from({ length: 20_000 }, (_, i) => `# note ${i}\nK${i}: &a${i} !!str v\n`).join('');
    expect(parseYaml(text, 'f').size).toBe(20_000);
  });
});

describe('escape sequences', () => {
  it.each([
    ['yaml', `A: "${'\\n'.repeat(1_000_001)}${CANARY}"\n`, /more than 1,000,000 escape sequences in quoted strings/],
    ['yaml', `A: '${"''".repeat(1_000_001)}${CANARY}'\n`, /more than 1,000,000 escape sequences in quoted strings/],
    [
      'toml',
      `A = "${'\\n'.repeat(500_000)}"\nB = """${'\\t'.repeat(500_001)}${CANARY}"""\n`,
      /more than 1,000,000 escape sequences in strings/,
    ],
  ])('%s: past the limit the library is not asked', (format, text, message) => {
    expect(failure(PARSERS[format] as Parse, text).message).toMatch(message);
  });

  it.each([
    ['yaml', `A: "${'\\\\'.repeat(600_000)}"\n`],
    ['toml', `A = "${'\\\\'.repeat(600_000)}"\nB = '${'\\'.repeat(600_000)}'\n`],
  ])('%s: an escaped backslash is one escape, and literal strings have none', (format, text) => {
    expect(entriesOf((PARSERS[format] as Parse)(text, 'f')).A).toBe('\\'.repeat(600_000));
  });

  it.each([
    ['json', `{"A": "${'\\n'.repeat(2_000_000)}x"}`, 2_000_001],
    ['pyfile', `A = "${'\\n'.repeat(2_000_000)}x"\n`, 2_000_001],
    ['pyfile', `A = r"${'\\n'.repeat(2_000_000)}x"\n`, 4_000_001],
    ['dotenv', `A="${'\\n'.repeat(2_000_000)}x"\n`, 2_000_001],
  ])('%s: our own parsers take any number (%#)', (format, text, length) => {
    expect(entriesOf((PARSERS[format] as Parse)(text, 'f')).A).toHaveLength(length);
  });
});

describe('dotenv: linear in the size of the file', () => {
  it('a double-quoted value of many escapes keeps every one', () => {
    const parsed = entriesOf(parseDotenv(`A="${'\\n'.repeat(100_000)}x\\"y"\n`, 'f'));
    expect(parsed.A).toBe(`${'\n'.repeat(100_000)}x"y`);
  });

  it('an unterminated quote over many lines is placed at its line and column', () => {
    expect(failure(parseDotenv, `B=1\nA="${CANARY}${'\n'.repeat(100_000)}`).message).toMatch(
      /^f:2:3: an unterminated quoted value/,
    );
  });
});

// The inputs of the attack review, parsed in a fresh process whose peak memory is measured.
// Before the limits: 6 MB of YAML '[' took 48 s and 3.3 GB; 40 MB of dotenv "\n" escapes 2.5 GB,
// and an unterminated quote over 40 million lines 1.1 GB.
describe('memory stays bounded on hostile inputs', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  function peak(format: string, expression: string): { message: string; exitCode: number; rssMiB: number } {
    const script = `
      const { parseEntries } = await import(${JSON.stringify(`${root}src/formats/index.ts`)});
      const text = ${expression};
      let message = 'parsed', exitCode = 0;
      try { await parseEntries(${JSON.stringify(format)}, text, 'f'); }
      catch (error) { message = error.message; exitCode = error.exitCode; }
      process.stdout.write(JSON.stringify({ message, exitCode, rssMiB: process.resourceUsage().maxRSS / 1024 }));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    return JSON.parse(out);
  }

  it('6 MB of nested YAML', { timeout: 60_000 }, () => {
    const result = peak('yaml', `'A: ' + '['.repeat(6_000_000)`);
    expect(result.exitCode).toBe(EXIT.format);
    expect(result.message).toMatch(DEEP);
    expect(result.rssMiB).toBeLessThan(512);
  });

  it('10 million YAML comment lines', { timeout: 60_000 }, () => {
    // Before: 30 s and 1.2 GB.
    const result = peak('yaml', `'# c\\n'.repeat(10_000_000) + 'A: 1\\n'`);
    expect(result.exitCode).toBe(EXIT.format);
    expect(result.message).toMatch(/more than 1,000,000 YAML tokens and lines/);
    expect(result.rssMiB).toBeLessThan(512);
  });

  it.each([
    ['dotenv', `'A="' + '\\\\n'.repeat(20_000_000) + '"\\n'`],
    ['json', `'{"A": "' + '\\\\n'.repeat(20_000_000) + '"}'`],
    ['pyfile', `'A = "' + '\\\\n'.repeat(20_000_000) + '"\\n'`],
  ])('40 MB of escaped newlines in a %s value', { timeout: 60_000 }, (format, expression) => {
    // Before: 2.5 GB (dotenv), 900 MB (JSON, pyfile).
    const result = peak(format, expression);
    expect(result.message).toBe('parsed');
    expect(result.rssMiB).toBeLessThan(512);
  });

  it('an unterminated dotenv quote over 40 million lines', { timeout: 60_000 }, () => {
    const result = peak('dotenv', `'A="' + '\\n'.repeat(40_000_000)`);
    expect(result.exitCode).toBe(EXIT.format);
    expect(result.message).toMatch(/^f:1:3: an unterminated quoted value/);
    expect(result.rssMiB).toBeLessThan(512);
  });
});

describe('TOML: dotted keys count as the tables they make', () => {
  it.each([
    ['a dotted key', `A${'.a'.repeat(100_000)} = "${CANARY}"\n`],
    ['a dotted table header', `[A${'.a'.repeat(100_000)}]\nB = "${CANARY}"\n`],
    ['quoted parts', `A${'."a"'.repeat(100_000)} = "${CANARY}"\n`],
  ])('%s', (_title, text) => {
    expect(failure(parseToml, text).message).toMatch(MANY);
  });

  it('floats, dates and times are values, not dotted keys', () => {
    const line = 'A = [1.5, 2.25, 1979-05-27T07:32:00.5Z, 07:32:00.25, +1.0, -2.5e3]\n';
    expect(entriesOf(parseToml(line, 'f')).A).toBe('[1.5,2.25,"1979-05-27T07:32:00.500Z","07:32:00.250",1.0,-2500.0]');
  });
});
