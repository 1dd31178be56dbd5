import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, OutputError, UsageError } from '../../src/errors.ts';
import {
  checkDistinctOutputs,
  checkFilePath,
  checkWritableTarget,
  namesAFile,
  outputLocation,
  StagedFiles,
} from '../../src/sinks/file.ts';

const TMPFS_MAGIC = 0x01021994;
const options = { mode: 0o400, allowDisk: false, uid: undefined, gid: undefined };
let dir: string;

beforeEach(() => {
  expect(statfsSync('/dev/shm').type).toBe(TMPFS_MAGIC);
  dir = mkdtempSync('/dev/shm/sinks-test-');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function outputError(action: () => void): OutputError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(OutputError);
    expect((error as OutputError).exitCode).toBe(EXIT.output);
    return error as OutputError;
  }
  throw new Error('expected an OutputError');
}

describe('StagedFiles', () => {
  it('writes nothing visible until commit, then the exact bytes with the mode, whatever the umask', () => {
    const target = join(dir, 'app.cfg');
    const staged = new StagedFiles();
    const previous = process.umask(0o077);
    try {
      staged.stage(target, Buffer.from('SECRET_KEY = "x"\n'), { ...options, mode: 0o440 });
    } finally {
      process.umask(previous);
    }
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(dir)).toHaveLength(1);
    expect(staged.commit()).toEqual([target]);
    expect(readFileSync(target, 'utf8')).toBe('SECRET_KEY = "x"\n');
    expect(lstatSync(target).mode & 0o777).toBe(0o440);
    expect(readdirSync(dir)).toEqual(['app.cfg']);
  });

  it('replaces an existing file atomically', () => {
    const target = join(dir, 'app.env');
    writeFileSync(target, 'OLD=1\n');
    const staged = new StagedFiles();
    staged.stage(target, Buffer.from('NEW=2\n'), options);
    expect(readFileSync(target, 'utf8')).toBe('OLD=1\n');
    staged.commit();
    expect(readFileSync(target, 'utf8')).toBe('NEW=2\n');
  });

  it('discard removes every temp file and is idempotent', () => {
    const staged = new StagedFiles();
    staged.stage(join(dir, 'a'), Buffer.from('a'), options);
    staged.stage(join(dir, 'b'), Buffer.from('b'), options);
    expect(readdirSync(dir)).toHaveLength(2);
    staged.discard();
    staged.discard();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a symlink at the target and leaves the link and its target alone', () => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'untouched');
    symlinkSync(victim, join(dir, 'link'));
    const staged = new StagedFiles();
    expect(outputError(() => staged.stage(join(dir, 'link'), Buffer.from('s'), options)).line).toMatch(
      /is a symbolic link/,
    );
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(readdirSync(dir).sort()).toEqual(['link', 'victim']);
  });

  it('refuses a directory at the target', () => {
    mkdirSync(join(dir, 'd'));
    expect(outputError(() => new StagedFiles().stage(join(dir, 'd'), Buffer.from('s'), options)).line).toMatch(
      /is a directory/,
    );
  });

  it('names a missing directory and how to fix it', () => {
    const line = outputError(() => new StagedFiles().stage(join(dir, 'nope', 'x'), Buffer.from('s'), options)).line;
    expect(line).toMatch(/directory .*nope does not exist/);
    expect(line).toMatch(/medium: Memory/);
  });

  it('refuses a directory on disk unless allowDisk', () => {
    const disk = mkdtempSync(join(process.cwd(), '.sinks-disk-'));
    try {
      expect(statfsSync(disk).type).not.toBe(TMPFS_MAGIC);
      const target = join(disk, 'app.env');
      expect(outputError(() => new StagedFiles().stage(target, Buffer.from('s'), options)).line).toMatch(
        /not on tmpfs or ramfs.*--allow-disk/,
      );
      expect(readdirSync(disk)).toEqual([]);
      const staged = new StagedFiles();
      staged.stage(target, Buffer.from('s'), { ...options, allowDisk: true });
      staged.commit();
      expect(readFileSync(target, 'utf8')).toBe('s');
    } finally {
      rmSync(disk, { recursive: true, force: true });
    }
  });
});

describe('StagedFiles: only regular files are replaced', () => {
  const special: [string, (path: string) => void, RegExp][] = [
    ['a character device', (path) => execFileSync('mknod', [path, 'c', '1', '3']), /is a character device/],
    ['a FIFO', (path) => execFileSync('mkfifo', [path]), /is a FIFO/],
  ];
  it.each(special)('refuses %s at the target and leaves it as it was', (_, make, message) => {
    const target = join(dir, 'node');
    make(target);
    const before = lstatSync(target);
    const line = outputError(() => new StagedFiles().stage(target, Buffer.from('s'), options)).line;
    expect(line).toMatch(/^refusing to replace .*\/node: /);
    expect(line).toMatch(message);
    const after = lstatSync(target);
    expect([after.ino, after.mode, after.rdev]).toEqual([before.ino, before.mode, before.rdev]);
    expect(readdirSync(dir)).toEqual(['node']);
    expect(() => checkWritableTarget(target, false)).toThrow(message);
  });
});

