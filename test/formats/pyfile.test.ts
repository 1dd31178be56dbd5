import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parsePyfile, pythonFloatRepr } from '../../src/formats/pyfile.ts';
import { CANARY, type ErrorCase, entriesOf, expectFormatError } from './helpers.ts';

const parse = (text: string) => entriesOf(parsePyfile(text, 'settings.cfg'));

/** Runs a Python script with `input` on stdin (UTF-8 both ways) and returns its stdout. */
function python(script: string, input: string): string {
  return execFileSync('python3', ['-W', 'ignore', '-c', script], {
    input: Buffer.from(input, 'utf8'),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
}

// Python's side of the comparison: the environment value secret-fetch promises for a Python value.
const PY_ENV = `
import ast, json, sys
def env(v):
    if v is None: return None
    if isinstance(v, bool): return 'true' if v else 'false'
    if isinstance(v, int): return str(v)
    if isinstance(v, float): return repr(v)
    if isinstance(v, str): return v
    return json.dumps(v, separators=(',', ':'), ensure_ascii=False)
def out(value):
    sys.stdout.buffer.write(json.dumps(value, ensure_ascii=True).encode())
`;

describe('pyfile: valid input', () => {
  const table: [string, string, Record<string, string>][] = [
    ['empty file', '', {}],
    ['comments and blank lines', '# -*- coding: utf-8 -*-\n\n   \n# x = 1\n', {}],
    ['a docstring', '"""Settings.\n\nMore."""\nA = 1\n\'another\' "bare string"\n', { A: '1' }],
    ['simple strings', "A = 'x'\nB = \"y\"\nC='z'\n", { A: 'x', B: 'y', C: 'z' }],
    ['comment after a value', "A = 'x'  # note\n", { A: 'x' }],
    ['escapes', String.raw`A = 'q\'s \"d\" \\ \n\r\t\a\b\f\v'`, { A: 'q\'s "d" \\ \n\r\t\x07\b\f\v' }],
    ['octal escapes', String.raw`A = '\101\7\0101\777'`, { A: 'A\x07\b1\u01ff' }],
    ['hex and unicode escapes', String.raw`A = '\x41\u00e9\U0001F511'`, { A: 'Aé🔑' }],
    ['unknown escapes are kept', String.raw`A = '\d\w\8 \%'`, { A: '\\d\\w\\8 \\%' }],
    ['backslash-newline inside a string', "A = 'abc\\\ndef'\n", { A: 'abcdef' }],
    [
      'raw strings',
      String.raw`A = r'C:\new\x41\''
B = R"a\"b\\"`,
      {
        A: "C:\\new\\x41\\'",
        B: 'a\\"b\\\\',
      },
    ],
    ['u prefix', 'A = u\'x\'\nB = U"y"\n', { A: 'x', B: 'y' }],
    [
      'triple-quoted, multi-line',
      'A = """line1\n  \'s\' "d" ""\n"""\nB = \'\'\'x\'\'\'\n',
      {
        A: 'line1\n  \'s\' "d" ""\n',
        B: 'x',
      },
    ],
    ['triple-quoted ending with an escaped quote', "A = '''a'b''c\\''''\n", { A: "a'b''c'" }],
    ['adjacent strings concatenate', 'A = \'a\' "b" r\'\\c\' """d"""\n', { A: 'ab\\cd' }],
    ['parenthesised strings across lines', "A = ('one '\n     'two'  # c\n     )\n", { A: 'one two' }],
    ['backslash line continuation', "A = \\\n    'x'\n", { A: 'x' }],
    [
      'ints',
      'A = 42\nB = -17\nC = +5\nD = - 3\nE = 0\nF = 000\nG = 1_000_000\n',
      {
        A: '42',
        B: '-17',
        C: '5',
        D: '-3',
        E: '0',
        F: '0',
        G: '1000000',
      },
    ],
    [
      'radix ints',
      'A = 0x1F\nB = 0XdeAD_beef\nC = 0o17\nD = -0b101\nE = 0x_f\n',
      {
        A: '31',
        B: '3735928559',
        C: '15',
        D: '-5',
        E: '15',
      },
    ],
    [
      'big ints keep every digit',
      `A = 123456789012345678901234567890\nB = -0x${'f'.repeat(40)}\n`,
      {
        A: '123456789012345678901234567890',
        B: `-${(2n ** 160n - 1n).toString()}`,
      },
    ],
    [
      'floats as Python repr',
      'A = 1.5\nB = 2.0\nC = 1e-5\nD = 1e16\nE = 1e15\nF = .5\nG = 5.\nH = -0.0\nI = 1_0.2_5e1_0\n',
      {
        A: '1.5',
        B: '2.0',
        C: '1e-05',
        D: '1e+16',
        E: '1000000000000000.0',
        F: '0.5',
        G: '5.0',
        H: '-0.0',
        I: '102500000000.0',
      },
    ],
    ['True/False, None omitted', 'A = True\nB = False\nC = None\n', { A: 'true', B: 'false' }],
    ['lists as JSON', "A = [1, 'two', 3.0, True, None, [], {}, ()]\n", { A: '[1,"two",3.0,true,null,[],{},[]]' }],
    [
      'tuples as JSON arrays',
      "A = (1, 'a',)\nB = ('x',)\nC = ()\nD = 1, 2,\nE = 1, 2\n",
      {
        A: '[1,"a"]',
        B: '["x"]',
        C: '[]',
        D: '[1,2]',
        E: '[1,2]',
      },
    ],
    ['a parenthesised value is not a tuple', "A = ('x')\nB = ((((-1))))\n", { A: 'x', B: '-1' }],
    [
      'dicts as JSON',
      "A = {\n  'k': 'v',\n  \"n\": {'l': [1, {'d': None}]},\n  'f': 1e-7,\n}\n",
      {
        A: '{"k":"v","n":{"l":[1,{"d":null}]},"f":1e-07}',
      },
    ],
    [
      'JSON escaping inside containers',
      'A = [\'"q" \\\\ \\x01 \\x7f é 🔑\']\n',
      { A: '["\\"q\\" \\\\ \\u0001 \x7f é 🔑"]' },
    ],
    [
      '$(...) and %(x)s are only text',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} that must stay unexpanded
      "A = '$(rm -rf /) ${HOME} %(name)s {0}'\n",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} that must stay unexpanded
      { A: '$(rm -rf /) ${HOME} %(name)s {0}' },
    ],
    ['names with _ and digits', '_A = 1\nA1 = 2\n__B__ = 3\n', { _A: '1', A1: '2', __B__: '3' }],
    ['CRLF line endings', "A = 'x'\r\nB = '''1\r\n2'''\r\n", { A: 'x', B: '1\n2' }],
    ['byte order mark', "\uFEFFA = 'x'\n", { A: 'x' }],
    ['no trailing newline', 'A = 1', { A: '1' }],
    ['unicode inside strings', "A = 'h\u00e9llo ✓ 🔑'\n", { A: 'héllo ✓ 🔑' }],
  ];
  it.each(table)('%s', (_title, input, expected) => {
    expect(parse(input)).toEqual(expected);
  });

  it('keeps the order of the file', () => {
    expect(parsePyfile('Z = 1\nA = 2\nM = 3\n', 'f').names()).toEqual(['Z', 'A', 'M']);
  });
});

