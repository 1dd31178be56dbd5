import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { EXIT, FormatError } from '../../src/errors.ts';
import { parseJson } from '../../src/formats/json.ts';
import { floatText, parseToml } from '../../src/formats/toml.ts';
import { parseYaml } from '../../src/formats/yaml.ts';
import { CANARY, type ErrorCase, entriesOf, expectFormatError } from './helpers.ts';

const parse = (text: string) => entriesOf(parseToml(text, 'secrets.toml'));

describe('toml: valid input', () => {
  const table: [string, string, Record<string, string>][] = [
    ['empty file', '', {}],
    ['comments and blank lines only', '# nothing\n\n   # more\n', {}],
    [
      'the four kinds of strings',
      'A = "basic"\nB = \'literal \\n stays\'\nC = """\nmulti\nline"""\nD = \'\'\'\nraw \\ lines\n\'\'\'\n',
      { A: 'basic', B: 'literal \\n stays', C: 'multi\nline', D: 'raw \\ lines\n' },
    ],
    ['a line-ending backslash joins lines', 'A = """one \\\n    two"""\n', { A: 'one two' }],
    [
      'escapes',
      'A = "tab\\there\\n\\u00e9\\U0001F511\\"\\\\"\nB = "\\e\\x41"\n',
      { A: 'tab\there\né🔑"\\', B: '\x1bA' },
    ],
    ['quoted keys that are valid names', '"API_TOKEN" = "x"\n\'B\' = "y"\n', { API_TOKEN: 'x', B: 'y' }],
    ['booleans', 'A = true\nB = false\n', { A: 'true', B: 'false' }],
    [
      'integers in decimal, with every digit',
      'A = 42\nB = +5\nC = -0\nD = 1_000\nE = 0x1F\nF = 0o17\nG = 0b101\nH = 123456789012345678901234567890\n',
      { A: '42', B: '5', C: '0', D: '1000', E: '31', F: '15', G: '5', H: '123456789012345678901234567890' },
    ],
    [
      'floats as the shortest decimal, whole ones with .0',
      'A = 1.50\nB = 1e3\nC = 6.626e-34\nD = -0.0\nE = 1.0\nF = 3.14159\nG = 1e21\nH = 1_000.5\n',
      { A: '1.5', B: '1000.0', C: '6.626e-34', D: '-0.0', E: '1.0', F: '3.14159', G: '1e+21', H: '1000.5' },
    ],
    [
      'inf and nan at the top level',
      'A = inf\nB = -inf\nC = +inf\nD = nan\nE = -nan\n',
      {
        A: 'inf',
        B: '-inf',
        C: 'inf',
        D: 'nan',
        E: 'nan',
      },
    ],
    [
      'dates and times as RFC 3339 text',
      [
        'A = 1979-05-27T07:32:00Z',
        'B = 1979-05-27T00:32:00.999-07:00',
        'C = 1979-05-27 07:32:00',
        'D = 1979-05-27',
        'E = 07:32:00',
        'F = 00:32:00.5',
        '',
      ].join('\n'),
      {
        A: '1979-05-27T07:32:00Z',
        B: '1979-05-27T00:32:00.999-07:00',
        C: '1979-05-27T07:32:00',
        D: '1979-05-27',
        E: '07:32:00',
        F: '00:32:00.500',
      },
    ],
    [
      'a table as JSON',
      '[DB]\nhost = "h"\nport = 5432\nssl = true\nratio = 0.5\n',
      { DB: '{"host":"h","port":5432,"ssl":true,"ratio":0.5}' },
    ],
    ['dotted keys make a table', 'DB.host = "h"\nDB.port = 1\n', { DB: '{"host":"h","port":1}' }],
    ['an inline table', 'DB = { host = "h", "a b" = [1, 2] }\n', { DB: '{"host":"h","a b":[1,2]}' }],
    [
      'an array of tables',
      '[[USERS]]\nname = "a"\n[[USERS]]\nname = "b"\nroles = ["x"]\n',
      { USERS: '[{"name":"a"},{"name":"b","roles":["x"]}]' },
    ],
    [
      'nested arrays, mixed types, dates and floats inside JSON',
      'L = [1, "a", [true, 1.50], 1979-05-27, { k = 1e3 }]\n',
      { L: '[1,"a",[true,1.5],"1979-05-27",{"k":1000.0}]' },
    ],
    ['empty table and array', 'T = {}\nL = []\n[E]\n', { T: '{}', L: '[]', E: '{}' }],
    ['sub-tables', '[A]\nx = 1\n[A.B]\ny = 2\n', { A: '{"x":1,"B":{"y":2}}' }],
    ['unicode', 'A = "héllo ✓ 🔑"\n', { A: 'héllo ✓ 🔑' }],
    ['byte order mark', '\uFEFFA = 1\n', { A: '1' }],
    ['CRLF line endings', 'A = 1\r\nB = """\r\nx\r\n"""\r\n', { A: '1', B: 'x\n' }],
    ['$(...) is only text', 'A = "$(rm -rf /)"\n', { A: '$(rm -rf /)' }],
    [
      '__proto__ is an ordinary name',
      '__proto__ = "x"\nB = { __proto__ = 1 }\n',
      { ['__proto__']: 'x', B: '{"__proto__":1}' },
    ],
  ];
  it.each(table)('%s', (_title, input, expected) => {
    const parsed = parse(input);
    expect(parsed).toEqual(expected);
    expect(Object.keys(parsed)).toEqual(Object.keys(expected));
  });

  it('keeps the order of the file', () => {
    expect(parseToml('Z = 1\nA = 2\nM = 3\n', 'f').names()).toEqual(['Z', 'A', 'M']);
  });

  it('puts nested keys that look like integers first (JavaScript objects order them so)', () => {
    expect(parse('A = { b = 1, 2 = 3 }\n')).toEqual({ A: '{"2":3,"b":1}' });
  });

  it('pollutes no prototype', () => {
    parseToml('[__proto__]\npolluted = "yes"\n[constructor.prototype]\npolluted = "yes"\n', 'f');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('toml: the same document gives the same variables as in JSON and YAML', () => {
  const documents: [string, string, string][] = [
    [
      '{"A": "x", "B": 42, "C": true, "D": 1.5, "E": {"k": [1, "two", false]}, "F": [], "G": {}}',
      'A: x\nB: 42\nC: true\nD: 1.5\nE:\n  k: [1, two, false]\nF: []\nG: {}\n',
      'A = "x"\nB = 42\nC = true\nD = 1.5\nF = []\nG = {}\n[E]\nk = [1, "two", false]\n',
    ],
    [
      '{"DATABASE": {"host": "db", "port": 5432, "options": {"ssl": true}}, "ADMINS": ["a@x", "b@x"]}',
      'DATABASE:\n  host: db\n  port: 5432\n  options:\n    ssl: true\nADMINS:\n  - a@x\n  - b@x\n',
      'ADMINS = ["a@x", "b@x"]\n[DATABASE]\nhost = "db"\nport = 5432\n[DATABASE.options]\nssl = true\n',
    ],
    [
      '{"BIG": 123456789012345678901234567890, "NEG": -7, "ONE": 1.0, "U": "é🔑\\n\\t"}',
      'BIG: 123456789012345678901234567890\nNEG: -7\nONE: 1.0\nU: "é🔑\\n\\t"\n',
      'BIG = 123456789012345678901234567890\nNEG = -7\nONE = 1.0\nU = "é🔑\\n\\t"\n',
    ],
  ];
  it.each(documents)('%s', (json, yaml, toml) => {
    const expected = entriesOf(parseJson(json, 'a.json'));
    expect(entriesOf(parseYaml(yaml, 'a.yaml'))).toEqual(expected);
    expect(parse(toml)).toEqual(expected);
  });
});

describe('floatText', () => {
  it.each([
    [1.5, '1.5'],
    [1, '1.0'],
    [-0, '-0.0'],
    [0, '0.0'],
    [1e21, '1e+21'],
    [5e-7, '5e-7'],
    [Number.POSITIVE_INFINITY, 'inf'],
    [Number.NEGATIVE_INFINITY, '-inf'],
    [Number.NaN, 'nan'],
  ])('%d -> %s', (value, text) => {
    expect(floatText(value)).toBe(text);
  });
});

describe('toml: errors', () => {
  const c = CANARY;
  const table: ErrorCase[] = [
    {
      title: 'an unterminated string',
      input: `A = 1\nB = "${c}\n`,
      line: 2,
      col: 19,
      kind: /TOML error: a line break inside a string \(an unterminated string\?\)/,
    },
    {
      title: '...with CRLF line endings',
      input: `A = 1\r\nB = "${c}\r\n`,
      line: 2,
      col: 19,
      kind: /a line break inside a string/,
    },
    {
      title: 'a bare word as a value',
      input: `A = ${c}\n`,
      line: 1,
      col: 5,
      kind: /an invalid value \(a string without quotes\?\)/,
    },
    {
      title: 'a duplicate key',
      input: `TOKEN = "${c}"\nTOKEN = "x"\n`,
      line: 2,
      col: 1,
      kind: /a key or table defined twice/,
    },
    {
      title: 'a duplicate table',
      input: `[A]\nx = "${c}"\n[A]\ny = 1\n`,
      line: 3,
      col: 2,
      kind: /a key or table defined twice/,
    },
    {
      title: 'a key defined twice in an inline table',
      input: `A = { x = "${c}", x = 1 }\n`,
      line: 1,
      col: 28,
      kind: /a key defined twice/,
    },
    {
      title: 'an array of tables over an array',
      input: `A = [1]\n[[A]]\nx = "${c}"\n`,
      line: 2,
      col: 3,
      kind: /a key or table defined twice/,
    },
    {
      title: 'a bad escape',
      input: `A = "\\q${c}"\n`,
      line: 1,
      col: 7,
      kind: /an invalid escape sequence in a string/,
    },
    {
      title: 'a \\u escape that is not hexadecimal',
      input: `A = "\\u12G4${c}"\n`,
      line: 1,
      col: 10,
      kind: /not hexadecimal/,
    },
    {
      title: 'a \\u escape to a surrogate',
      input: `A = "\\uD800${c}"\n`,
      line: 1,
      col: 6,
      kind: /not a Unicode scalar value/,
    },
    {
      title: 'a key without = value',
      input: `A "${c}"\n`,
      line: 1,
      col: 3,
      kind: /a character that a bare key cannot hold/,
    },
    { title: 'an empty key', input: `= "${c}"\n`, line: 1, col: 1, kind: /a missing key/ },
    {
      title: 'a multi-line key',
      input: `"""A""" = "${c}"\n`,
      line: 1,
      col: 1,
      kind: /a multi-line string used as a key/,
    },
    {
      title: 'two values on a line',
      input: `A = "x" "${c}"\n`,
      line: 1,
      col: 9,
      kind: /more after a value on its line/,
    },
    {
      title: 'columns count code points',
      input: `A = "😀" x "${c}"\n`,
      line: 1,
      col: 9,
      kind: /more after a value on its line/,
    },
    { title: 'a leading zero', input: `A = 0123 # ${c}\n`, line: 1, col: 5, kind: /a number with a leading zero/ },
    {
      title: 'a misplaced underscore',
      input: `A = 1__0 # ${c}\n`,
      line: 1,
      col: 7,
      kind: /a misplaced underscore in a number/,
    },
    {
      title: 'an unclosed array',
      input: `A = [1, "${c}"\n`,
      line: 2,
      col: 1,
      kind: /a missing comma or closing bracket/,
    },
    {
      title: 'an unclosed inline table',
      input: `A = { x = "${c}"\n`,
      line: 2,
      col: 1,
      kind: /a missing comma or closing bracket/,
    },
    {
      title: 'an unclosed array-of-tables header',
      input: `[[A]\nx = "${c}"\n`,
      line: 1,
      col: 5,
      kind: /an array-of-tables header not closed with '\]\]'/,
    },
    {
      title: 'a control character in a string',
      input: `A = "${c}\u0001"\n`,
      line: 1,
      col: 19,
      kind: /a control character in a string/,
    },
    { title: 'an invalid date', input: `A = 2024-13-45 # ${c}\n`, line: 1, col: 5, kind: /an invalid date or time/ },
    {
      title: 'inline values nested too deeply',
      input: `A = ${'['.repeat(300)}"${c}"\n`,
      line: 1,
      col: 261,
      kind: /values nested too deeply/,
    },
    {
      title: 'tables nested too deeply (no position: the library gives none)',
      input: `[${'a.'.repeat(300)}a]\nB = "${c}"\n`,
      line: undefined,
      col: undefined,
      kind: /the value of "a" is nested too deeply/,
    },
    {
      title: 'a name that is not a variable name (the canary is the key)',
      input: `"${c}" = 1\n`,
      line: undefined,
      col: undefined,
      kind: /a name that is not a valid environment variable name/,
    },
    {
      title: 'a bare key with a dash',
      input: `MY-TOKEN = "${c}"\n`,
      line: undefined,
      col: undefined,
      kind: /a name that is not a valid environment variable name/,
    },
    {
      title: 'a number as a key',
      input: `1 = "${c}"\n`,
      line: undefined,
      col: undefined,
      kind: /a name that is not a valid environment variable name/,
    },
    {
      title: 'a NUL escape names the variable',
      input: `X = 1\nTOKEN = "${c}\\u0000"\n`,
      line: undefined,
      col: undefined,
      kind: /the value of "TOKEN" contains a NUL byte/,
    },
    {
      title: 'nan inside a nested value',
      input: `A = [nan, "${c}"]\n`,
      line: undefined,
      col: undefined,
      kind: /the value of "A" holds an infinite or NaN number inside a nested value/,
    },
    {
      title: 'inf inside a table, under a name that is not valid',
      input: `["${c}"]\nx = inf\n`,
      line: undefined,
      col: undefined,
      kind: /^secrets\.toml: a value holds an infinite or NaN number/,
    },
  ];
  it.each(table)('$title', (c) => {
    expectFormatError(parseToml, c, 'secrets.toml');
  });

  it('never passes on what the library would say', async () => {
    const { parse: libraryParse } = await import('smol-toml');
    for (const input of [`A = ${CANARY}\n`, `A = 1\nB = "${CANARY}\n`, `A = [${CANARY}\n`, `[[A]\nB = "${CANARY}"\n`]) {
      // The library's messages carry a code frame with the secret line.
      expect(() => libraryParse(input)).toThrow(CANARY);
      let caught: unknown;
      try {
        parseToml(input, 'f');
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(FormatError);
      const { line, stack } = caught as FormatError;
      expect(line).toMatch(/^f:\d+:\d+: TOML error: /);
      expect(`${line}\n${stack}`).not.toContain('CANARY');
      expect((caught as FormatError).cause).toBeUndefined();
    }
  });
});

describe('toml: dates that do not exist', () => {
  // Python's tomllib is the reference: secret-fetch refuses exactly the documents it refuses.
  const cases: [string, boolean][] = [
    ['A = 2023-02-29', false],
    ['A = 2023-04-31', false],
    ['A = 2023-02-29T00:00:00Z', false],
    ['A = 2023-06-31 12:00:00', false],
    ['A = 2023-09-31T00:00:00+02:00', false],
    ['A = 1900-02-29', false],
    ['A = [2023-02-28, 2023-02-30]', false],
    ['A = { b = 2023-11-31 }', false],
    ['A = 2024-02-29', true],
    ['A = 2000-02-29T23:59:59Z', true],
    ['A = 2023-01-31', true],
    ['A = "2023-02-29"', true],
    ["A = '''\n2023-02-30'''", true],
    ['A = """x""""" \nB = 2023-02-28', true],
    ['A = 1 # 2023-02-30', true],
    ['[t]\n2023-02-29 = 1', true],
    ['A = { 2023-02-30 = 1 }', true],
  ];
  const python = (input: string): boolean =>
    execFileSync(
      'python3',
      [
        '-c',
        'import sys, tomllib\ntry:\n tomllib.loads(sys.stdin.read()); print("ok")\nexcept tomllib.TOMLDecodeError: print("refused")',
      ],
      { input, encoding: 'utf8' },
    ).trim() === 'ok';

  it.each(cases)('%j (accepted: %s)', (input, accepted) => {
    expect(python(input), 'tomllib agrees').toBe(accepted);
    if (accepted) {
      expect(() => parseToml(input, 'f')).not.toThrow();
      return;
    }
    const error = (() => {
      try {
        parseToml(input, 'f');
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(FormatError);
    expect((error as FormatError).exitCode).toBe(EXIT.format);
    expect((error as FormatError).message).toMatch(/^f:1:\d+: TOML error: a date that does not exist/);
  });

  it('places the error at the date, and quotes no part of it', () => {
    expectFormatError(
      parseToml,
      {
        title: '',
        input: `A = "${CANARY}"\nB = 2023-02-29T01:02:03Z\n`,
        line: 2,
        col: 5,
        kind: /a date that does not exist/,
      },
      'secrets.toml',
    );
    expect(() => parseToml('A = 2023-02-29\n', 'f')).toThrow(/^[^2]*$/);
  });
});
