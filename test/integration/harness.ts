// Runs the built dist/secret-fetch the way a container runtime would: a fresh process with a
// chosen environment, stdout and stderr captured through pipes.

import { type ChildProcessByStdio, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BINARY = join(ROOT, 'dist', 'secret-fetch');
export const KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
export const OTHER_KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/other';

if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run npm run build (npm test does)`);

/**
 * The runtime dist/secret-fetch was built with (`npm run build -- --runtime=node|bun`): a Bun-
 * compiled binary carries its modules in an ELF section named .bun. Where the two differ, the
 * tests say which.
 */
export const RUNTIME: 'bun' | 'node' = elfSections(BINARY).includes('.bun') ? 'bun' : 'node';

/** The section names of a 64-bit little-endian ELF file, read from its headers only. */
export function elfSections(file: string): string[] {
  const fd = openSync(file, 'r');
  try {
    const read = (position: number, length: number) => {
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, position);
      return buffer;
    };
    const header = read(0, 64);
    const table = Number(header.readBigUInt64LE(0x28));
    const [size, count, names] = [header.readUInt16LE(0x3a), header.readUInt16LE(0x3c), header.readUInt16LE(0x3e)];
    const headers = read(table, size * count);
    const section = (i: number) => ({
      name: headers.readUInt32LE(i * size),
      offset: Number(headers.readBigUInt64LE(i * size + 0x18)),
      size: Number(headers.readBigUInt64LE(i * size + 0x20)),
    });
    const strings = section(names);
    const text = read(strings.offset, strings.size);
    return Array.from({ length: count }, (_, i) => {
      const start = section(i).name;
      return text.toString('latin1', start, text.indexOf(0, start));
    });
  } finally {
    closeSync(fd);
  }
}

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

/** A binary left running (--supervise, sidecar), whose output can be waited for line by line. */
export interface Running {
  readonly pid: number;
  /** Resolves with the stdout line matching `pattern` (waiting for it if need be). */
  line(pattern: RegExp): Promise<string>;
  /** Resolves with the stderr line matching `pattern` (waiting for it if need be). */
  errorLine(pattern: RegExp): Promise<string>;
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

export function spawnBinary(args: string[], options: { command?: string; env?: Record<string, string> } = {}): Running {
  const child: ChildProcessByStdio<null, Readable, Readable> = spawn(options.command ?? BINARY, args, {
    cwd: ROOT,
    env: { ...BASE_ENV, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  const waiters: { stream: 'stdout' | 'stderr'; pattern: RegExp; resolve: (line: string) => void }[] = [];
  const check = () => {
    for (const waiter of [...waiters]) {
      const line = output[waiter.stream].split('\n').find((l) => waiter.pattern.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  };
  for (const stream of ['stdout', 'stderr'] as const) {
    child[stream].setEncoding('utf8').on('data', (chunk: string) => {
      output[stream] += chunk;
      check();
    });
  }
  const done = new Promise<Awaited<Running['done']>>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, ...output }));
  });
  const wait = (stream: 'stdout' | 'stderr') => (pattern: RegExp) =>
    new Promise<string>((resolve, reject) => {
      waiters.push({ stream, pattern, resolve });
      check();
      done.then((r) => reject(new Error(`exited (${r.code}) before ${pattern}: ${r.stdout} ${r.stderr}`)));
    });
  return { pid: child.pid as number, line: wait('stdout'), errorLine: wait('stderr'), done };
}

/** Resolves once `condition` holds, checking every 20 ms (the test's own timeout bounds the wait). */
export async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** TCP sockets in LISTEN state that `pid` holds (from its fds and /proc/net/tcp{,6}). */
export function listeningSockets(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match?.[1] !== undefined) inodes.add(match[1]);
    } catch {
      // closed meanwhile
    }
  }
  const listening: string[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === '0A' && inodes.has(fields[9] ?? '')) listening.push(fields[1] ?? '');
    }
  }
  return listening;
}
