import { describe, expect, it } from 'vitest';
import { parseDotenv } from '../../src/formats/dotenv.ts';
import { CANARY, type ErrorCase, entriesOf, expectFormatError } from './helpers.ts';

const parse = (text: string) => entriesOf(parseDotenv(text, '.env'));

describe('dotenv: valid input', () => {
  const table: [string, string, Record<string, string>][] = [
    ['empty file', '', {}],
    ['blank lines and comments only', '\n  \n# c\n   # indented comment\n', {}],
    ['simple', 'A=1\nB=two\n', { A: '1', B: 'two' }],
    ['no trailing newline', 'A=1', { A: '1' }],
    ['export prefix', 'export A=1\nexport\tB=2\n', { A: '1', B: '2' }],
    ['a variable called export', 'export=1\n', { export: '1' }],
    ['a variable called export, spaced', 'export = 2\n', { export: '2' }],
    ['spaces around =', 'A = 1\nB\t=\t2\n  C =3\n', { A: '1', B: '2', C: '3' }],
    ['unquoted value trimmed', 'A=   spaced out   \n', { A: 'spaced out' }],
    ['inline comment after a space', 'A=value # comment\nB=v\t# tab comment\n', { A: 'value', B: 'v' }],
    ['# inside a word is kept', 'A=pass#word\nB=a#b #c\n', { A: 'pass#word', B: 'a#b' }],
    ['value starting with #', 'A=#not-a-comment\n', { A: '#not-a-comment' }],
    ['# after spaces is a comment, so empty', 'A= # nothing\n', { A: '' }],
    ['empty value', 'A=\nB=   \n', { A: '', B: '' }],
    ['= inside a value', 'URL=postgres://u:p@h/db?a=b&c=d\n', { URL: 'postgres://u:p@h/db?a=b&c=d' }],
    ['unquoted quotes kept literally', `A=it's\nB=say "hi"\n`, { A: "it's", B: 'say "hi"' }],
    ['unquoted backslashes kept literally', 'A=C:\\dir\\n\n', { A: 'C:\\dir\\n' }],
    ['single quotes are literal', `A='a\\nb $HOME # x'\n`, { A: 'a\\nb $HOME # x' }],
    ['backticks are literal (never a command)', 'A=`whoami`\n', { A: 'whoami' }],
    ['double-quote escapes', 'A="a\\nb\\rc\\td\\"e\\\\f"\n', { A: 'a\nb\rc\td"e\\f' }],
    ['unknown escapes kept', 'A="\\$HOME \\x41 \\u0041"\n', { A: '\\$HOME \\x41 \\u0041' }],
    ['double quotes span lines', 'A="line1\nline2"\nB=1\n', { A: 'line1\nline2', B: '1' }],
    [
      'single quotes span lines',
      "A='-----BEGIN KEY-----\nabc\n-----END KEY-----'\n",
      {
        A: '-----BEGIN KEY-----\nabc\n-----END KEY-----',
      },
    ],
    ['comment after closing quote', 'A="v" # note\nB=\'w\'#note\n', { A: 'v', B: 'w' }],
    ['quoted value keeps spaces and #', 'A="  x # y  "\n', { A: '  x # y  ' }],
    ['quote after spaces', 'A=   "q"  \n', { A: 'q' }],
    ['empty quotes', 'A=""\nB=\'\'\n', { A: '', B: '' }],
    [
      'no expansion',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} that must stay unexpanded
      'A=$HOME\nB=${HOME}\nC="$(rm -rf /)"\nD=$(id)\n',
      {
        A: '$HOME',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} that must stay unexpanded
        B: '${HOME}',
        C: '$(rm -rf /)',
        D: '$(id)',
      },
    ],
    ['CRLF line endings', 'A=1\r\nB="x\r\ny"\r\n', { A: '1', B: 'x\ny' }],
    ['CR line endings', 'A=1\rB=2\r', { A: '1', B: '2' }],
    ['byte order mark', '\uFEFFA=1\n', { A: '1' }],
    ['unicode', 'A=héllo wörld ✓ 🔑\n', { A: 'héllo wörld ✓ 🔑' }],
    ['lowercase and underscore names', 'a=1\n_B2=2\n', { a: '1', _B2: '2' }],
  ];
  it.each(table)('%s', (_title, input, expected) => {
    expect(parse(input)).toEqual(expected);
  });

  it('keeps the order of the file', () => {
    expect(parseDotenv('Z=1\nA=2\nM=3\n', 'f').names()).toEqual(['Z', 'A', 'M']);
  });
});