describe('StagedFiles: shared directories', () => {
  it('refuses a directory every user can write without the sticky bit, and accepts it sticky', () => {
    chmodSync(dir, 0o777);
    const target = join(dir, 'app.env');
    const line = outputError(() => new StagedFiles().stage(target, Buffer.from('s'), options)).line;
    expect(line).toMatch(/every user can write .* and it has no sticky bit.*\(.*chmod o-w.*chmod \+t/);
    expect(readdirSync(dir)).toEqual([]);
    chmodSync(dir, 0o1777);
    const staged = new StagedFiles();
    staged.stage(target, Buffer.from('s'), options);
    staged.commit();
    expect(readFileSync(target, 'utf8')).toBe('s');
    // /dev/shm itself is sticky 1777: fine.
    expect(lstatSync('/dev/shm').mode & 0o1777).toBe(0o1777);
    expect(checkWritableTarget('/dev/shm/not-written', false)).toBe('tmpfs');
  });
});

describe('StagedFiles: the directory checked is the directory written', () => {
  it('renames into the directory it opened, though its path now leads elsewhere', () => {
    const a = join(dir, 'a');
    mkdirSync(a);
    const staged = new StagedFiles();
    staged.stage(join(a, 'app.env'), Buffer.from('s'), options);
    renameSync(a, join(dir, 'moved'));
    mkdirSync(a);
    expect(staged.commit()).toEqual([join(a, 'app.env')]);
    expect(readdirSync(a)).toEqual([]);
    expect(readdirSync(join(dir, 'moved'))).toEqual(['app.env']);
  });

  it('removes the temp file from the directory it opened, not from whatever the path now names', () => {
    const a = join(dir, 'a');
    mkdirSync(a);
    const staged = new StagedFiles();
    staged.stage(join(a, 'app.env'), Buffer.from('s'), options);
    const [temp] = readdirSync(a) as [string];
    renameSync(a, join(dir, 'moved'));
    mkdirSync(a);
    writeFileSync(join(a, temp), "someone else's");
    staged.discard();
    expect(readdirSync(join(dir, 'moved'))).toEqual([]);
    expect(readFileSync(join(a, temp), 'utf8')).toBe("someone else's");
  });
  it('refuses to stage one file twice, reached through a symlinked directory', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    const staged = new StagedFiles();
    staged.stage(join(dir, 'real', 'x'), Buffer.from('first'), options);
    const line = outputError(() => staged.stage(join(dir, 'link', 'x'), Buffer.from('second'), options)).line;
    expect(line).toMatch(/link\/x: it is the same file as .*real\/x, another output of this run/);
    staged.commit();
    expect(readFileSync(join(dir, 'real', 'x'), 'utf8')).toBe('first');
    expect(readdirSync(join(dir, 'real'))).toEqual(['x']);
  });
});

describe('output paths', () => {
  it('compares outputs by real location: two paths through a symlinked directory are one file', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    expect(outputLocation(join(dir, 'link', 'x'))).toBe(outputLocation(join(dir, 'real', 'x')));
    expect(outputLocation(join(dir, 'link', 'x'))).not.toBe(outputLocation(join(dir, 'real', 'y')));
    // `..` is taken as the write takes it, by name: link/../x is x in dir, not beside real.
    expect(outputLocation(`${dir}/link/../x`)).toBe(outputLocation(join(dir, 'x')));
    const check = () =>
      checkDistinctOutputs([
        { path: join(dir, 'real', 'x'), flag: '--out A' },
        { path: join(dir, 'link', 'x'), flag: '--ready-file B' },
      ]);
    expect(check).toThrow(UsageError);
    expect(check).toThrow(/^--ready-file B is the same file as --out A$/);
    expect(() =>
      checkDistinctOutputs([
        { path: join(dir, 'real', 'x'), flag: '--out A' },
        { path: join(dir, 'link', 'y'), flag: '--out B' },
      ]),
    ).not.toThrow();
  });

  it.each([
    ['/dev/shm/x', true],
    ['x', true],
    ['/dev/shm/.x', true],
    ['/dev/shm/x/', false],
    ['/dev/shm/x/.', false],
    ['/dev/shm/x/..', false],
    ['..', false],
    ['.', false],
  ])('%s names a file: %s', (path, names) => {
    expect(namesAFile(path)).toBe(names);
    if (!names) expect(() => checkFilePath('--out', path)).toThrow(/^--out \S+ does not name a file$/);
  });
});
