// Finding the command and deciding how to exec it, the way execvp(3) and the kernel would, but
// before anything is irreversible: a failing process.execve aborts Node with a core dump and a
// C++ stack, so every failure execve could report is turned into a CommandError here instead.

import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { CommandError, EXIT } from '../errors.ts';
import { show } from '../log.ts';
import { type Image, inspectImage } from './image.ts';

export { show };

/** What execvp searches when PATH is unset (glibc's confstr(_CS_PATH) plus the sbin dirs). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The shell execvp runs a file with when the kernel says ENOEXEC (no ELF header, no "#!"). */
export const SHELL = '/bin/sh';

/** Interpreters may themselves be scripts; Linux gives up (ELOOP) after a few levels. */
const MAX_INTERPRETER_DEPTH = 4;

export interface ResolveOptions {
  /** PATH of the command's environment; undefined means unset (DEFAULT_PATH is searched). */
  readonly path: string | undefined;
  /** The command's working directory: relative commands and PATH entries are taken from it. */
  readonly cwd: string;
}

export interface ExecPlan {
  /** Absolute path of the program handed to execve. */
  readonly file: string;
  /** Its argv, argv[0] included. */
  readonly argv: string[];
}

type Problem = 'directory' | 'not-a-file' | 'not-executable' | 'search-denied';

/**
 * The absolute path of the executable `command` names. A command with a "/" is taken relative
 * to `cwd`; any other is searched for on PATH, in order, an empty entry meaning `cwd`. Throws
 * CommandError 127 when nothing is found, 126 when only something that cannot be executed is.
 */
export function resolveCommand(command: string, opts: ResolveOptions): string {
  if (command === '') throw new CommandError(command, 'the command name is empty', EXIT.commandNotFound);
  if (command.includes('\0')) {
    throw new CommandError(command, 'the command name contains a NUL byte', EXIT.commandNotFound);
  }

  if (command.includes('/')) {
    const file = resolve(opts.cwd, command);
    const problem = probe(file);
    if (problem === 'ok') return file;
    if (problem === 'missing') {
      const where = isAbsolute(command) ? '' : ` (relative to the command's working directory ${show(opts.cwd)})`;
      throw new CommandError(
        command,
        `command not found: ${show(command)}: no file at ${show(file)}${where}`,
        EXIT.commandNotFound,
        'check the path, or install the program in the image',
      );
    }
    throw cannotExecute(command, file, problem);
  }

  const searchPath = opts.path ?? DEFAULT_PATH;
  let skipped: { file: string; problem: Problem } | undefined;
  for (const dir of searchPath.split(':')) {
    const file = resolve(opts.cwd, dir, command);
    const problem = probe(file);
    if (problem === 'ok') return file;
    // Like execvp: remember what could not be executed, keep looking, and report it at the end.
    if (problem !== 'missing') skipped ??= { file, problem };
  }
  if (skipped !== undefined) throw cannotExecute(command, skipped.file, skipped.problem);
  const searched = opts.path === undefined ? `PATH is unset; searched ${DEFAULT_PATH}` : `searched PATH=${searchPath}`;
  throw new CommandError(
    command,
    `command not found: ${show(command)} (${searched})`,
    EXIT.commandNotFound,
    'install it in the image or give its absolute path',
  );
}

/**
 * How to exec the file `resolved` (from resolveCommand) with `argv` (argv[0] is the command as
 * the user typed it, as a shell passes it): ELF programs and "#!" scripts are exec'd as they
 * are; a file that is neither is run by /bin/sh, as execvp does (argv becomes
 * ["/bin/sh", resolved, ...argv.slice(1)]). Throws a CommandError wherever execve would fail:
 * an unreadable file (126), a "#!" interpreter or ELF loader that is missing (127) or cannot
 * be executed (126), an ELF file that is not a program for this machine (126).
 *
 * `cwd` is the command's working directory; it only matters for relative interpreter paths,
 * which the kernel resolves from there. It defaults to the current directory.
 */
export function planExec(resolved: string, argv: string[], opts: { cwd?: string } = {}): ExecPlan {
  const command = argv[0] ?? resolved;
  const cwd = opts.cwd ?? process.cwd();
  const image = checkImage(command, resolved, cwd, []);
  if (image.kind !== 'unknown') return { file: resolved, argv: [...argv] };

  if (image.binary) {
    throw new CommandError(
      command,
      `cannot run ${show(command)}: ${show(resolved)} is not a program for Linux (no ELF header and no #! line)`,
      EXIT.notExecutable,
      'install a Linux build of it',
    );
  }
  // execvp's ENOEXEC fallback: a text file without "#!" is a shell script.
  const shell = probe(SHELL);
  if (shell === 'missing') {
    throw new CommandError(
      command,
      `cannot run ${show(command)}: ${show(resolved)} has no #! line and there is no ${SHELL} to run it as a script`,
      EXIT.notExecutable,
      'start the script with a #! line naming its interpreter',
    );
  }
  if (shell !== 'ok') throw cannotExecute(command, SHELL, shell);
  checkImage(command, SHELL, cwd, [resolved]);
  return { file: SHELL, argv: [SHELL, resolved, ...argv.slice(1)] };
}

