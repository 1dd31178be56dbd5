// Issue 14: the Bun-compiled candidate (the one `npm run bench` builds as dist/secret-fetch-bun).
// Bun-specific traps: JavaScriptCore's own `line` on every Error, and the compiled binary's
// autoload of the working directory's .env and bunfig.toml.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_ENV, ROOT } from './integration/harness.ts';

const BUN = join(ROOT, 'node_modules', '.bin', 'bun');

let dir: string;
let binary: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'secret-fetch-bun-'));
  binary = join(dir, 'secret-fetch-bun');
  const built = spawnSync(
    BUN,
    [
      'build',
      '--compile',
      '--minify',
      '--bytecode',
      '--format=cjs',
      '--no-compile-autoload-dotenv',
      '--no-compile-autoload-bunfig',
      join(ROOT, 'src', 'cli.ts'),
      '--outfile',
      binary,
    ],
    { encoding: 'utf8' },
  );
  if (built.status !== 0) throw new Error(`bun build --compile failed: ${built.stderr}`);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], cwd: string, env: Record<string, string> = {}) {
  return spawnSync(binary, args, { cwd, env: { ...BASE_ENV, ...env }, encoding: 'utf8' });
}

describe('the Bun-compiled binary', () => {
  it('prints every error message, not the line number JavaScriptCore puts on errors', () => {
    const result = run(['--source', join(dir, 'missing.bin'), '--env', '--', '/bin/true'], dir);
    expect(result.stderr).toBe(
      `secret-fetch: error: --env needs entries, but ${join(dir, 'missing.bin')} is read as raw (name the format with --format dotenv|json|yaml|toml|pyfile, or drop --env and use --out)\n`,
    );
    expect(result.status).toBe(64);
  });

  it('ignores a .env and a bunfig.toml in the working directory', () => {
    const cwd = mkdtempSync(join(dir, 'cwd-'));
    writeFileSync(join(cwd, '.env'), 'INJECTED=from-dotenv\n');
    writeFileSync(join(cwd, 'bunfig.toml'), 'preload = ["./preload.js"]\n');
    writeFileSync(
      join(cwd, 'preload.js'),
      `require('node:fs').writeFileSync(${JSON.stringify(join(cwd, 'ran'))}, '')\n`,
    );
    writeFileSync(join(cwd, 'a.env'), 'APP_KEY=value\n');
    const result = run(['--source', 'a.env', '--env', '--', '/usr/bin/env'], cwd);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('APP_KEY=value\n');
    expect(result.stdout).not.toContain('INJECTED');
    expect(existsSync(join(cwd, 'ran'))).toBe(false);
  });
});
