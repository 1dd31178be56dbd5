import { describe, expect, it } from 'vitest';
import { parseJson } from '../../src/formats/json.ts';
import { CANARY, type ErrorCase, entriesOf, expectFormatError } from './helpers.ts';

const parse = (text: string) => entriesOf(parseJson(text, 'secrets.json'));

describe('json: valid input', () => {
  const table: [string, string, Record<string, string>][] = [
    ['empty object', '{}', {}],
    ['whitespace everywhere', ' \r\n\t{ "A" : "x" , "B":"y" }\n\n', { A: 'x', B: 'y' }],
    ['strings as is', '{"A": "", "B": "  sp  ", "C": "héllo ✓ 🔑"}', { A: '', B: '  sp  ', C: 'héllo ✓ 🔑' }],
    [
      'string escapes',
      String.raw`{"A": "q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9\ud83d\udd11"}`,
      { A: 'q" b\\ s/ \b\f\n\r\t Aé🔑' },
    ],
    [
      'numbers keep their text',
      '{"A": 1, "B": -0, "C": 1.50, "D": 2e10, "E": 1E-7, "F": 12345678901234567890123, "G": 0.1}',
      { A: '1', B: '-0', C: '1.50', D: '2e10', E: '1E-7', F: '12345678901234567890123', G: '0.1' },
    ],
    ['booleans', '{"T": true, "F": false}', { T: 'true', F: 'false' }],
    ['null is omitted', '{"A": null, "B": "b"}', { B: 'b' }],
    [
      'nested values become compact JSON',
      '{"OBJ": {"a": [1, 2.50, {"b": null}], "c": "\\"q\\"", "d": true}, "ARR": [ ], "EMPTY": { }}',
      { OBJ: '{"a":[1,2.50,{"b":null}],"c":"\\"q\\"","d":true}', ARR: '[]', EMPTY: '{}' },
    ],
    ['nested big numbers keep every digit', '{"A": [12345678901234567890123]}', { A: '[12345678901234567890123]' }],
    ['nested keys need not be names', '{"A": {"not a name": 1, "": 2}}', { A: '{"not a name":1,"":2}' }],
    ['same key in different nested objects', '{"A": {"k": 1}, "B": {"k": 2}}', { A: '{"k":1}', B: '{"k":2}' }],
    ['byte order mark', '\uFEFF{"A": "1"}', { A: '1' }],
    ['U+2028 in a string', '{"A": "a\u2028b"}', { A: 'a\u2028b' }],
  ];
  it.each(table)('%s', (_title, input, expected) => {
    expect(parse(input)).toEqual(expected);
  });

  it('agrees with JSON.parse on nested values', () => {
    const doc = { X: { deep: [1, 'two', { three: [true, false, null] }], s: 'tab\tnl\n"q"\\ é 🔑 \u0001' } };
    const got = parse(JSON.stringify(doc));
    expect(JSON.parse(got.X ?? '')).toEqual(doc.X);
    expect(got.X).toBe(JSON.stringify(doc.X));
  });

  it('accepts nesting up to the limit', () => {
    const depth = 200;
    expect(parse(`{"A": ${'['.repeat(depth)}${']'.repeat(depth)}}`).A).toBe(`${'['.repeat(depth)}${']'.repeat(depth)}`);
  });
});