/**
 * Classifies `file` and follows its interpreter chain, throwing what execve would fail with.
 * `chain` lists the files that led here (empty for the command itself).
 */
function checkImage(command: string, file: string, cwd: string, chain: readonly string[]): Image {
  let image: Image;
  try {
    image = inspectImage(file);
  } catch (error) {
    const code = errnoCode(error);
    const what = chain.length === 0 ? show(file) : describeInterpreter(file, chain);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new CommandError(command, `cannot run ${show(command)}: ${what} was not found`, EXIT.commandNotFound);
    }
    const reason = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (code ?? String(error));
    throw new CommandError(
      command,
      `cannot run ${show(command)}: cannot read ${what}: ${reason}`,
      EXIT.notExecutable,
      code === 'EACCES' ? 'make it readable by the user the command runs as' : undefined,
    );
  }

  if (image.kind === 'bad-elf') {
    const what = chain.length === 0 ? show(file) : describeInterpreter(file, chain);
    throw new CommandError(command, `cannot run ${show(command)}: ${what}: ${image.reason}`, EXIT.notExecutable);
  }
  if (image.kind === 'unknown') {
    if (chain.length === 0) return image;
    // The kernel does not fall back to a shell for an interpreter: execve fails with ENOEXEC.
    throw new CommandError(
      command,
      `cannot run ${show(command)}: ${describeInterpreter(file, chain)} is not a program (no ELF header and no #! line)`,
      EXIT.notExecutable,
    );
  }

  const interpreter = image.interpreter;
  if (interpreter === undefined) return image; // a static binary
  const next = [...chain, file];
  if (next.length > MAX_INTERPRETER_DEPTH) {
    throw new CommandError(
      command,
      `cannot run ${show(command)}: too many levels of #! interpreters (${next.map(show).join(' -> ')})`,
      EXIT.notExecutable,
    );
  }
  const interpreterFile = resolve(cwd, interpreter);
  const problem = probe(interpreterFile);
  if (problem === 'missing') {
    throw new CommandError(
      command,
      `cannot run ${show(command)}: ${describeInterpreter(interpreter, next, image.kind)} was not found`,
      EXIT.commandNotFound,
      missingInterpreterHint(interpreter, image.kind),
    );
  }
  if (problem !== 'ok') {
    const described = describeInterpreter(interpreter, next, image.kind);
    throw new CommandError(
      command,
      `cannot run ${show(command)}: ${described} ${problemText(problem)}`,
      EXIT.notExecutable,
    );
  }
  checkImage(command, interpreterFile, cwd, next);
  return image;
}

function describeInterpreter(interpreter: string, chain: readonly string[], kind?: Image['kind']): string {
  const loader = kind === 'elf' ? 'ELF interpreter' : 'interpreter';
  if (chain.length <= 1) return `its ${loader} ${show(interpreter)}`;
  return `${show(interpreter)}, the ${loader} of ${show(chain[chain.length - 1] ?? '')},`;
}

function missingInterpreterHint(interpreter: string, kind: Image['kind']): string {
  if (kind === 'elf') {
    return 'the program was built for another C library (e.g. glibc on an Alpine/musl image): use a matching image or a static build';
  }
  if (interpreter.endsWith('\r')) return 'the script has Windows (CRLF) line endings: convert it with dos2unix';
  return 'install the interpreter in the image, or fix the #! line';
}

/** What is at `file`: 'ok' when execve may run it, 'missing' when there is nothing there. */
function probe(file: string): 'ok' | 'missing' | Problem {
  let stats: ReturnType<typeof statSync>;
  try {
    stats = statSync(file);
  } catch (error) {
    return errnoCode(error) === 'EACCES' ? 'search-denied' : 'missing';
  }
  if (stats.isDirectory()) return 'directory';
  if (!stats.isFile()) return 'not-a-file';
  try {
    // access(2) answers as execve will: for root, X_OK passes when any execute bit is set; on a
    // filesystem mounted noexec it fails.
    accessSync(file, constants.X_OK);
  } catch {
    return 'not-executable';
  }
  return 'ok';
}

function problemText(problem: Problem): string {
  switch (problem) {
    case 'directory':
      return 'is a directory';
    case 'not-a-file':
      return 'is not a regular file';
    case 'not-executable':
      return 'is not executable';
    case 'search-denied':
      return 'cannot be reached: permission denied on a directory in its path';
  }
}

function cannotExecute(command: string, file: string, problem: Problem): CommandError {
  const hint =
    problem === 'not-executable'
      ? 'make it executable (chmod +x), and check its filesystem is not mounted noexec'
      : problem === 'directory'
        ? 'name the program, not its directory'
        : undefined;
  return new CommandError(
    command,
    `cannot run ${show(command)}: ${show(file)} ${problemText(problem)}`,
    EXIT.notExecutable,
    hint,
  );
}

function errnoCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}