interface PyErrorCase extends ErrorCase {
  /** What Python makes of the same input: is it a file of single `NAME = literal` statements? */
  readonly python: 'rejects' | 'accepts';
}

const c = CANARY;
const NOT_ALLOWED = /is not allowed; only NAME = literal assignments are read \(secret-fetch never executes the file\)/;
const errors: PyErrorCase[] = [
  // Code: never executed, always an error. Python's literal_eval refuses all of these too.
  {
    title: 'import',
    input: `import os  # ${c}`,
    line: 1,
    col: 1,
    kind: /^\S+ an import statement is not allowed/,
    python: 'rejects',
  },
  {
    title: 'from import',
    input: `from os import environ\nX = '${c}'`,
    line: 1,
    col: 1,
    kind: /an import statement/,
    python: 'rejects',
  },
  {
    title: 'function call',
    input: `X = open('${c}').read()`,
    line: 1,
    col: 5,
    kind: /a function call is not allowed/,
    python: 'rejects',
  },
  {
    title: 'method call',
    input: `X = '${c}'.upper()`,
    line: 1,
    col: 20,
    kind: /attribute access is not allowed/,
    python: 'rejects',
  },
  {
    title: 'os.environ',
    input: `X = os.environ['${c}']`,
    line: 1,
    col: 5,
    kind: /attribute access is not allowed/,
    python: 'rejects',
  },
  {
    title: 'a bare name',
    input: `X = ${c}`,
    line: 1,
    col: 5,
    kind: /a name \(a reference to another variable or a built-in\) is not allowed/,
    python: 'rejects',
  },
  {
    title: 'string +',
    input: `X = 'a' + '${c}'`,
    line: 1,
    col: 9,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'string %',
    input: `X = '%s' % '${c}'`,
    line: 1,
    col: 10,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'multiplication',
    input: `X = 3 * '${c}'`,
    line: 1,
    col: 7,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'number arithmetic',
    input: `X = 60 * 60  # ${c}`,
    line: 1,
    col: 8,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'subscript',
    input: `X = '${c}'[0]`,
    line: 1,
    col: 20,
    kind: /a subscript is not allowed/,
    python: 'rejects',
  },
  { title: 'lambda', input: `X = lambda: '${c}'`, line: 1, col: 5, kind: /a lambda is not allowed/, python: 'rejects' },
  {
    title: 'conditional expression',
    input: `X = '${c}' if True else ''`,
    line: 1,
    col: 21,
    kind: /a conditional expression is not allowed/,
    python: 'rejects',
  },
  {
    title: 'comprehension',
    input: `X = ['${c}' for _ in range(2)]`,
    line: 1,
    col: 22,
    kind: /a comprehension is not allowed/,
    python: 'rejects',
  },
  {
    title: 'name comprehension',
    input: `X = [x for x in '${c}']`,
    line: 1,
    col: 6,
    kind: /a comprehension is not allowed/,
    python: 'rejects',
  },
  { title: 'walrus', input: `X = (Y := '${c}')`, line: 1, col: 6, kind: /a name .* is not allowed/, python: 'rejects' },
  {
    title: 'augmented assignment',
    input: `X = 'a'\nX += '${c}'`,
    line: 2,
    col: 3,
    kind: /an augmented assignment is not allowed/,
    python: 'rejects',
  },
  {
    title: 'annotated assignment',
    input: `X: str = '${c}'`,
    line: 1,
    col: 2,
    kind: /an annotated assignment is not allowed/,
    python: 'rejects',
  },
  {
    title: 'chained assignment',
    input: `X = Y = '${c}'`,
    line: 1,
    col: 5,
    kind: /a chained assignment is not allowed/,
    python: 'rejects',
  },
  {
    title: 'chained after a literal',
    input: `X = '${c}' = Y`,
    line: 1,
    col: 21,
    kind: /a chained assignment is not allowed/,
    python: 'rejects',
  },
  {
    title: 'unpacking assignment',
    input: `X, Y = '${c}', 'b'`,
    line: 1,
    col: 2,
    kind: /an unpacking assignment is not allowed/,
    python: 'rejects',
  },
  {
    title: 'if statement',
    input: `if True:\n    X = '${c}'`,
    line: 1,
    col: 1,
    kind: /a compound statement is not allowed/,
    python: 'rejects',
  },
  {
    title: 'def',
    input: `def f():\n    return '${c}'`,
    line: 1,
    col: 1,
    kind: /a compound statement is not allowed/,
    python: 'rejects',
  },
  {
    title: 'del',
    input: `del X  # ${c}`,
    line: 1,
    col: 1,
    kind: /a statement other than an assignment is not allowed/,
    python: 'rejects',
  },
  {
    title: 'expression statement (call)',
    input: `print('${c}')`,
    line: 1,
    col: 6,
    kind: /a function call is not allowed/,
    python: 'rejects',
  },
  {
    title: 'bare name statement',
    input: `DEBUG  # ${c}`,
    line: 1,
    col: 1,
    kind: /an expression statement is not allowed/,
    python: 'rejects',
  },
  {
    title: 'operator after a docstring',
    input: `'${c}' + 'x'`,
    line: 1,
    col: 17,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'number statement',
    input: `42  # ${c}`,
    line: 1,
    col: 1,
    kind: /an expression statement is not allowed/,
    python: 'rejects',
  },
  { title: 'f-string', input: `X = f'{${c}}'`, line: 1, col: 5, kind: /an f-string is not allowed/, python: 'rejects' },
  {
    title: 'unary minus on a name',
    input: `X = -Y  # ${c}`,
    line: 1,
    col: 5,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'double minus',
    input: `X = --1  # ${c}`,
    line: 1,
    col: 5,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'minus on True',
    input: `X = -True  # ${c}`,
    line: 1,
    col: 5,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'dict unpacking',
    input: `X = {**Y, 'a': '${c}'}`,
    line: 1,
    col: 6,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  {
    title: 'operator on a later line',
    input: `X = (\n  '${c}'\n  + 'b')`,
    line: 3,
    col: 3,
    kind: /an operator is not allowed/,
    python: 'rejects',
  },
  // Syntax errors for Python too.
  {
    title: 'indented line',
    input: `X = 1\n  Y = '${c}'`,
    line: 2,
    col: 3,
    kind: /an indented line/,
    python: 'rejects',
  },
  { title: 't-string', input: `X = t'${c}'`, line: 1, col: 5, kind: /a t-string is not allowed/, python: 'rejects' },
  {
    title: 'bad string prefix',
    input: `X = ur'${c}'`,
    line: 1,
    col: 5,
    kind: /an invalid string prefix/,
    python: 'rejects',
  },
  {
    title: 'unterminated string',
    input: `X = 1\nY = '${c}\nZ = 2`,
    line: 2,
    col: 5,
    kind: /an unterminated string/,
    python: 'rejects',
  },
  {
    title: 'unterminated triple-quoted string',
    input: `X = """${c}\n\nmore`,
    line: 1,
    col: 5,
    kind: /an unterminated triple-quoted string/,
    python: 'rejects',
  },
  {
    title: 'escaped closing quote',
    input: `X = '${c}\\'`,
    line: 1,
    col: 5,
    kind: /an unterminated string/,
    python: 'rejects',
  },
  {
    title: 'raw string ending in a backslash',
    input: `X = r'${c}\\'`,
    line: 1,
    col: 5,
    kind: /an unterminated string/,
    python: 'rejects',
  },
  {
    title: 'truncated \\x',
    input: `X = '${c}\\x4'`,
    line: 1,
    col: 19,
    kind: /a truncated \\x escape/,
    python: 'rejects',
  },
  {
    title: 'truncated \\u',
    input: `X = '\\u1x${c}'`,
    line: 1,
    col: 6,
    kind: /a truncated \\u escape/,
    python: 'rejects',
  },
  {
    title: '\\U beyond Unicode',
    input: `X = '\\U00110000${c}'`,
    line: 1,
    col: 6,
    kind: /beyond the last Unicode code point/,
    python: 'rejects',
  },
  {
    title: 'leading zero',
    input: `X = 0123  # ${c}`,
    line: 1,
    col: 5,
    kind: /a decimal integer with a leading zero/,
    python: 'rejects',
  },
  {
    title: 'double underscore in a number',
    input: `X = 1__0  # ${c}`,
    line: 1,
    col: 5,
    kind: /an invalid number/,
    python: 'rejects',
  },
  { title: 'empty hex', input: `X = 0x  # ${c}`, line: 1, col: 5, kind: /an invalid number/, python: 'rejects' },
  {
    title: 'unclosed bracket',
    input: `X = ['${c}',\n 'b'`,
    line: 1,
    col: 5,
    kind: /a bracket that is never closed/,
    python: 'rejects',
  },
  {
    title: 'unclosed parenthesis',
    input: `X = ('${c}'`,
    line: 1,
    col: 5,
    kind: /a bracket that is never closed/,
    python: 'rejects',
  },
  {
    title: 'mismatched bracket',
    input: `X = ['${c}')`,
    line: 1,
    col: 21,
    kind: /a closing bracket that does not match/,
    python: 'rejects',
  },
  {
    title: 'unmatched closing bracket',
    input: `X = ]  # ${c}`,
    line: 1,
    col: 5,
    kind: /an unmatched closing bracket/,
    python: 'rejects',
  },
  { title: 'missing value', input: `X =  # ${c}`, line: 1, col: 21, kind: /a missing value/, python: 'rejects' },
  {
    title: 'missing comma',
    input: `X = ['${c}' 1]`,
    line: 1,
    col: 22,
    kind: /a number where a comma or a closing bracket was expected/,
    python: 'rejects',
  },
  {
    title: 'two values',
    input: `X = '${c}' 42`,
    line: 1,
    col: 21,
    kind: /a number where the statement should end/,
    python: 'rejects',
  },
  {
    title: 'a closing bracket after a value',
    input: `X = '${c}')`,
    line: 1,
    col: 20,
    kind: /an unmatched closing bracket where the statement should end/,
    python: 'rejects',
  },
  {
    title: 'stray backslash',
    input: `X = '${c}' \\ 1`,
    line: 1,
    col: 21,
    kind: /a backslash outside a string/,
    python: 'rejects',
  },
  {
    title: 'non-ASCII outside a string',
    input: `X = '${c}' ✓`,
    line: 1,
    col: 21,
    kind: /a non-ASCII character outside a string/,
    python: 'rejects',
  },
  {
    title: 'unexpected character',
    input: `X = $'${c}'`,
    line: 1,
    col: 5,
    kind: /an unexpected character/,
    python: 'rejects',
  },
  {
    title: 'nesting too deep',
    input: `X = ${'['.repeat(300)}'${c}'${']'.repeat(300)}`,
    line: 1,
    col: 262,
    kind: /values nested too deeply/,
    python: 'rejects',
  },
  // Python would accept these; secret-fetch is stricter on purpose.
  {
    title: 'lowercase name',
    input: `secret_key = '${c}'`,
    line: 1,
    col: 1,
    kind: /"secret_key" is not an UPPERCASE name; Flask loads only UPPERCASE names/,
    python: 'accepts',
  },
  {
    title: 'mixed-case name',
    input: `Secret = '${c}'`,
    line: 1,
    col: 1,
    kind: /"Secret" is not an UPPERCASE name/,
    python: 'accepts',
  },
  {
    title: 'underscore-only name',
    input: `_ = '${c}'`,
    line: 1,
    col: 1,
    kind: /"_" is not an UPPERCASE name/,
    python: 'accepts',
  },
  {
    title: 'non-ASCII name',
    input: `CLÉ = '${c}'`,
    line: 1,
    col: 1,
    kind: /a name with non-ASCII characters/,
    python: 'accepts',
  },
  {
    title: 'bytes',
    input: `X = b'${c}'`,
    line: 1,
    col: 5,
    kind: /a bytes literal \(b'...'\) is not allowed/,
    python: 'accepts',
  },
  { title: 'raw bytes', input: `X = rb'${c}'`, line: 1, col: 5, kind: /a bytes literal/, python: 'accepts' },
  {
    title: '\\N{...} escape',
    input: `X = '\\N{EM DASH}${c}'`,
    line: 1,
    col: 6,
    kind: /a \\N\{\.\.\.\} named escape, which secret-fetch does not support/,
    python: 'accepts',
  },
  {
    title: 'surrogate escape',
    input: `X = '\\ud800${c}'`,
    line: 1,
    col: 6,
    kind: /an escape for a surrogate code point/,
    python: 'accepts',
  },
  {
    title: 'complex number',
    input: `X = 1j  # ${c}`,
    line: 1,
    col: 5,
    kind: /a complex number is not allowed/,
    python: 'accepts',
  },
  {
    title: 'float overflow',
    input: `X = 1e999  # ${c}`,
    line: 1,
    col: 5,
    kind: /a float too large to represent/,
    python: 'accepts',
  },
  {
    title: 'ellipsis',
    input: `X = ...  # ${c}`,
    line: 1,
    col: 5,
    kind: /an ellipsis is not allowed/,
    python: 'accepts',
  },
  { title: 'set', input: `X = {'${c}', 'b'}`, line: 1, col: 5, kind: /a set is not allowed/, python: 'accepts' },
  {
    title: 'non-string dict key',
    input: `X = {1: '${c}'}`,
    line: 1,
    col: 6,
    kind: /a dict key that is not a string/,
    python: 'accepts',
  },
  {
    title: 'duplicate dict key',
    input: `X = {'k': '${c}', 'k': 2}`,
    line: 1,
    col: 28,
    kind: /a duplicate dict key/,
    python: 'accepts',
  },
  {
    title: 'semicolon',
    input: `X = '${c}'; Y = 1`,
    line: 1,
    col: 20,
    kind: /a semicolon is not allowed/,
    python: 'accepts',
  },
  {
    title: 'duplicate name names both lines',
    input: `TOKEN = '${c}'\nOTHER = 1\nTOKEN = 'x'`,
    line: 3,
    col: 1,
    kind: /"TOKEN" is defined twice, on line 1 and on line 3/,
    python: 'accepts',
  },
  {
    title: 'NUL via \\0',
    input: `X = 1\nTOKEN = '${c}\\0'`,
    line: 2,
    col: 1,
    kind: /the value of "TOKEN" contains a NUL byte/,
    python: 'accepts',
  },
  {
    title: 'NUL via \\x00',
    input: `TOKEN = ('${c}'\n  '\\x00')`,
    line: 1,
    col: 1,
    kind: /the value of "TOKEN" contains a NUL byte/,
    python: 'accepts',
  },
];

describe('pyfile: errors', () => {
  it.each(errors)('$title', (e) => {
    const err = expectFormatError(parsePyfile, e, 'settings.cfg');
    if (NOT_ALLOWED.test(err.message)) expect(err.hint).toMatch(/NAME = a string, number/);
  });

  it('Python agrees about which inputs are not plain NAME = literal files', () => {
    const script = `${PY_ENV}
def accepts(src):
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return 'rejects'
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if not isinstance(node, ast.Assign) or len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            return 'rejects'
        try:
            ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return 'rejects'
    return 'accepts'
out([accepts(src) for src in json.loads(sys.stdin.buffer.read().decode('utf-8'))])
`;
    const verdicts = JSON.parse(python(script, JSON.stringify(errors.map((e) => e.input)))) as string[];
    const got = errors.map((e, i) => `${e.title}: ${verdicts[i]}`);
    expect(got).toEqual(errors.map((e) => `${e.title}: ${e.python}`));
  });
});

// A realistic file with every kind of literal; Python computes the expected values.
const FIXTURE = String.raw`# -*- coding: utf-8 -*-
"""Flask settings used by the pyfile tests.

Every value here is compared with what Python itself computes.
"""

SECRET_KEY = 'k3y-with-\'single\' and "double" quotes'
DATABASE_URI = "postgresql://user:p%40ss@db:5432/app?sslmode=require"
RAW = r'C:\new\table\x41\''
RAW_DOUBLE = R"a\"b\\"
UNICODE = u'h\xe9llo \u2713 \U0001F511 é✓🔑'
OCTAL = '\101\7\0101\777'
ESCAPES = 'a\tb\nc\rd\\e\'f\"g\a\b\f\v'
UNKNOWN_ESCAPES = '\d\w\s\8 \%'
CONTINUED = 'abc\
def'
TRIPLE = """line1
  line2 'single' "double" ""
\ttab escaped
"""
TRIPLE_SINGLE = '''a'b''c\''''
RAW_TRIPLE = r"""raw \n stays
two lines"""
CONCAT = ('part1 '
          "part2 "  # a comment inside the parentheses
          r'\part3')
CONCAT_INLINE = 'a' 'b' "c" """d"""
EMPTY = ''
SUBSTITUTION = '$(rm -rf /) $HOME %(name)s {0}'
INT = 42
NEGATIVE = -17
POSITIVE = +5
SPACED_SIGN = - 3
BIG = 123456789012345678901234567890
UNDERSCORES = 1_000_000
HEX = 0xDEAD_beef
OCTAL_INT = 0o755
BINARY = -0b1010
ZERO = 0
ZEROS = 000
FLOAT = 1.5
FLOAT_WHOLE = 2.0
SMALL = 1e-5
SMALLER = 0.0001
TINY = 5e-324
LARGE = 1e16
LARGER = 1e22
NOT_SO_LARGE = 1e15
POINT = .5
TRAILING_POINT = 5.
EXPONENT = 1_0.2_5e1_0
NEGATIVE_ZERO = -0.0
THIRD = 0.3333333333333333
TENTH = 0.1
MAX_FLOAT = 1.7976931348623157e308
PI = 3.141592653589793
AVOGADRO = 6.02214076e23
CAPITAL_E = 2E+3
TRUE = True
FALSE = False
NONE = None
LIST = [1, 'two', 3.0, True, None, [], {}, ()]
TUPLE = (1, 'a',)
ONE_TUPLE = ('x',)
EMPTY_TUPLE = ()
BARE_TUPLE = 1, 'two', 3.5,
PARENTHESISED = ('just a string')
NESTED_PARENS = ((((-1))))
DICT = {
    'host': 'db',
    "port": 5432,
    'nested': {'list': [1, 2, {'deep': None}], 'flag': False},
    'unicode': 'é✓🔑',
    'escapes': 'tab\there "q" \\ \x01\x7f\u2028\x85',
    'float': 1e-7,
    'big': -123456789012345678901234567890,
}
EMPTY_DICT = {}
NESTED = [[[[]]], ([],), {'a': {'b': {'c': ()}}}]
MULTILINE_LIST = [
    'a',
    'b',  # a trailing comma follows
]
BACKSLASH_CONTINUATION = \
    'continued'
ADMINS = ['ops@example.com', "security@example.com"]
_PRIVATE = 'Flask loads names starting with _ too'
A1 = 'digits in the name'
`;

describe('pyfile: agrees with Python', () => {
  it('ast.literal_eval and exec (what Flask runs) give the same values as secret-fetch', () => {
    const script = `${PY_ENV}
src = sys.stdin.buffer.read().decode('utf-8')
literal = {}
for node in ast.parse(src).body:
    if isinstance(node, ast.Assign):
        value = env(ast.literal_eval(node.value))
        if value is not None:
            literal[node.targets[0].id] = value
namespace = {}
exec(compile(src, 'settings.cfg', 'exec'), namespace)
flask = {k: env(v) for k, v in namespace.items() if k.isupper() and env(v) is not None}
out({'literal': list(literal.items()), 'flask': flask})
`;
    const python_ = JSON.parse(python(script, FIXTURE)) as {
      literal: [string, string][];
      flask: Record<string, string>;
    };
    const ours = parsePyfile(FIXTURE, 'settings.cfg');
    expect(python_.literal.length).toBeGreaterThan(60);
    expect([...ours.entries()]).toEqual(python_.literal);
    expect(Object.fromEntries(ours.entries())).toEqual(python_.flask);
  });

  it('floats: pythonFloatRepr matches repr() for special and random doubles', () => {
    const values = [
      0.1, 0.5, 1, 2.5, 100, 1e15, 1e16, 1e17, 1e21, 1e22, 1e-4, 1e-5, 1e-7, 5e-324, 2.2250738585072014e-308,
      1.7976931348623157e308, 123456789.123, 9007199254740992, 0.3333333333333333, 4.35, 1234567890123456.8, -2.5,
      -1e-10,
    ];
    const bits = new DataView(new ArrayBuffer(8));
    let seed = 987654321;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    // Ordinary magnitudes, where Python writes plain decimals (1e-4 <= |x| < 1e16)...
    while (values.length < 1000) values.push((next() / 2 ** 31) * 10 ** ((next() % 24) - 6));
    // ...and arbitrary bit patterns, mostly huge or tiny.
    while (values.length < 2000) {
      bits.setUint32(0, (next() << 1) ^ next());
      bits.setUint32(4, (next() << 1) ^ next());
      const x = bits.getFloat64(0);
      if (Number.isFinite(x)) values.push(x);
    }
    const texts = values.map((x) => x.toExponential()); // a literal Python reads as the same double
    const reprs = JSON.parse(
      python(`${PY_ENV}\nout([repr(float(t)) for t in json.loads(sys.stdin.read())])`, JSON.stringify(texts)),
    ) as string[];
    expect(values.map(pythonFloatRepr)).toEqual(reprs);
    // ...and the parser produces the same text from the literal.
    const source = texts.map((t, i) => `F${i} = ${t.replace(/^-/, '- ')}`).join('\n');
    expect(Object.values(parse(source))).toEqual(reprs);
  });
});

// A small independent writer of Python string literals, like repr().
function pyRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    const hex = (n: number, width: number) => cp.toString(16).padStart(width, '0').slice(-n);
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) out += `\\x${hex(2, 2)}`;
    else if (cp === 0x2028 || cp === 0x2029 || cp === 0xfeff) out += `\\u${hex(4, 4)}`;
    else if (cp === 0x1f511) out += `\\U${hex(8, 8)}`;
    else out += ch;
  }
  return quote + out + quote;
}

