// The last step: become the command. execve replaces this process image (same PID, nothing of
// the runtime left; replaceProcess in process-state.ts makes the call: the C library's under Bun,
// process.execve under Node), so this prepares what the new program would otherwise inherit wrong:
//
// - SIGPIPE and SIGXFSZ: the runtime ignores both, and an ignored disposition survives execve (a
//   caught one is reset to the default). A handler is installed for each just before the exec
//   (under Bun, replaceProcess also sets both back to SIG_DFL), so `yes | head` in the command
//   dies of SIGPIPE as it should.
// - stdio: libuv puts pipes and ttys into O_NONBLOCK, a flag of the open file description that
//   the new program inherits (and then sees EAGAIN it does not expect). Whatever Node still has
//   queued is flushed first (it would be lost), then the fds are made blocking again.
// - Every check that can fail runs before anything is changed: under Node a failing execve cannot
//   be caught (Node aborts the process).

import { readFileSync } from 'node:fs';
import { CommandError, EXIT, FormatError, UsageError } from '../errors.ts';
import { replaceProcess } from './process-state.ts';
import { show } from './resolve.ts';

export interface LaunchPlan {
  /** The program to exec: an absolute path (planExec's `file`). */
  readonly file: string;
  /** Its argv, argv[0] included. */
  readonly argv: readonly string[];
  /** The complete environment of the command, exactly as it will see it. */
  readonly env: Readonly<Record<string, string>>;
  /** The command's working directory, if it is not the current one. */
  readonly cwd?: string | undefined;
}

/**
 * Throws a UsageError when this process cannot exec at all: the npm package runs on the user's own
 * Node (process.execve arrived in 22.15) and on macOS or Windows. The run checks it before any
 * fetch, so nothing is downloaded, written or started.
 */
export function checkExecSupported(): void {
  if (typeof process.execve !== 'function') {
    throw new UsageError(
      `exec needs process.execve, which this Node.js (${process.version}) does not have`,
      'run the secret-fetch binary, use Node.js 22.15 or newer, or add --supervise',
    );
  }
  if (process.platform !== 'linux') {
    throw new UsageError(
      `exec needs Linux, not ${process.platform}`,
      'run it in a Linux container, or add --supervise',
    );
  }
}

/** Linux's MAX_ARG_STRLEN: one argument or NAME=value string may be at most 32 pages. */
const MAX_ARG_PAGES = 32;
/** Linux's ARG_MAX: the space for argv and envp is never smaller than this. */
const ARG_MAX = 128 * 1024;
const O_NONBLOCK = 0o4000;
/** Rounds of flushing stdout and stderr before giving up on a writer that never stops. */
const MAX_FLUSH_ROUNDS = 100;

/**
 * Replaces this process with `plan.file`. Never resolves: it throws (before changing anything
 * but, for `cwd`, the working directory) a UsageError for a NUL byte in an argument, a
 * FormatError for an environment variable execve cannot carry, and a CommandError when the
 * strings are too large for execve or `cwd` cannot be entered.
 */
export async function execCommand(plan: LaunchPlan): Promise<never> {
  checkExecSupported();
  const command = plan.argv[0] ?? plan.file;
  const argv = checkArguments(plan.file, plan.argv);
  const env = checkEnvironment(plan.env);
  checkSizes(command, plan.file, argv, env);

  if (plan.cwd !== undefined) changeDirectory(command, plan.cwd);

  for (const signal of ['SIGPIPE', 'SIGXFSZ'] as const) process.on(signal, ignore);
  const stdinInUse = maybeNonBlocking(0);
  if (stdinInUse) stopReadingStdin();
  await flushOutput();
  makeStdioBlocking(stdinInUse);
  return replaceProcess(plan.file, argv, env);
}

function ignore(): void {}

export function checkArguments(file: string, argv: readonly string[]): string[] {
  if (file.includes('\0')) throw new UsageError('the path of the command contains a NUL byte');
  if (argv.length === 0) throw new UsageError('the command has no argv[0]');
  argv.forEach((arg, i) => {
    if (arg.includes('\0')) {
      throw new UsageError(
        i === 0 ? 'the command name contains a NUL byte' : `argument ${i} of the command contains a NUL byte`,
      );
    }
  });
  return [...argv];
}