describe('dotenv: errors', () => {
  const table: ErrorCase[] = [
    { title: 'a line without =', input: `A=1\n${CANARY}\n`, line: 2, col: 1, kind: /a line without '='/ },
    { title: 'a bare export', input: `export ${CANARY}\n`, line: 1, col: 1, kind: /a line without '='/ },
    { title: 'indented line without =', input: `\n   ${CANARY}`, line: 2, col: 4, kind: /a line without '='/ },
    {
      title: 'an invalid name (the canary is the name)',
      input: `${CANARY}=1\n`,
      line: 1,
      col: 1,
      kind: /not a valid environment variable name/,
    },
    { title: 'a name starting with a digit', input: `1A=${CANARY}\n`, line: 1, col: 1, kind: /not a valid/ },
    { title: 'a name with a space', input: `MY KEY=${CANARY}\n`, line: 1, col: 1, kind: /not a valid/ },
    { title: 'an empty name', input: `A=1\n=${CANARY}\n`, line: 2, col: 1, kind: /not a valid/ },
    { title: 'a name with a dot', input: `export a.b=${CANARY}\n`, line: 1, col: 8, kind: /not a valid/ },
    {
      title: 'an unterminated double quote names the opening line',
      input: `A=1\nB="${CANARY}\nC=2\nD=3\n`,
      line: 2,
      col: 3,
      kind: /unterminated quoted value/,
    },
    {
      title: 'an unterminated single quote',
      input: `A= '${CANARY}\n\n`,
      line: 1,
      col: 4,
      kind: /unterminated quoted value/,
    },
    { title: 'an unterminated backtick', input: `A=\`${CANARY}`, line: 1, col: 3, kind: /unterminated/ },
    {
      title: 'an escaped closing quote does not close',
      input: `A="${CANARY}\\"`,
      line: 1,
      col: 3,
      kind: /unterminated/,
    },
    {
      title: 'text after the closing quote',
      input: `A="x" ${CANARY}\n`,
      line: 1,
      col: 7,
      kind: /unexpected text after the closing quote/,
    },
    {
      title: 'text glued to the closing quote',
      input: `A='${CANARY}'x\n`,
      line: 1,
      col: 18,
      kind: /unexpected text after the closing quote/,
    },
    {
      title: 'a duplicate name names both lines',
      input: `TOKEN=${CANARY}\nOTHER=1\nexport TOKEN=${CANARY}\n`,
      line: 3,
      col: 8,
      kind: /"TOKEN" is defined twice, on line 1 and on line 3/,
    },
    {
      title: 'a NUL byte names the variable, not the value',
      input: `A=1\nTOKEN=${CANARY}\0x\n`,
      line: 2,
      col: 1,
      kind: /the value of "TOKEN" contains a NUL byte/,
    },
  ];
  it.each(table)('$title', (c) => {
    expectFormatError(parseDotenv, c, '.env');
  });
});