const TRICKY: Record<string, string> = {
  EMPTY: '',
  SINGLE: "it's",
  DOUBLE: 'say "hi"',
  BOTH: `'"'""'`,
  BACKSLASHES: '\\ \\\\ \\n \\x41 \\',
  NEWLINES: 'a\nb\r\nc\rd',
  CONTROL: '\x01\x07\x1b[31m\x7f\x85',
  UNICODE: 'héllo ✓ 日本語 🔑 \u2028\u2029\ufeff \u00a0',
  TRIPLE_QUOTES: '\'\'\' """',
  HASH: '# not a comment',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} that must stay unexpanded
  SUBST: '$(rm -rf /) ${HOME} `id` %(x)s {0}',
  PEM: '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n',
};

function randomStrings(count: number): Record<string, string> {
  const chars = [...' !"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~\n\t\r\x01\x7fé✓🔑\u2028'];
  let seed = 4242;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const values: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    let v = '';
    const length = Math.floor(random() * 24);
    for (let j = 0; j < length; j++) v += chars[Math.floor(random() * chars.length)];
    values[`R${i}`] = v;
  }
  return values;
}

describe('pyfile: round trip', () => {
  const all = { ...TRICKY, ...randomStrings(300) };

  it('strings written like repr() parse back unchanged', () => {
    const source = Object.entries(all)
      .map(([name, value]) => `${name} = ${pyRepr(value)}`)
      .join('\n');
    expect(parse(source)).toEqual(all);
  });

  it("strings written by Python's own repr() parse back unchanged", () => {
    const source = python(
      `${PY_ENV}\nfor k, v in json.loads(sys.stdin.buffer.read().decode('utf-8')).items(): sys.stdout.buffer.write(f'{k} = {v!r}\\n'.encode())`,
      JSON.stringify(all),
    );
    expect(parse(source)).toEqual(all);
  });

  it('containers written by Python parse back to the JSON Python writes', () => {
    const script = `${PY_ENV}
values = json.loads(sys.stdin.buffer.read().decode('utf-8'))
data = {'LIST': list(values.values()), 'TUPLE': tuple(values.values())[:5], 'DICT': values, 'MIXED': [1, 2.5, True, None, {'k': (1e-9, -0.0)}]}
source = ''.join(f'{k} = {v!r}\\n' for k, v in data.items())
out({'source': source, 'env': {k: env(v) for k, v in data.items()}})
`;
    const result = JSON.parse(python(script, JSON.stringify(all))) as { source: string; env: Record<string, string> };
    expect(parse(result.source)).toEqual(result.env);
  });

  it('ints written in every base parse back to their decimal value', () => {
    const numbers = [0n, 1n, 7n, 255n, 2n ** 53n + 1n, 2n ** 64n, 10n ** 30n + 7n];
    const lines: string[] = [];
    const expected: Record<string, string> = {};
    numbers.forEach((n, i) => {
      for (const [prefix, radix] of [
        ['', 10],
        ['0x', 16],
        ['0o', 8],
        ['0b', 2],
      ] as const) {
        const name = `N${i}_${radix}`;
        lines.push(`${name} = ${prefix}${n.toString(radix)}`, `${name}_NEG = -${prefix}${n.toString(radix)}`);
        expected[name] = n.toString();
        expected[`${name}_NEG`] = (-n).toString();
      }
    });
    expect(parse(lines.join('\n'))).toEqual(expected);
  });
});

