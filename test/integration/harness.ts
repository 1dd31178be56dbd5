// Runs the built dist/secret-fetch the way a container runtime would: a fresh process with a
// chosen environment, stdout and stderr captured through pipes.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BINARY = join(ROOT, 'dist', 'secret-fetch');
export const KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
export const OTHER_KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/other';

if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run npm run build (npm test does)`);

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  pid: number;
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Called once the process has started, e.g. to send it a signal. */
  onSpawn?: (pid: number) => void;
  command?: string;
}

export const BASE_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', METADATA_SERVER_DETECTION: 'none' };

export function runBinary(args: string[], options: RunOptions = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.command ?? BINARY, args, {
      cwd: options.cwd ?? ROOT,
      env: { ...BASE_ENV, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('spawn', () => options.onSpawn?.(child.pid as number));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, pid: child.pid as number }));
  });
}

/** A fresh directory on tmpfs (/dev/shm), removed by the returned function. */
export function tmpfsDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync('/dev/shm/secret-fetch-test-');
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function filesIn(dir: string): string[] {
  return readdirSync(dir).sort();
}

/** A failure as the brief defines it: the code, one line on stderr, nothing on stdout, no canary. */
export function expectFailure(result: Result, code: number, message: RegExp, canaries: string[] = []): void {
  expect(result.code, result.stderr).toBe(code);
  const lines = result.stderr.trimEnd().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(result.stdout).toBe('');
  expectNoCanary(result, canaries);
}

export function expectNoCanary(result: Result, canaries: string[]): void {
  for (const canary of canaries) {
    expect(result.stdout).not.toContain(canary);
    expect(result.stderr).not.toContain(canary);
  }
}
