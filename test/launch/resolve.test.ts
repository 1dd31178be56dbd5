// resolveCommand and planExec against a temp dir of fixtures. Where they refuse a file, the test
// also hands that file to a bare process.execve in a throwaway Node process and checks that it
// really aborts: every refusal stands for an abort prevented. Where they accept, the plan is
// exec'd the same way and must not abort.

import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../src/errors.ts';
import { inspectImage, parseShebang } from '../../src/launch/image.ts';
import { DEFAULT_PATH, planExec, resolveCommand } from '../../src/launch/resolve.ts';

const NODE = (() => {
  const local = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
  return existsSync(local) ? local : process.execPath;
})();

const root = mkdtempSync(join(tmpdir(), 'secret-fetch-resolve-'));
const at = (...parts: string[]) => join(root, ...parts);
afterAll(() => rmSync(root, { recursive: true, force: true }));

function file(path: string, content: string | Buffer, mode: number): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

/** A copy of a dynamically linked system binary, optionally patched. */
function elf(path: string, patch?: (bytes: Buffer) => void): string {
  const source = ['/usr/bin/true', '/bin/true'].find(existsSync) ?? '/bin/sh';
  mkdirSync(join(path, '..'), { recursive: true });
  copyFileSync(source, path);
  if (patch) {
    const bytes = readFileSync(path);
    patch(bytes);
    writeFileSync(path, bytes);
  }
  chmodSync(path, 0o755);
  return path;
}

beforeAll(() => {
  chmodSync(root, 0o755);
  file(at('a', 'tool'), '#!/bin/sh\necho a\n', 0o755);
  file(at('a', 'only-a'), '#!/bin/sh\necho only-a\n', 0o755);
  file(at('b', 'tool'), '#!/bin/sh\necho b\n', 0o755);
  mkdirSync(at('dir', 'tool'), { recursive: true });
  file(at('noexec', 'tool'), '#!/bin/sh\necho noexec\n', 0o644);
  file(at('work', 'bin', 'local'), '#!/bin/sh\necho local\n', 0o755);
  file(at('work', 'run.sh'), '#!/bin/sh\necho run\n', 0o755);
});

function thrown(fn: () => unknown): CommandError {
  try {
    fn();
  } catch (error) {
    if (error instanceof CommandError) return error;
    throw error;
  }
  throw new Error('expected a CommandError');
}

/**
 * Whether a bare process.execve of `file` aborts Node (in a throwaway process, without core
 * dump), i.e. whether execve itself fails.
 */
function execveAborts(file: string, argv: readonly string[]): boolean {
  const code = `process.execve(${JSON.stringify(file)}, ${JSON.stringify(argv)}, { PATH: '/usr/bin:/bin' })`;
  const result = spawnSync('/bin/sh', ['-c', 'ulimit -c 0; exec "$@"', 'sh', NODE, '-e', code], {
    encoding: 'utf8',
    timeout: 10_000,
    cwd: root,
  });
  return result.signal === 'SIGABRT' && result.stderr.includes('process.execve failed');
}

