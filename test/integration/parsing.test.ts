// The built binary on secrets that used to cost seconds and gigabytes to parse, or came out wrong:
// each bad input is one line, exit 65, no command started, no file written, nothing quoted.

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { expectFailure, runBinary, tmpfsDir } from './harness.ts';

const CANARY = 'CANARY-parse-7f3a';
let dir: string;
let out: { dir: string; cleanup: () => void };
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'secret-fetch-parsing-'));
  out = tmpfsDir();
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  out.cleanup();
});

function put(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('bad secrets stop the start with 65', () => {
  const cases: [string, string, string, RegExp][] = [
    [
      '6 MB of nested YAML',
      'deep.yaml',
      `A: ${CANARY}\nB: ${'['.repeat(6_000_000)}\n`,
      /deep\.yaml:2:259: values nested too deeply \(more than 256 levels, secret-fetch's limit, which bounds the time and memory a parse takes\) \(flatten the structure/,
    ],
    [
      'a million YAML values',
      'wide.yaml',
      `A: ${CANARY}\nB: [${'1,'.repeat(1_000_000)}1]\n`,
      /wide\.yaml:2:\d+: more than 100,000 keys and values in one file .*split it into several secrets/,
    ],
    [
      'a TOML date that does not exist',
      'a.toml',
      `A = "${CANARY}"\nB = 2023-02-29\n`,
      /a\.toml:2:5: TOML error: a date that does not exist/,
    ],
    [
      'a pyfile declaring latin-1',
      'settings.cfg',
      `# -*- coding: latin-1 -*-\nSECRET_KEY = '${CANARY}'\n`,
      /settings\.cfg:1:7: a coding declaration for an encoding other than UTF-8/,
    ],
  ];
  it.each(cases)('%s', { timeout: 30_000 }, async (_title, name, text, message) => {
    const marker = join(out.dir, 'started');
    const result = await runBinary([
      '--source',
      put(name, text),
      '--out',
      join(out.dir, 'secret'),
      '--env',
      '--',
      '/bin/sh',
      '-c',
      `touch ${marker}`,
    ]);
    expectFailure(result, EXIT.format, message, [CANARY]);
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(join(out.dir, 'secret'))).toBe(false);
  });
});

describe('values reach the command as written', () => {
  async function envOf(name: string, text: string, ...flags: string[]) {
    const result = await runBinary(['--source', put(name, text), '--env', ...flags, '--', '/usr/bin/env']);
    expect(result.code, result.stderr).toBe(0);
    return { vars: result.stdout.split('\n'), stderr: result.stderr };
  }

  it('an entry named __proto__', async () => {
    const { vars } = await envOf('a.env', `__proto__=${CANARY}\nB=2\n`);
    expect(vars).toContain(`__proto__=${CANARY}`);
    expect(vars).toContain('B=2');
  });

  it('YAML merge keys and nested numbers', async () => {
    const { vars } = await envOf('a.yaml', 'BASE: &b {host: h, pin: 0123}\nDB:\n  <<: *b\n  host: db\n');
    expect(vars).toContain('DB={"pin":"0123","host":"db"}');
  });

  it("-v warns once about a dotenv '#' inside an unquoted value, naming the entry, not the value", async () => {
    const text = `TOKEN=${CANARY}#x\nOTHER=plain\n`;
    const { vars, stderr } = await envOf('a.env', text, '-v');
    expect(vars).toContain(`TOKEN=${CANARY}#x`);
    const warnings = stderr.split('\n').filter((line) => line.includes("'#'"));
    expect(warnings).toEqual([
      expect.stringMatching(/^secret-fetch: warning: .*a\.env:1: the unquoted value of "TOKEN"/),
    ]);
    expect(stderr).not.toContain(CANARY);
    expect((await envOf('a.env', text)).stderr).toBe('');
  });
});
