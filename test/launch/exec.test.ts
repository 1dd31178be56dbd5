// execCommand replaces the process, so every test runs it in a real, separate Node 24 process
// (fixtures/exec-child.ts) with stdout as a pipe, and looks at what the exec'd program saw:
// its PID, signal dispositions, fd flags, open fds, environment and working directory.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveCommand } from '../../src/launch/resolve.ts';
import type { Report, Scenario } from './fixtures/exec-child.ts';

/** Node 24 (process.execve needs >= 22.15), whatever Node runs the tests. */
const NODE = (() => {
  const local = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
  return existsSync(local) ? local : process.execPath;
})();
const FIXTURE = fileURLToPath(new URL('./fixtures/exec-child.ts', import.meta.url));

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const SIGPIPE_BIT = 1n << 12n; // bit n-1 for signal n: SIGPIPE is 13
const SIGXFSZ_BIT = 1n << 24n; // SIGXFSZ is 25

const which = (name: string) => resolveCommand(name, { path: undefined, cwd: '/' });
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).stdout?.includes('util-linux') ?? false;
const SH = '/bin/sh';

const scratch = mkdtempSync(join(tmpdir(), 'secret-fetch-exec-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  report: Report;
  error: { error: string; exitCode: number; message: string; line: string } | undefined;
}

interface RunOptions {
  /** Do not read stdout for this long, so the pipe fills up and writes back up. */
  pauseMs?: number;
  /** Close our end of stdout at the first byte, as `| head -c 1` would. */
  closeStdout?: boolean;
  /** Give the child a stdin pipe; called with each stdout chunk. */
  onStdout?: (text: string, child: ChildProcess) => void;
}

let scenarios = 0;

function run(scenario: Scenario, options: RunOptions = {}): Promise<Outcome> {
  // In a file: a scenario can be larger than one argument may be.
  const scenarioFile = join(scratch, `scenario-${++scenarios}.json`);
  writeFileSync(scenarioFile, JSON.stringify(scenario));
  const child = spawn(NODE, [FIXTURE, scenarioFile], {
    stdio: [options.onStdout ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: {},
  });
  const out: Buffer[] = [];
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    err += text;
  });
  const stdout = child.stdout;
  if (stdout === null) throw new Error('no stdout pipe');
  stdout.on('data', (chunk: Buffer) => {
    if (options.closeStdout) stdout.destroy();
    out.push(chunk);
    options.onStdout?.(chunk.toString(), child);
  });
  if (options.pauseMs) {
    stdout.pause();
    setTimeout(() => stdout.resume(), options.pauseMs);
  }
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const lines = err.split('\n');
      try {
        const report = JSON.parse(lines[0] ?? '') as Report;
        const errorLine = lines.find((l) => l.startsWith('{"error"'));
        resolve({
          code,
          signal,
          stdout: Buffer.concat(out),
          stderr: lines.slice(1).join('\n'),
          report,
          error: errorLine === undefined ? undefined : JSON.parse(errorLine),
        });
      } catch {
        reject(new Error(`fixture failed (code ${code}, signal ${signal}):\n${err}`));
      }
    });
  });
}

function pattern(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = i % 251;
  return bytes;
}

/** fds of this (the test) process that any child it spawns inherits, beyond 0-2. */
function ownInheritableFds(): number[] {
  return readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => {
      try {
        const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0';
        return fd > 2 && (Number.parseInt(flags, 8) & O_CLOEXEC) === 0;
      } catch {
        return false;
      }
    });
}

function statusField(status: string, field: string): bigint {
  const value = new RegExp(`^${field}:\\s+([0-9a-f]+)$`, 'm').exec(status)?.[1];
  if (value === undefined) throw new Error(`no ${field} in:\n${status}`);
  return BigInt(`0x${value}`);
}