describe('resolveCommand', () => {
  it.each([
    ['found on PATH', 'only-a', () => ({ path: `${at('b')}:${at('a')}`, cwd: '/' }), () => at('a', 'only-a')],
    ['the first PATH entry wins', 'tool', () => ({ path: `${at('a')}:${at('b')}`, cwd: '/' }), () => at('a', 'tool')],
    ['...in either order', 'tool', () => ({ path: `${at('b')}:${at('a')}`, cwd: '/' }), () => at('b', 'tool')],
    [
      'an empty PATH entry is the cwd',
      'tool',
      () => ({ path: `/nowhere::${at('b')}`, cwd: at('a') }),
      () => at('a', 'tool'),
    ],
    ['a trailing empty entry too', 'tool', () => ({ path: '/nowhere:', cwd: at('b') }), () => at('b', 'tool')],
    ['PATH="" is the cwd', 'tool', () => ({ path: '', cwd: at('a') }), () => at('a', 'tool')],
    [
      'a relative PATH entry is taken from the cwd',
      'local',
      () => ({ path: 'bin', cwd: at('work') }),
      () => at('work', 'bin', 'local'),
    ],
    [
      'a directory on PATH is skipped',
      'tool',
      () => ({ path: `${at('dir')}:${at('b')}`, cwd: '/' }),
      () => at('b', 'tool'),
    ],
    [
      'a non-executable file on PATH is skipped',
      'tool',
      () => ({ path: `${at('noexec')}:${at('a')}`, cwd: '/' }),
      () => at('a', 'tool'),
    ],
    [
      'a command with a slash is taken from the cwd',
      './run.sh',
      () => ({ path: '/nowhere', cwd: at('work') }),
      () => at('work', 'run.sh'),
    ],
    [
      '...also without a leading ./',
      'bin/local',
      () => ({ path: '/nowhere', cwd: at('work') }),
      () => at('work', 'bin', 'local'),
    ],
    ['...and ../', '../a/tool', () => ({ path: undefined, cwd: at('work') }), () => at('a', 'tool')],
    [
      'an absolute path ignores PATH and cwd',
      at('b', 'tool'),
      () => ({ path: at('a'), cwd: at('a') }),
      () => at('b', 'tool'),
    ],
  ])('%s', (_, command, opts, expected) => {
    expect(resolveCommand(command, opts())).toBe(expected());
  });

  it('searches the default PATH when PATH is unset', () => {
    const first = DEFAULT_PATH.split(':')
      .map((dir) => join(dir, 'sh'))
      .find(existsSync);
    expect(resolveCommand('sh', { path: undefined, cwd: '/' })).toBe(first);
  });

  it.each([
    [
      'not on PATH: 127',
      'gunicorn',
      () => ({ path: '/a:/b', cwd: '/' }),
      127,
      'command not found: gunicorn (searched PATH=/a:/b)',
      'install it in the image or give its absolute path',
    ],
    [
      'not on the default PATH: 127',
      'secret-fetch-no-such-command',
      () => ({ path: undefined, cwd: '/' }),
      127,
      `command not found: secret-fetch-no-such-command (PATH is unset; searched ${DEFAULT_PATH})`,
      'install it in the image or give its absolute path',
    ],
    [
      'no file at a relative path: 127',
      './nope',
      () => ({ path: undefined, cwd: at('work') }),
      127,
      `command not found: ./nope: no file at ${at('work', 'nope')} (relative to the command's working directory ${at('work')})`,
      'check the path, or install the program in the image',
    ],
    [
      'only a directory on PATH: 126',
      'tool',
      () => ({ path: at('dir'), cwd: '/' }),
      126,
      `cannot run tool: ${at('dir', 'tool')} is a directory`,
      'name the program, not its directory',
    ],
    [
      'a non-executable file (mode 0644) on PATH, nothing better: 126',
      'tool',
      () => ({ path: `/nowhere:${at('noexec')}:${at('dir')}`, cwd: '/' }),
      126,
      `cannot run tool: ${at('noexec', 'tool')} is not executable`,
      'make it executable (chmod +x), and check its filesystem is not mounted noexec',
    ],
    [
      'a path to a directory: 126',
      './tool',
      () => ({ path: undefined, cwd: at('dir') }),
      126,
      `cannot run ./tool: ${at('dir', 'tool')} is a directory`,
      'name the program, not its directory',
    ],
    [
      'a path to a non-executable file: 126',
      at('noexec', 'tool'),
      () => ({ path: undefined, cwd: '/' }),
      126,
      `cannot run ${at('noexec', 'tool')}: ${at('noexec', 'tool')} is not executable`,
      'make it executable (chmod +x), and check its filesystem is not mounted noexec',
    ],
    ['an empty command: 127', '', () => ({ path: undefined, cwd: '/' }), 127, 'the command name is empty', undefined],
  ])('%s', (_, command, opts, exitCode, message, hint) => {
    const error = thrown(() => resolveCommand(command, opts()));
    expect(error.exitCode).toBe(exitCode);
    expect(error.message).toBe(message);
    expect(error.hint).toBe(hint);
    expect(error.command).toBe(command);
  });

  it('a directory or a 0644 file would make execve fail (and Node abort)', () => {
    expect(execveAborts(at('dir', 'tool'), ['tool'])).toBe(true);
    expect(execveAborts(at('noexec', 'tool'), ['tool'])).toBe(true);
  });
});