describe('json: errors', () => {
  const c = CANARY;
  const table: ErrorCase[] = [
    { title: 'top-level array', input: `["${c}"]`, line: 1, col: 1, kind: /the top level is an array/ },
    { title: 'top-level string', input: `\n  "${c}"`, line: 2, col: 3, kind: /the top level is a string/ },
    { title: 'top-level number', input: `42 ${c}`, line: 1, col: 1, kind: /a number/ },
    { title: 'top-level bare word', input: `${c}`, line: 1, col: 1, kind: /a bare word/ },
    { title: 'top-level true', input: `true\n${c}`, line: 1, col: 1, kind: /the top level is a boolean/ },
    { title: 'top-level null', input: `null // ${c}`, line: 1, col: 1, kind: /the top level is null/ },
    {
      title: 'unterminated string names where it opened',
      input: `{\n  "A": "${c}`,
      line: 2,
      col: 8,
      kind: /an unterminated string/,
    },
    {
      title: 'a line break inside a string',
      input: `{"A": "${c}\n"}`,
      line: 1,
      col: 21,
      kind: /a line break inside a string/,
    },
    {
      title: 'a control character inside a string',
      input: `{"A": "x\t${c}"}`,
      line: 1,
      col: 9,
      kind: /a control character inside a string/,
    },
    { title: 'an invalid escape', input: `{"A": "${c}\\q"}`, line: 1, col: 21, kind: /an invalid escape sequence/ },
    { title: 'a bad \\u escape', input: `{"A": "\\u12G4${c}"}`, line: 1, col: 8, kind: /an invalid \\u escape/ },
    { title: 'a single-quoted string', input: `{"A": '${c}'}`, line: 1, col: 7, kind: /a single-quoted string/ },
    { title: 'a bare word value', input: `{"A": ${c}}`, line: 1, col: 7, kind: /a bare word .* where a value/ },
    { title: 'an unquoted key', input: `{${c}: 1}`, line: 1, col: 2, kind: /a bare word .* where a key/ },
    { title: 'a single-quoted key', input: `{'${c}': 1}`, line: 1, col: 2, kind: /a single-quoted string/ },
    { title: 'a missing colon', input: `{"A" "${c}"}`, line: 1, col: 6, kind: /a string where a colon was expected/ },
    {
      title: 'a missing comma',
      input: `{"A": "${c}" "B": 1}`,
      line: 1,
      col: 23,
      kind: /a string where a comma or '}'/,
    },
    { title: 'a trailing comma', input: `{"A": "${c}",\n}`, line: 1, col: 22, kind: /a trailing comma/ },
    { title: 'a trailing comma in an array', input: `{"A": ["${c}",]}`, line: 1, col: 23, kind: /a trailing comma/ },
    { title: 'a comment', input: `{ // ${c}\n"A": 1}`, line: 1, col: 3, kind: /a comment/ },
    { title: 'an unclosed object', input: `{"A": "${c}"`, line: 1, col: 1, kind: /never closed with '}'/ },
    { title: 'an unclosed nested object', input: `{"A": {"b": "${c}"`, line: 1, col: 7, kind: /never closed/ },
    { title: 'an unclosed array', input: `{"A": ["${c}"`, line: 1, col: 7, kind: /an array that is never closed/ },
    {
      title: 'a mismatched bracket',
      input: `{"A": ["${c}"}`,
      line: 1,
      col: 23,
      kind: /a closing '}' where a comma or ']'/,
    },
    { title: 'a leading zero', input: `{"A": 0123, "B": "${c}"}`, line: 1, col: 7, kind: /an invalid number/ },
    { title: 'a leading plus', input: `{"A": +1, "B": "${c}"}`, line: 1, col: 7, kind: /an unexpected character/ },
    { title: 'NaN', input: `{"A": NaN, "B": "${c}"}`, line: 1, col: 7, kind: /a bare word/ },
    { title: 'a hex number', input: `{"A": 0x1F, "B": "${c}"}`, line: 1, col: 7, kind: /an invalid number/ },
    { title: 'a bare decimal point', input: `{"A": 1., "B": "${c}"}`, line: 1, col: 7, kind: /an invalid number/ },
    { title: 'extra content', input: `{"A": 1}\n{"B": "${c}"}`, line: 2, col: 1, kind: /after the top-level object/ },
    {
      title: 'an invalid name (the canary is the key)',
      input: `{\n "A": 1,\n "${c}": 2}`,
      line: 3,
      col: 2,
      kind: /a name that is not a valid environment variable name/,
    },
    { title: 'an empty key', input: `{"": "${c}"}`, line: 1, col: 2, kind: /not a valid environment variable name/ },
    {
      title: 'a duplicate top-level key names both lines',
      input: `{\n  "TOKEN": "${c}",\n  "OTHER": 1,\n  "TOKEN": "x"\n}`,
      line: 4,
      col: 3,
      kind: /"TOKEN" is defined twice, on line 2 and on line 4/,
    },
    {
      title: 'a duplicate nested key',
      input: `{"A": {\n"${c}": 1,\n"${c}": 2}}`,
      line: 3,
      col: 1,
      kind: /a duplicate key in a nested object \(the first is on line 2\)/,
    },
    {
      title: 'a NUL in a value names the variable',
      input: `{"TOKEN": "${c}\\u0000"}`,
      line: 1,
      col: 2,
      kind: /the value of "TOKEN" contains a NUL byte/,
    },
    {
      title: 'a lone surrogate in a value',
      input: `{"TOKEN": "${c}\\ud800"}`,
      line: 1,
      col: 2,
      kind: /the value of "TOKEN" contains an unpaired UTF-16 surrogate/,
    },
    {
      title: 'nesting too deep',
      input: `{"A": ${'['.repeat(1000)}"${c}"${']'.repeat(1000)}}`,
      line: 1,
      col: 262, // the 256th '['
      kind: /nested too deeply/,
    },
  ];
  it.each(table)('$title', (c) => {
    expectFormatError(parseJson, c, 'secrets.json');
  });

  it('an empty file', () => {
    expect(() => parseJson('  \n ', 'f')).toThrow(/^f:2:2: an empty file; expected a JSON object$/);
  });

  it('never passes on what V8 would say', () => {
    // V8: `Unexpected token 'C', "{"A": CANARY-s3cr3t}" is not valid JSON` - ours says what, not which.
    const input = `{"A": ${CANARY}}`;
    expect(() => JSON.parse(input)).toThrow(/CANARY/);
    expect(() => parseJson(input, 'f')).toThrow(/^f:1:7: a bare word/);
  });
});