describe('execCommand (in a real Node 24 process)', () => {
  it('replaces the process: same PID, and the exit status is the command’s own', async () => {
    const result = await run({ file: SH, argv: ['sh', '-c', 'echo $$; exit 7'], env: {} });
    expect(result.error).toBeUndefined();
    expect(result.stdout.toString().trim()).toBe(String(result.report.pid));
    expect(result.code).toBe(7);
    expect(result.signal).toBeNull();
  });

  it('resets SIGPIPE and SIGXFSZ to their defaults and blocks no signal', async () => {
    const cat = which('cat');
    // cat reports its own /proc/self/status without touching its signal dispositions.
    const result = await run({ file: cat, argv: ['cat', '/proc/self/status'], env: {}, touchOutput: true });
    const status = result.stdout.toString();
    expect(result.code).toBe(0);
    const ignored = statusField(status, 'SigIgn');
    expect(ignored & SIGPIPE_BIT).toBe(0n);
    expect(ignored & SIGXFSZ_BIT).toBe(0n);
    expect(statusField(status, 'SigBlk')).toBe(0n);
  });

  it('leaves no SIGPIPE ignored: `yes | head` ends yes with SIGPIPE', async () => {
    const script = '(yes; echo "yes exited $?" >&2) | head -n 1';
    const result = await run({ file: SH, argv: ['sh', '-c', script], env: { PATH: '/usr/bin:/bin' } });
    expect(result.stdout.toString()).toBe('y\n');
    expect(result.stderr).toContain('yes exited 141'); // 128 + SIGPIPE
    expect(result.stderr).not.toContain('Broken pipe');
  });

  it('hands stdout and stderr over blocking, though Node had made them non-blocking', async () => {
    const cat = which('cat');
    const result = await run({
      file: cat,
      argv: ['cat', '/proc/self/fdinfo/1', '/proc/self/fdinfo/2'],
      env: {},
      touchOutput: true,
    });
    expect(result.report.nonBlocking.slice(1)).toEqual([true, true]); // what libuv did to the pipes
    const flags = [...result.stdout.toString().matchAll(/^flags:\s+([0-7]+)$/gm)].map((m) =>
      Number.parseInt(m[1] ?? '', 8),
    );
    expect(flags).toHaveLength(2);
    for (const f of flags) expect(f & O_NONBLOCK).toBe(0);
  });

  it('hands a stdin Node was reading over blocking: the command can read it', async () => {
    let sent = false;
    const script = 'grep flags /proc/$$/fdinfo/0; echo ready; read line; echo "got:$line"';
    const result = await run(
      { file: SH, argv: ['sh', '-c', script], env: { PATH: '/usr/bin:/bin' }, touchStdin: true },
      {
        onStdout: (text, child) => {
          // Only write once the command runs: Node itself would have read anything sent earlier.
          if (!sent && text.includes('ready')) {
            sent = true;
            child.stdin?.end('hello\n');
          }
        },
      },
    );
    expect(result.report.nonBlocking[0]).toBe(true);
    const out = result.stdout.toString();
    const flags = Number.parseInt(/flags:\s+([0-7]+)/.exec(out)?.[1] ?? '', 8);
    expect(flags & O_NONBLOCK).toBe(0);
    expect(out).toContain('got:hello');
  });

  it.skipIf(!hasScript)('hands a terminal over blocking and out of the raw mode Node put it in', () => {
    const scenarioFile = join(scratch, 'tty.json');
    const scenario: Scenario = {
      file: SH,
      argv: ['sh', '-c', 'grep flags /proc/$$/fdinfo/0; stty -a'],
      env: { PATH: '/usr/bin:/bin' },
      touchStdin: true,
      rawStdin: true,
    };
    writeFileSync(scenarioFile, JSON.stringify(scenario));
    // util-linux script(1) runs the fixture on a new pseudo-terminal.
    const result = spawnSync('script', ['-qec', `'${NODE}' '${FIXTURE}' '${scenarioFile}'`, '/dev/null'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    const out = result.stdout.replaceAll('\r', '');
    const report = JSON.parse(out.split('\n')[0] ?? '') as Report;
    expect(report.nonBlocking[0]).toBe(true);
    const flags = Number.parseInt(/^flags:\s+([0-7]+)$/m.exec(out)?.[1] ?? '', 8);
    expect(flags & O_NONBLOCK).toBe(0);
    expect(out).toMatch(/(^|\s)icanon(\s|$)/m);
    expect(out).not.toMatch(/-icanon/);
  });

  it('passes on only fds 0, 1 and 2 (and what its own parent passed down), not Node’s', async () => {
    const ls = which('ls');
    const result = await run({
      file: ls,
      argv: ['ls', '-l', '/proc/self/fd/'],
      env: {},
      openFile: FIXTURE,
      touchOutput: true,
    });
    expect(result.code).toBe(0);
    const open = result.stdout
      .toString()
      .split('\n')
      .map((line) => /\s(\d+) -> (.*)$/.exec(line))
      .filter((m) => m !== null)
      .filter((m) => !/^\/proc\/\d+\/fd$/.test(m[2] ?? '')) // ls's own handle on the directory
      .map((m) => Number(m[1]));
    const passedDown = ownInheritableFds();
    expect(result.report.inheritable).toEqual(passedDown);
    expect(result.report.openedFd).toBeGreaterThan(2);
    expect(open.sort((a, b) => a - b)).toEqual([0, 1, 2, ...passedDown].sort((a, b) => a - b));
  });

  it('gives the command exactly the environment passed, and the argv', async () => {
    const cat = which('cat');
    // "__proto__" as an own property, as JSON.parse (and so a dotenv secret) can produce it.
    const env: Record<string, string> = Object.fromEntries([
      ['A', '1'],
      ['SPACED', 'two words'],
      ['EMPTY', ''],
      ['UNICODE', 'é €'],
      ['MULTI', 'line1\nline2'],
      ['__proto__', 'kept'],
    ]);
    const result = await run({ file: cat, argv: ['my-cat', '/proc/self/environ', '/proc/self/cmdline'], env });
    expect(result.code).toBe(0);
    const parts = result.stdout.toString().split('\0');
    const environ = Object.fromEntries(
      parts
        .slice(0, Object.keys(env).length)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    expect(environ).toEqual(Object.fromEntries(Object.entries(env)));
    expect(parts.slice(Object.keys(env).length)).toEqual(['my-cat', '/proc/self/environ', '/proc/self/cmdline', '']);
  });

  it('runs the command in cwd', async () => {
    const pwd = which('pwd');
    const dir = realpathSync(scratch);
    const result = await run({ file: pwd, argv: ['pwd', '-P'], env: {}, cwd: dir });
    expect(result.stdout.toString()).toBe(`${dir}\n`);
  });

  it('loses no byte of a piped stdout: what Node still queued, then what the command writes', async () => {
    const prefill = 1024 * 1024;
    // The test does not read for a while: Node must queue most of the 1 MiB, and the command's
    // own 1 MiB then meets a full pipe (with O_NONBLOCK it would fail with EAGAIN).
    const script = 'head -c 1048576 /dev/zero | tr "\\000" b; printf END';
    const result = await run(
      { file: SH, argv: ['sh', '-c', script], env: { PATH: '/usr/bin:/bin' }, prefill },
      { pauseMs: 300 },
    );
    expect(result.report.queued).toBeGreaterThan(0);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.length).toBe(prefill + 1024 * 1024 + 3);
    expect(result.stdout.subarray(0, prefill).equals(pattern(prefill))).toBe(true);
    expect(
      result.stdout.subarray(prefill).equals(Buffer.concat([Buffer.alloc(1024 * 1024, 'b'), Buffer.from('END')])),
    ).toBe(true);
  });

  it('still execs when the reader of stdout went away; the command then meets SIGPIPE', async () => {
    const script = 'echo ran >&2; echo more; echo "not reached" >&2';
    const result = await run(
      { file: SH, argv: ['sh', '-c', script], env: {}, prefill: 1024 * 1024 },
      { closeStdout: true },
    );
    expect(result.stderr).toBe('ran\n');
    expect(result.signal).toBe('SIGPIPE');
  });

  describe('refuses before exec, and the process lives to report it', () => {
    const echo = { file: SH, argv: ['sh', '-c', 'echo RAN'] };

    it('a NUL byte in an environment value: FormatError naming the variable, never the value', async () => {
      const result = await run({ ...echo, env: { OK: 'fine', API_TOKEN: 'sekrit\u0000tail' } });
      expect(result.signal).toBeNull();
      expect(result.code).toBe(65);
      expect(result.error?.error).toBe('FormatError');
      expect(result.error?.message).toBe('environment variable API_TOKEN contains a NUL byte');
      expect(result.error?.line).not.toContain('sekrit');
      expect(result.stdout.toString()).toBe('');
    });

    it.each([
      ['an "=" in a name', { 'A=B': 'x' }, /environment variable A=B has "=" in its name/],
      ['an empty name', { '': 'x' }, /empty name/],
      ['a NUL in a name', { 'A\u0000B': 'x' }, /environment variable "A\\u0000B" has a NUL byte in its name/],
    ])('%s: FormatError', async (_, env, message) => {
      const result = await run({ ...echo, env });
      expect(result.code).toBe(65);
      expect(result.error?.message).toMatch(message);
      expect(result.stdout.toString()).toBe('');
    });

    it('a NUL byte in an argument: UsageError', async () => {
      const result = await run({ file: SH, argv: ['sh', '-c', 'echo RAN', 'a\u0000b'], env: {} });
      expect(result.code).toBe(64);
      expect(result.error?.message).toBe('argument 3 of the command contains a NUL byte');
      expect(result.stdout.toString()).toBe('');
    });

    it('a working directory that does not exist: CommandError 126', async () => {
      const result = await run({ ...echo, env: {}, cwd: join(scratch, 'missing') });
      expect(result.code).toBe(126);
      expect(result.error?.message).toBe(
        `cannot change to directory ${join(scratch, 'missing')} for the command: it does not exist`,
      );
    });

    it('a working directory that is a file: CommandError 126', async () => {
      const file = join(scratch, 'a-file');
      writeFileSync(file, '');
      const result = await run({ ...echo, env: {}, cwd: file });
      expect(result.code).toBe(126);
      expect(result.error?.message).toMatch(/it is not a directory$/);
    });

    it('a variable larger than execve takes (E2BIG, which would abort Node): CommandError 126', async () => {
      const big = 'x'.repeat(200 * 1024);
      const result = await run({ ...echo, env: { BIG: big } });
      expect(result.signal).toBeNull();
      expect(result.code).toBe(126);
      expect(result.error?.message).toMatch(
        /^environment variable BIG is too large for exec \(204805 bytes; Linux allows 131072/,
      );
      // ...and the kernel does refuse it: a bare process.execve aborts.
      const raw = spawnSync(
        SH,
        [
          '-c',
          'ulimit -c 0; exec "$@"',
          'sh',
          NODE,
          '-e',
          `process.execve('/bin/true', ['true'], { BIG: 'x'.repeat(${big.length}) })`,
        ],
        { encoding: 'utf8' },
      );
      expect(raw.signal).toBe('SIGABRT');
      expect(raw.stderr).toContain('process.execve failed'); // Node 24 does not even name E2BIG
    });

    it('a variable just under the limit is passed', async () => {
      const value = 'y'.repeat(131072 - 'V'.length - 2);
      const result = await run({
        file: SH,
        argv: ['sh', '-c', 'printf %s "$V" | wc -c'],
        env: { V: value, PATH: '/usr/bin:/bin' },
      });
      expect(result.error).toBeUndefined();
      expect(result.stdout.toString().trim()).toBe(String(value.length));
    });
  });
});