describe('planExec', () => {
  const ELF_MACHINE = 18;
  const foreignMachine = process.arch === 'x64' ? 183 : 62;
  const binfmtHandlers = (() => {
    try {
      return readdirSync('/proc/sys/fs/binfmt_misc').some((n) => n !== 'register' && n !== 'status');
    } catch {
      return false;
    }
  })();

  beforeAll(() => {
    elf(at('p', 'elf'));
    file(at('p', 'script'), '#!/bin/sh\necho script "$@"\n', 0o755);
    file(at('p', 'script-arg'), '#! /bin/sh -e\necho script-arg\n', 0o755);
    file(at('p', 'plain'), 'echo plain "$@"\n', 0o755);
    file(at('p', 'empty'), '', 0o755);
    file(at('p', 'bare-shebang'), '#!\necho bare\n', 0o755);
    file(at('p', 'missing-interp'), '#!/usr/bin/python9\nprint(1)\n', 0o755);
    file(at('p', 'crlf'), '#!/bin/sh\r\necho crlf\r\n', 0o755);
    file(at('p', 'interp-noexec'), `#!${at('noexec', 'tool')}\n`, 0o755);
    file(at('p', 'interp-dir'), `#!${at('dir', 'tool')}\n`, 0o755);
    file(at('p', 'interp-plain'), `#!${at('p', 'plain')}\n`, 0o755);
    file(at('p', 'nested'), `#!${at('p', 'script')}\n`, 0o755);
    file(at('p', 'nested-missing'), `#!${at('p', 'missing-interp')}\n`, 0o755);
    file(at('p', 'relative-interp'), '#!bin/local\n', 0o755);
    file(at('p', 'binary'), Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2, 0, 0]), 0o755);
    elf(at('p', 'elf-no-loader'), (bytes) => {
      const image = inspectImage(at('p', 'elf'));
      if (image.kind !== 'elf' || image.interpreter === undefined) throw new Error('expected a dynamic ELF');
      const where = bytes.indexOf(Buffer.from(`${image.interpreter}\0`));
      Buffer.from('/no/such/ld.so'.padEnd(image.interpreter.length, 'x')).copy(bytes, where);
    });
    elf(at('p', 'elf-foreign'), (bytes) => {
      bytes.writeUInt16LE(foreignMachine, ELF_MACHINE);
    });
    elf(at('p', 'elf-object'), (bytes) => {
      bytes.writeUInt16LE(1, 16); // ET_REL
    });
  });

  it.each([
    ['an ELF binary: as it is', 'elf', ['true', 'x'], () => ({ file: at('p', 'elf'), argv: ['true', 'x'] })],
    [
      'a #! script: as it is',
      'script',
      ['./script', 'x'],
      () => ({ file: at('p', 'script'), argv: ['./script', 'x'] }),
    ],
    ['a #! line with an argument', 'script-arg', ['s'], () => ({ file: at('p', 'script-arg'), argv: ['s'] })],
    ['a script whose interpreter is a script', 'nested', ['n'], () => ({ file: at('p', 'nested'), argv: ['n'] })],
    [
      'a text file without #!: run by /bin/sh, like execvp',
      'plain',
      ['./plain', 'x', 'y'],
      () => ({ file: '/bin/sh', argv: ['/bin/sh', at('p', 'plain'), 'x', 'y'] }),
    ],
    ['an empty file: /bin/sh', 'empty', ['e'], () => ({ file: '/bin/sh', argv: ['/bin/sh', at('p', 'empty')] })],
    [
      'a #! without an interpreter: the kernel says ENOEXEC, so /bin/sh',
      'bare-shebang',
      ['b'],
      () => ({ file: '/bin/sh', argv: ['/bin/sh', at('p', 'bare-shebang')] }),
    ],
  ])('%s', (_, name, argv, expected) => {
    const plan = planExec(at('p', name), argv);
    expect(plan).toEqual(expected());
    expect(execveAborts(plan.file, plan.argv)).toBe(false);
  });

  it('resolves a relative interpreter from the command’s working directory', () => {
    const plan = planExec(at('p', 'relative-interp'), ['r'], { cwd: at('work') });
    expect(plan).toEqual({ file: at('p', 'relative-interp'), argv: ['r'] });
    const error = thrown(() => planExec(at('p', 'relative-interp'), ['r'], { cwd: at('a') }));
    expect(error.message).toBe('cannot run r: its interpreter bin/local was not found');
  });

  it.each([
    [
      'a missing #! interpreter: 127',
      'missing-interp',
      './x',
      127,
      'cannot run ./x: its interpreter /usr/bin/python9 was not found',
    ],
    [
      'a #! line with CRLF: 127',
      'crlf',
      './crlf',
      127,
      'cannot run ./crlf: its interpreter "/bin/sh\\r" was not found',
    ],
    [
      'an interpreter without x bit: 126',
      'interp-noexec',
      'i',
      126,
      `cannot run i: its interpreter ${at('noexec', 'tool')} is not executable`,
    ],
    [
      'an interpreter that is a directory: 126',
      'interp-dir',
      'i',
      126,
      `cannot run i: its interpreter ${at('dir', 'tool')} is a directory`,
    ],
    [
      'an interpreter that is a text file without #!: 126 (no shell fallback for interpreters)',
      'interp-plain',
      'i',
      126,
      `cannot run i: its interpreter ${at('p', 'plain')} is not a program (no ELF header and no #! line)`,
    ],
    [
      'a missing interpreter of the interpreter: 127',
      'nested-missing',
      'n',
      127,
      `cannot run n: /usr/bin/python9, the interpreter of ${at('p', 'missing-interp')}, was not found`,
    ],
    [
      'a binary that is not ELF: 126',
      'binary',
      'b',
      126,
      `cannot run b: ${at('p', 'binary')} is not a program for Linux (no ELF header and no #! line)`,
    ],
    [
      'an ELF binary whose loader is missing (glibc on musl): 127',
      'elf-no-loader',
      'e',
      127,
      /^cannot run e: its ELF interpreter \/no\/such\/ld\.so[x]* was not found$/,
    ],
    [
      'an ELF object file: 126',
      'elf-object',
      'o',
      126,
      `cannot run o: ${at('p', 'elf-object')}: it is an object file (.o), not a program`,
    ],
  ])('%s', (_, name, command, exitCode, message) => {
    const error = thrown(() => planExec(at('p', name), [command]));
    expect(error.exitCode).toBe(exitCode);
    if (typeof message === 'string') expect(error.message).toBe(message);
    else expect(error.message).toMatch(message);
    expect(error.command).toBe(command);
    expect(execveAborts(at('p', name), [command])).toBe(true);
  });

  it.skipIf(binfmtHandlers)('an ELF binary for another CPU: 126', () => {
    const error = thrown(() => planExec(at('p', 'elf-foreign'), ['f']));
    expect(error.exitCode).toBe(126);
    expect(error.message).toMatch(/^cannot run f: .*elf-foreign: it is a program for .+, but this machine is /);
    expect(execveAborts(at('p', 'elf-foreign'), ['f'])).toBe(true);
  });

  it('hints at the cause of a missing interpreter', () => {
    expect(thrown(() => planExec(at('p', 'crlf'), ['c'])).hint).toBe(
      'the script has Windows (CRLF) line endings: convert it with dos2unix',
    );
    expect(thrown(() => planExec(at('p', 'missing-interp'), ['c'])).hint).toBe(
      'install the interpreter in the image, or fix the #! line',
    );
    expect(thrown(() => planExec(at('p', 'elf-no-loader'), ['c'])).hint).toMatch(/another C library/);
  });

  it('a file that cannot be read: 126 (run as an unprivileged user)', () => {
    file(at('p', 'unreadable'), '#!/bin/sh\n', 0o711);
    const code = `import(${JSON.stringify(fileURLToPath(new URL('../../src/launch/resolve.ts', import.meta.url)))}).then((m) => {
      try { m.planExec(${JSON.stringify(at('p', 'unreadable'))}, ['u']); console.log('planned'); }
      catch (e) { console.log(JSON.stringify({ exitCode: e.exitCode, message: e.message })); }
    })`;
    const result = spawnSync(NODE, ['-e', code], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: '/' });
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual({
      exitCode: 126,
      message: `cannot run u: cannot read ${at('p', 'unreadable')}: permission denied`,
    });
  });
});