// An independent serializer: three ways of writing a value, each used where it can hold it.
function serialize(values: Record<string, string>, style: 'double' | 'single' | 'plain'): string {
  const lines = Object.entries(values).map(([name, value]) => {
    if (style === 'single') return `${name}='${value}'`;
    if (style === 'plain') return `export ${name} = ${value}   # trailing comment`;
    const escaped = value
      .replaceAll('\\', '\\\\')
      .replaceAll('"', '\\"')
      .replaceAll('\n', '\\n')
      .replaceAll('\r', '\\r')
      .replaceAll('\t', '\\t');
    return `${name}="${escaped}"`;
  });
  return `# generated\n${lines.join('\n')}\n`;
}

describe('dotenv: round trip', () => {
  const tricky: Record<string, string> = {
    EMPTY: '',
    SPACES: '  leading and trailing  ',
    DOUBLE: 'say "hello"',
    SINGLE: "it's",
    BOTH: `"'\``,
    NEWLINES: 'line1\nline2\n\nline4\n',
    CRLF: 'a\r\nb\rc',
    TAB: 'a\tb',
    HASH: 'a # not a comment #',
    LEADING_HASH: '#hash',
    EQUALS: '==a=b==',
    BACKSLASH: 'C:\\path\\n\\"x\\\\',
    TRAILING_BACKSLASH: 'ends with \\',
    UNICODE: 'héllo ✓ 日本語 🔑 \u2028 \u00a0',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} that must stay unexpanded
    SUBST: '$(rm -rf /) `id` ${HOME} $HOME',
    PEM: '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n',
    JSONISH: '{"a": [1, 2], "b": "c"}',
    CONTROL: '\x01\x1b[31m\x7f',
  };

  it('double-quoted with escapes: every value', () => {
    expect(parse(serialize(tricky, 'double'))).toEqual(tricky);
  });

  it('single-quoted: every value without a single quote', () => {
    const subset = Object.fromEntries(Object.entries(tricky).filter(([, v]) => !v.includes("'") && !v.includes('\r')));
    expect(Object.keys(subset).length).toBeGreaterThan(10);
    expect(parse(serialize(subset, 'single'))).toEqual(subset);
  });

  it('unquoted: every value that is one trimmed line without " #", a leading # or a leading quote', () => {
    const subset = Object.fromEntries(
      Object.entries(tricky).filter(
        ([, v]) => v !== '' && v === v.trim() && !/[\n\r]/.test(v) && !/[ \t]#/.test(v) && !/^["'`#]/.test(v),
      ),
    );
    expect(Object.keys(subset).length).toBeGreaterThan(6);
    expect(parse(serialize(subset, 'plain'))).toEqual(subset);
  });

  it('random printable values, double-quoted', () => {
    const alphabet = ' !"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~\n\t\ré✓🔑';
    const chars = [...alphabet];
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const values: Record<string, string> = {};
    for (let i = 0; i < 200; i++) {
      let v = '';
      const length = Math.floor(random() * 30);
      for (let j = 0; j < length; j++) v += chars[Math.floor(random() * chars.length)];
      values[`V${i}`] = v;
    }
    expect(parse(serialize(values, 'double'))).toEqual(values);
  });
});

describe('dotenv: where other readers disagree', () => {
  it("notes each unquoted value with a '#' inside it, naming the entry and line, never the value", () => {
    const notes: string[] = [];
    const text = `A=p#${CANARY}\nB="q#${CANARY}"\nC=plain # comment\nexport D=#${CANARY} # more\nE='#'\n`;
    expect(entriesOf(parseDotenv(text, 'app.env', (m) => notes.push(m)))).toEqual({
      A: `p#${CANARY}`,
      B: `q#${CANARY}`,
      C: 'plain',
      D: `#${CANARY}`,
      E: '#',
    });
    expect(notes).toEqual([
      expect.stringMatching(
        /^app\.env:1: the unquoted value of "A" contains a '#' that npm dotenv would read as the start of a comment; secret-fetch keeps it, as python-dotenv does/,
      ),
      expect.stringMatching(/^app\.env:4: the unquoted value of "D" contains a '#'/),
    ]);
    for (const note of notes) expect(note).not.toContain('CANARY');
  });
});
