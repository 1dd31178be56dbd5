import { describe, expect, it } from 'vitest';
import { parseYaml } from '../../src/formats/yaml.ts';
import { CANARY, type ErrorCase, entriesOf, expectFormatError } from './helpers.ts';

const parse = (text: string) => entriesOf(parseYaml(text, 'secrets.yaml'));

describe('yaml: valid input', () => {
  const table: [string, string, Record<string, string>][] = [
    ['empty file', '', {}],
    ['comments only', '# nothing\n', {}],
    ['an explicit empty document', '---\n...\n', {}],
    ['plain strings', 'A: hello world\nB: "double"\nC: \'single\'\n', { A: 'hello world', B: 'double', C: 'single' }],
    [
      'yes/no/on/off stay strings (core schema)',
      'A: yes\nB: no\nC: on\nD: Off\nE: y\n',
      {
        A: 'yes',
        B: 'no',
        C: 'on',
        D: 'Off',
        E: 'y',
      },
    ],
    ['...even under a %YAML 1.1 directive', '%YAML 1.1\n---\nA: yes\n', { A: 'yes' }],
    ['booleans', 'A: true\nB: False\nC: TRUE\n', { A: 'true', B: 'false', C: 'true' }],
    ['null is omitted', 'A: ~\nB: null\nC:\nD: x\n', { D: 'x' }],
    [
      'numbers keep their source text',
      'A: 0123\nB: 1.50\nC: 0x1F\nD: 0o17\nE: +5\nF: 1e3\nG: -0\nH: .inf\nI: .NaN\n',
      {
        A: '0123',
        B: '1.50',
        C: '0x1F',
        D: '0o17',
        E: '+5',
        F: '1e3',
        G: '-0',
        H: '.inf',
        I: '.NaN',
      },
    ],
    ['big integers keep every digit', 'A: 123456789012345678901234567890\n', { A: '123456789012345678901234567890' }],
    ['quoted numbers are strings', 'A: "0123"\nB: \'1.50\'\n', { A: '0123', B: '1.50' }],
    ['explicit tags', 'A: !!str 0123\nB: !!int "42"\n', { A: '0123', B: '42' }],
    [
      'block literal',
      'KEY: |\n  -----BEGIN-----\n  abc\n  -----END-----\n',
      { KEY: '-----BEGIN-----\nabc\n-----END-----\n' },
    ],
    ['block folded, stripped', 'A: >-\n  one\n  two\n', { A: 'one two' }],
    ['double-quoted escapes', 'A: "tab\\there\\n\\u00e9\\U0001F511"\n', { A: 'tab\there\né🔑' }],
    ['flow mapping at the top', '{A: 1, B: two}', { A: '1', B: 'two' }],
    [
      'nested mapping as JSON',
      'DB:\n  host: h\n  port: 5432\n  ssl: true\n  opt: ~\n',
      {
        DB: '{"host":"h","port":5432,"ssl":true,"opt":null}',
      },
    ],
    ['nested sequence as JSON', 'L:\n  - a\n  - 1.50\n  - [x, {y: z}]\n', { L: '["a",1.50,["x",{"y":"z"}]]' }],
    [
      'nested numbers keep their text: as a JSON string when it is not a JSON number',
      'L: [0x1F, 0o17, 0123, +5, .inf, -.NaN, 1.50, -0, 1e3]\n',
      { L: '["0x1F","0o17","0123","+5",".inf","-.NaN",1.50,-0,1e3]' },
    ],
    ['a nested PIN keeps its leading zero', 'DB: {pin: 0123}\nPIN: 0123\n', { DB: '{"pin":"0123"}', PIN: '0123' }],
    [
      'nested number and boolean keys become strings, numbers as written',
      'M: {1: a, true: b, 0x10: c, 01: d}\n',
      { M: '{"1":"a","true":"b","0x10":"c","01":"d"}' },
    ],
    [
      'aliases are followed',
      'BASE: &b\n  x: 1\nCOPY: *b\nS: &s str\nT: *s\n',
      {
        BASE: '{"x":1}',
        COPY: '{"x":1}',
        S: 'str',
        T: 'str',
      },
    ],
    ['a merge key merges a mapping', 'A:\n  <<: {x: 1}\n', { A: '{"x":1}' }],
    [
      "a merge key merges an alias; the mapping's own keys win, before or after the <<",
      'BASE: &b {host: h, port: 1, user: u}\nDB:\n  port: 2\n  <<: *b\n  user: v\n',
      { BASE: '{"host":"h","port":1,"user":"u"}', DB: '{"port":2,"host":"h","user":"v"}' },
    ],
    [
      'merging a list: an earlier mapping wins over a later one (as PyYAML)',
      'A: &a {x: 1, y: 2}\nB: &b {y: 3, z: 4}\nC:\n  <<: [*a, *b]\n  x: 9\n',
      { A: '{"x":1,"y":2}', B: '{"y":3,"z":4}', C: '{"y":2,"z":4,"x":9}' },
    ],
    [
      'merged mappings have their own merges applied',
      'A: &a {x: 1}\nB: &b {<<: *a, y: 2}\nC: {<<: *b}\n',
      { A: '{"x":1}', B: '{"x":1,"y":2}', C: '{"x":1,"y":2}' },
    ],
    [
      'a merge key at the top level gives variables',
      'D: &d {HOST: h, PORT: 1}\n<<: *d\nPORT: 2\n',
      { D: '{"HOST":"h","PORT":1}', HOST: 'h', PORT: '2' },
    ],
    ['a quoted "<<" is an ordinary key', 'A:\n  "<<": {x: 1}\n', { A: '{"<<":{"x":1}}' }],
    ['"<<" as a value is a string', 'A: <<\n', { A: '<<' }],
    ['unicode', 'A: héllo ✓ 🔑\n', { A: 'héllo ✓ 🔑' }],
    ['byte order mark', '\uFEFFA: 1\n', { A: '1' }],
    ['CRLF line endings', 'A: 1\r\nB: |\r\n  x\r\n', { A: '1', B: 'x\n' }],
    ['$(...) is only text', 'A: $(rm -rf /)\n', { A: '$(rm -rf /)' }],
  ];
  it.each(table)('%s', (_title, input, expected) => {
    expect(parse(input)).toEqual(expected);
  });

  it('keeps the order of the file', () => {
    expect(parseYaml('Z: 1\nA: 2\nM: 3\n', 'f').names()).toEqual(['Z', 'A', 'M']);
  });
});

