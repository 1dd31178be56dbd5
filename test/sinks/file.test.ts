import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, OutputError } from '../../src/errors.ts';
import { StagedFiles } from '../../src/sinks/file.ts';

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