/** A fresh copy of `env`, checked entry by entry. Values are never put in a message. */
export function checkEnvironment(env: Readonly<Record<string, string>>): Record<string, string> {
  const entries = Object.entries(env);
  for (const [name, value] of entries) {
    if (name === '') throw new FormatError('an environment variable for the command has an empty name');
    if (name.includes('\0')) throw new FormatError(`environment variable ${show(name)} has a NUL byte in its name`);
    if (name.includes('=')) {
      throw new FormatError(`environment variable ${show(name)} has "=" in its name`, 'a name cannot contain "="');
    }
    if (typeof value !== 'string') throw new FormatError(`environment variable ${show(name)} is not a string`);
    if (value.includes('\0')) {
      throw new FormatError(
        `environment variable ${show(name)} contains a NUL byte`,
        'an environment variable cannot carry binary data: write the secret to a file with --out',
      );
    }
  }
  // fromEntries defines own properties, so even a variable named "__proto__" is kept.
  return Object.fromEntries(entries);
}

/**
 * execve fails with E2BIG when one string is longer than MAX_ARG_STRLEN or all of them do not
 * fit in a quarter of the stack limit (fs/exec.c); Node would then abort.
 */
function checkSizes(
  command: string,
  file: string,
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
): void {
  const page = pageSize();
  const maxString = MAX_ARG_PAGES * page;
  const hint = 'pass large secrets as files (--out), not in the environment or arguments';
  let total = Buffer.byteLength(file) + 1;
  argv.forEach((arg, i) => {
    const bytes = Buffer.byteLength(arg) + 1;
    if (bytes > maxString) {
      throw new CommandError(
        command,
        `argument ${i} of the command is too long for exec (${bytes} bytes; Linux allows ${maxString})`,
        EXIT.notExecutable,
        hint,
      );
    }
    total += bytes;
  });
  for (const [name, value] of Object.entries(env)) {
    const bytes = Buffer.byteLength(name) + Buffer.byteLength(value) + 2;
    if (bytes > maxString) {
      throw new CommandError(
        command,
        `environment variable ${show(name)} is too large for exec (${bytes} bytes; Linux allows ${maxString} per variable)`,
        EXIT.notExecutable,
        hint,
      );
    }
    total += bytes;
  }
  // Pointers for argv and envp, plus room for a "#!" interpreter and its argument.
  const needed = total + (argv.length + Object.keys(env).length + 3) * 8 + 2 * page;
  const limit = argumentSpace();
  if (needed > limit) {
    throw new CommandError(
      command,
      `the command's arguments and environment are too large for exec (${needed} bytes; the limit is ${limit})`,
      EXIT.notExecutable,
      hint,
    );
  }
}

/** The kernel's room for argv and envp: a quarter of the stack limit, at most 6 MiB, at least ARG_MAX. */
function argumentSpace(): number {
  const cap = (8 * 1024 * 1024 * 3) / 4;
  let stack = Number.POSITIVE_INFINITY;
  try {
    const line = /^Max stack size\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (line?.[1] !== undefined && line[1] !== 'unlimited') stack = Number(line[1]);
  } catch {
    stack = 8 * 1024 * 1024; // the usual default
  }
  return Math.max(Math.min(cap, Number.isFinite(stack) ? Math.floor(stack / 4) : cap), ARG_MAX);
}

function pageSize(): number {
  // AT_PAGESZ (6) from the auxiliary vector: pairs of native words.
  try {
    const auxv = readFileSync('/proc/self/auxv');
    for (let at = 0; at + 16 <= auxv.length; at += 16) {
      const key = auxv.readBigUInt64LE(at);
      if (key === 0n) break;
      if (key === 6n) return Number(auxv.readBigUInt64LE(at + 8));
    }
  } catch {
    // fall through
  }
  return 4096;
}

function changeDirectory(command: string, dir: string): void {
  try {
    process.chdir(dir);
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? error.code : undefined;
    const reason =
      code === 'ENOENT'
        ? 'it does not exist'
        : code === 'ENOTDIR'
          ? 'it is not a directory'
          : code === 'EACCES'
            ? 'permission denied'
            : String(code ?? error);
    throw new CommandError(
      command,
      `cannot change to directory ${show(dir)} for the command: ${reason}`,
      EXIT.notExecutable,
    );
  }
}