describe('yaml: errors', () => {
  const c = CANARY;
  const table: ErrorCase[] = [
    { title: 'top-level sequence', input: `- ${c}\n`, line: 1, col: 1, kind: /the top level is a sequence/ },
    { title: 'top-level string', input: `\n${c}\n`, line: 2, col: 1, kind: /the top level is a string/ },
    { title: 'top-level number', input: `42 # ${c}\n`, line: 1, col: 1, kind: /the top level is a number/ },
    { title: 'top-level boolean', input: `true # ${c}\n`, line: 1, col: 1, kind: /the top level is a boolean/ },
    {
      title: 'unterminated double quote',
      input: `A: 1\nB: "${c}\n`,
      line: 3,
      col: 1,
      kind: /YAML error: a missing character .*\(MISSING_CHAR\)/,
    },
    {
      title: 'unclosed flow sequence',
      input: `A: [1, "${c}"\nB: 2\n`,
      line: 2,
      col: 1,
      kind: /\((?:BAD_INDENT|MISSING_CHAR|UNEXPECTED_TOKEN)\)/,
    },
    { title: 'bad indentation', input: `A: 1\n B: ${c}\n`, line: 1, col: 4, kind: /\(BLOCK_AS_IMPLICIT_KEY\)/ },
    {
      title: 'tab indentation',
      input: `A:\n\t- ${c}\n`,
      line: 2,
      col: 1,
      kind: /a tab used as indentation \(TAB_AS_INDENT\)/,
    },
    {
      title: 'two documents',
      input: `A: 1\n---\nB: ${c}\n`,
      line: 2,
      col: 1,
      kind: /more than one document .*\(MULTIPLE_DOCS\)/,
    },
    {
      title: 'an unknown tag',
      input: `A: !secret ${c}\n`,
      line: 1,
      col: 4,
      kind: /an unknown tag \(TAG_RESOLVE_FAILED\)/,
    },
    { title: 'a bad escape', input: `A: "\\q${c}"\n`, line: 1, col: 5, kind: /\(BAD_DQ_ESCAPE\)/ },
    { title: 'an unknown alias', input: `A: *nope\nB: ${c}\n`, line: 1, col: 4, kind: /an alias to an unknown anchor/ },
    {
      title: 'an alias used before its anchor',
      input: `A: [*x]\nB: &x ${c}\n`,
      line: 1,
      col: 5,
      kind: /an alias to an unknown anchor/,
    },
    {
      title: 'a reserved character',
      input: `A: @${c}\n`,
      line: 1,
      col: 4,
      kind: /a plain value starting with a reserved character \(BAD_SCALAR_START\)/,
    },
    {
      title: 'an invalid name (the canary is the key)',
      input: `A: 1\n${c}: 2\n`,
      line: 2,
      col: 1,
      kind: /a name that is not a valid environment variable name/,
    },
    { title: 'a number key', input: `1: ${c}\n`, line: 1, col: 1, kind: /not a valid environment variable name/ },
    { title: 'a boolean key', input: `true: ${c}\n`, line: 1, col: 1, kind: /not a valid environment variable name/ },
    { title: 'a null key', input: `? \n: ${c}\n`, line: 1, col: 3, kind: /not a valid environment variable name/ },
    {
      title: 'a sequence key',
      input: `? [a]\n: ${c}\n`,
      line: 1,
      col: 3,
      kind: /not a valid environment variable name/,
    },
    {
      title: 'a duplicate top-level key names both lines',
      input: `TOKEN: ${c}\nOTHER: 1\nTOKEN: x\n`,
      line: 3,
      col: 1,
      kind: /"TOKEN" is defined twice, on line 1 and on line 3/,
    },
    {
      title: 'a duplicate nested key',
      input: `A:\n  ${c}: 1\n  ${c}: 2\n`,
      line: 3,
      col: 3,
      kind: /a duplicate key in a nested mapping \(the first is on line 2\)/,
    },
    {
      title: 'nested keys that collide as JSON',
      input: `A: {1: ${c}, "1": x}\n`,
      line: 1,
      col: 23,
      kind: /a duplicate key in a nested mapping/,
    },
    {
      title: 'a null nested key',
      input: `A:\n  ? \n  : ${c}\n`,
      line: 2,
      col: 5,
      kind: /a nested key that is not a string, number or boolean/,
    },
    {
      title: 'a second merge key in one mapping',
      input: `A: &a {x: 1}\nB:\n  <<: *a\n  y: ${c}\n  <<: {z: 1}\n`,
      line: 5,
      col: 3,
      kind: /a second merge key \(<<\) in one mapping/,
    },
    {
      title: 'a merge key whose value is not a mapping',
      input: `A:\n  <<: ${c}\n`,
      line: 2,
      col: 3,
      kind: /a merge key \(<<\) whose value is not a mapping or a list of mappings/,
    },
    {
      title: 'a merge key with a list holding something else',
      input: `A: &a {x: 1}\nB:\n  <<: [*a, ${c}]\n`,
      line: 3,
      col: 3,
      kind: /a merge key \(<<\) whose value is not a mapping or a list of mappings/,
    },
    {
      title: 'a merge key that merges its own mapping',
      input: `A: &a\n  x: ${c}\n  <<: *a\n`,
      line: 3,
      col: 3,
      kind: /a recursive alias/,
    },
    {
      title: 'a merged key at the top level is checked as a variable name',
      input: `D: &d {"not a name": ${c}}\n<<: *d\n`,
      line: 2,
      col: 1,
      kind: /a name that is not a valid environment variable name/,
    },
    {
      title: 'a NUL in a value names the variable',
      input: `X: 1\nTOKEN: "${c}\\0"\n`,
      line: 2,
      col: 1,
      kind: /the value of "TOKEN" contains a NUL byte/,
    },
    {
      title: 'a recursive alias',
      input: `A: &a [${c}, *a]\n`,
      line: 1,
      col: 23,
      kind: /a recursive alias/,
    },
    {
      title: 'a recursive alias through a mapping',
      input: `A: &a\n  k: [${c}, {deeper: *a}]\n`,
      line: 2,
      col: 31,
      kind: /a recursive alias/,
    },
    {
      title: 'alias expansion bomb',
      input: [
        `a: &a ["${c}", "${c}", "${c}", "${c}", "${c}", "${c}", "${c}", "${c}", "${c}", "${c}"]`,
        'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
        'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
        'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
        'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]',
        'BOMB: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]',
        '',
      ].join('\n'),
      line: 5, // at the alias whose expansion passes the limit of 100,000 values: the 8th *d
      col: 36,
      kind: /too many values \(an alias expanding too far\?\)/,
    },
  ];
  it.each(table)('$title', (c) => {
    expectFormatError(parseYaml, c, 'secrets.yaml');
  });

  it('never passes on what the library would say', async () => {
    const { parseDocument } = await import('yaml');
    for (const input of [`A: @${CANARY}\n`, `A: 1\nB: "${CANARY}\n`, `A: [${CANARY}\n`]) {
      // The library's default (pretty) messages carry a code frame with the secret line.
      const doc = parseDocument(input);
      expect(doc.errors.map((e) => e.message).join('\n')).toContain(CANARY);
      expect(() => parseYaml(input, 'f')).toThrow(/^f:\d+:\d+: YAML error: [^@]*$/);
    }
  });
});