describe('parseShebang (as fs/binfmt_script.c)', () => {
  const parse = (text: string) => parseShebang(Buffer.from(text, 'latin1'));
  it.each([
    ['#!/bin/sh\n', { interpreter: '/bin/sh', arg: undefined }],
    ['#!/bin/sh', { interpreter: '/bin/sh', arg: undefined }],
    ['#! \t/usr/bin/env  python3 -u  \nrest', { interpreter: '/usr/bin/env', arg: 'python3 -u' }],
    ['#!/bin/sh \n', { interpreter: '/bin/sh', arg: undefined }],
    ['#!/bin/sh\r\n', { interpreter: '/bin/sh\r', arg: undefined }],
    ['#!/bin/sh -e\r\n', { interpreter: '/bin/sh', arg: '-e\r' }],
    ['#!/bin/sh\0ignored\n', { interpreter: '/bin/sh', arg: undefined }],
    ['#!\n', undefined],
    ['#!   \n', undefined],
    [`#!/${'x'.repeat(300)}`, undefined], // the name runs past the 256-byte buffer
    [`#!/bin/sh ${'a'.repeat(300)}`, { interpreter: '/bin/sh', arg: 'a'.repeat(256 - 11) }],
  ])('%j', (text, expected) => {
    expect(parse(text)).toEqual(expected);
  });
});