/** The stdio streams Node may still hold bytes for, and where they stand. */
interface StreamState {
  readonly writableLength: number;
  readonly writableEnded: boolean;
  readonly writableFinished: boolean;
  readonly writableCorked: number;
  readonly destroyed: boolean;
  uncork(): void;
  write(chunk: string, callback: (error?: Error | null) => void): boolean;
  once(event: 'finish' | 'close' | 'error', listener: () => void): unknown;
  on(event: 'error', listener: () => void): unknown;
}

/**
 * Waits until everything written to process.stdout and process.stderr has reached the kernel.
 * Node queues a write a pipe cannot take at once; execve would discard the queue.
 */
async function flushOutput(): Promise<void> {
  // Only touch a stream Node may have written through: creating one makes its fd non-blocking.
  const streams: StreamState[] = [];
  if (maybeNonBlocking(1)) streams.push(process.stdout);
  if (maybeNonBlocking(2)) streams.push(process.stderr);
  // A reader that went away (EPIPE) must not crash the launch with an unhandled 'error': the
  // command inherits the broken pipe, and SIGPIPE, as it would after a shell's exec.
  for (const stream of streams) stream.on('error', ignore);
  for (let round = 0; round < MAX_FLUSH_ROUNDS; round++) {
    const pending = streams.filter((s) => !s.destroyed && !s.writableFinished && s.writableLength > 0);
    if (pending.length === 0) return;
    await Promise.all(pending.map(settle));
  }
}

function settle(stream: StreamState): Promise<void> {
  return new Promise((done) => {
    if (stream.writableEnded) {
      // end() was called: wait for it to finish (or fail) instead of writing after it.
      stream.once('finish', done);
      stream.once('close', done);
      stream.once('error', done);
      return;
    }
    while (stream.writableCorked > 0) stream.uncork();
    // An empty write completes after every write queued before it; an error (EPIPE: nobody
    // reads) also means there is nothing left to wait for.
    stream.write('', () => done());
  });
}

/** The part of a libuv stream handle this needs (pipe_wrap, tty_wrap and tcp_wrap have it). */
interface StreamHandle {
  setBlocking(blocking: boolean): number;
  readStop?(): number;
}

function handleOf(stream: object): StreamHandle | undefined {
  const handle: unknown = Reflect.get(stream, '_handle');
  if (typeof handle !== 'object' || handle === null) return undefined;
  const setBlocking: unknown = Reflect.get(handle, 'setBlocking');
  return typeof setBlocking === 'function' ? (handle as StreamHandle) : undefined;
}

interface StdinState {
  readonly isTTY?: boolean;
  readonly isRaw?: boolean;
  setRawMode?(mode: boolean): unknown;
  pause(): unknown;
}

/**
 * Node made stdin non-blocking, so it has a stream for it that may be reading: stop now, so it
 * takes no more of what the command should read (bytes Node already read are gone), and leave
 * a tty in the mode Node found it in.
 */
function stopReadingStdin(): void {
  const stdin: StdinState = process.stdin;
  stdin.pause();
  handleOf(process.stdin)?.readStop?.();
  if (stdin.isTTY && stdin.isRaw) stdin.setRawMode?.(false);
}

/** Clears O_NONBLOCK on fds 0-2 wherever Node (libuv) set it. */
function makeStdioBlocking(stdinInUse: boolean): void {
  if (stdinInUse) handleOf(process.stdin)?.setBlocking(true);
  if (maybeNonBlocking(1)) handleOf(process.stdout)?.setBlocking(true);
  if (maybeNonBlocking(2)) handleOf(process.stderr)?.setBlocking(true);
}

/** Whether `fd` is in O_NONBLOCK mode; true when /proc cannot tell (then the stream is fixed anyway). */
function maybeNonBlocking(fd: number): boolean {
  try {
    const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
    return flags === undefined || (Number.parseInt(flags, 8) & O_NONBLOCK) !== 0;
  } catch {
    return fd !== 0; // no /proc: fix stdout and stderr, leave stdin as Node left it
  }
}