describe('pyfile: coding declarations', () => {
  // Python's tokenize.detect_encoding is the reference: secret-fetch reads the file as UTF-8, so
  // it accepts a declaration exactly when Python would read the file as UTF-8 too.
  const PY_CODING = `
import io, sys, tokenize, codecs
try:
    name = tokenize.detect_encoding(io.BytesIO(sys.stdin.buffer.read()).readline)[0]
    print('utf-8' if codecs.lookup(name).name == 'utf-8' else 'other')
except SyntaxError:
    print('unknown')
`;
  const names = [
    'utf-8',
    'UTF-8',
    'utf8',
    'UTF8',
    'utf_8',
    'Utf_8',
    'utf-8-unix',
    'utf-8-sig',
    'u8',
    'cp65001',
    'latin-1',
    'iso-8859-1',
    'utf-7',
    'ascii',
    'utf-16',
    'cp1252',
    'bogus',
  ];
  const layouts = [
    (n: string) => `# -*- coding: ${n} -*-\nA = 'x'\n`,
    (n: string) => `#!/usr/bin/env python\n# vim: set fileencoding=${n} :\nA = 'x'\n`,
    (n: string) => `\n#coding=${n}\nA = 'x'\n`,
  ];
  const cases = names.flatMap((n) => layouts.map((layout) => [n, layout(n)] as const));

  it.each(cases)('%s: %j', (_name, input) => {
    const utf8 = python(PY_CODING, input).trim() === 'utf-8';
    if (utf8) {
      expect(parse(input)).toEqual({ A: 'x' });
      return;
    }
    const error = (() => {
      try {
        parsePyfile(input, 'settings.cfg');
      } catch (caught) {
        return caught as Error & { exitCode?: number };
      }
      return undefined;
    })();
    expect(error?.message).toMatch(/^settings\.cfg:[12]:\d+: a coding declaration for an encoding other than UTF-8/);
    expect(error?.exitCode).toBe(65);
  });

  it('a coding line after code, or on line 3, is only a comment (as in Python)', () => {
    expect(parse(`A = 'x'\n# -*- coding: latin-1 -*-\n`)).toEqual({ A: 'x' });
    expect(parse(`\n\n# -*- coding: latin-1 -*-\nA = 'x'\n`)).toEqual({ A: 'x' });
    expect(python(PY_CODING, `A = 'x'\n# -*- coding: latin-1 -*-\n`).trim()).toBe('utf-8');
  });

  it('never quotes the declaration', () => {
    expectFormatError(
      parsePyfile,
      {
        title: '',
        input: `# ${CANARY} coding: latin-1\nA = 1\n`,
        line: 1,
        col: 3 + CANARY.length + 1,
        kind: /coding declaration/,
      },
      'settings.cfg',
    );
  });
});
