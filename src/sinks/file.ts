// The file sink: a secret lands on tmpfs (memory, never disk), complete or not at all. Each file
// is first written to a temp file beside its target and only renamed into place once every
// stage has succeeded, so a failure leaves no partial file and no file at all. The directory is
// opened once and every step after goes through it (directory.ts), so what was checked is what is
// written; only a regular file is ever replaced, and never in a directory other users can swap.

import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fsyncSync,
  lstatSync,
  openSync,
  renameSync,
  type Stats,
  statfsSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { OutputError, UsageError } from '../errors.ts';
import { show } from '../log.ts';
import { filesystemTypeOf, NoProcFdError, type OpenDirectory, openDirectory } from './directory.ts';

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
const S_ISVTX = 0o1000; // the sticky bit (node:fs has no constant for it)

export interface FileOptions {
  readonly mode: number;
  readonly allowDisk: boolean;
  readonly uid: number | undefined;
  readonly gid: number | undefined;
}

interface Staged {
  /** The directory checked, held open until the temp file is renamed or removed. */
  readonly dir: OpenDirectory;
  readonly temp: string;
  readonly name: string;
  readonly target: string;
}

/** A file renamed into place by commitHeld(); remove() unlinks it where it was written (once). */
export interface WrittenFile {
  readonly target: string;
  remove(): void;
}

/** Temp files written but not yet renamed; removed on any failure or signal. */
export class StagedFiles {
  readonly #staged: Staged[] = [];

  /** Check the target and write `data` to a temp file beside it. */
  stage(target: string, data: Uint8Array, options: FileOptions): void {
    const { dir } = openTargetDirectory(target, options.allowDisk);
    let kept = false;
    try {
      const name = basename(target);
      checkExisting(dir, name, target);
      // Checked before any fetch too (outputLocation); this holds even if a link changed since.
      const twin = this.#staged.find(
        (file) => file.name === name && file.dir.stat.dev === dir.stat.dev && file.dir.stat.ino === dir.stat.ino,
      );
      if (twin !== undefined) {
        throw new OutputError(
          `refusing to write ${show(target)}: it is the same file as ${show(twin.target)}, another output of this run`,
          'give each secret its own file',
        );
      }
      const temp = `.${name}.${randomBytes(6).toString('hex')}.tmp`;
      let fd: number;
      try {
        // O_EXCL|O_NOFOLLOW: never reuse or follow something an attacker placed at the temp name.
        fd = openSync(
          dir.entry(temp),
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
      } catch (error) {
        throw outputFailure(error, target);
      }
      this.#staged.push({ dir, temp, name, target });
      kept = true;
      try {
        // The file opened is checked too, not only its directory: if it were ever elsewhere than on
        // the memory filesystem checked, nothing is written. (Not st_dev: overlayfs may give a
        // file another device number than its directory.)
        if (!options.allowDisk && memoryFilesystem(filesystemTypeOf(fd)) === undefined) {
          throw new OutputError(
            `refusing to write ${show(target)}: the temp file is not on tmpfs or ramfs, though its directory was`,
          );
        }
        let offset = 0;
        while (offset < data.byteLength) offset += writeSync(fd, data, offset);
        // Set mode and owner on the open file, before it is visible: independent of the umask.
        fchmodSync(fd, options.mode);
        if (options.uid !== undefined || options.gid !== undefined)
          fchownSync(fd, options.uid ?? -1, options.gid ?? -1);
        fsyncSync(fd);
      } catch (error) {
        throw error instanceof OutputError ? error : outputFailure(error, target);
      } finally {
        closeSync(fd);
      }
    } finally {
      if (!kept) dir.close();
    }
  }

  /** Rename every staged file into place, within the directory that was checked. */
  commit(): string[] {
    return this.#commit(false).map((file) => file.target);
  }

  /**
   * As commit(), but each directory stays open, so that --cleanup removes the file from the
   * directory it was written in, even if a component of its path leads elsewhere by then.
   */
  commitHeld(): WrittenFile[] {
    return this.#commit(true);
  }

  #commit(hold: boolean): WrittenFile[] {
    const written: WrittenFile[] = [];
    for (let file = this.#staged[0]; file !== undefined; file = this.#staged[0]) {
      try {
        renameSync(file.dir.entry(file.temp), file.dir.entry(file.name));
      } catch (error) {
        throw outputFailure(error, file.target);
      }
      this.#staged.shift();
      if (!hold) file.dir.close();
      const { dir, name, target } = file;
      let removed = false;
      written.push({
        target,
        remove: () => {
          // Once only: after close, the descriptor number may name another directory.
          if (removed) return;
          removed = true;
          try {
            unlinkSync(dir.entry(name));
          } finally {
            dir.close();
          }
        },
      });
    }
    return written;
  }

  /** Remove every temp file not yet renamed. Safe to call from a signal handler, more than once. */
  discard(): void {
    for (const { dir, temp } of this.#staged.splice(0)) {
      try {
        unlinkSync(dir.entry(temp));
      } catch {
        // Already gone.
      }
      dir.close();
    }
  }
}

type MemoryFilesystem = 'tmpfs' | 'ramfs' | undefined;

function memoryFilesystem(type: number): MemoryFilesystem {
  return type === TMPFS_MAGIC ? 'tmpfs' : type === RAMFS_MAGIC ? 'ramfs' : undefined;
}

/** The memory filesystem `dir` is on (tmpfs or ramfs), or undefined for any other; throws statfs's error. */
export function memoryFilesystemAt(dir: string): MemoryFilesystem {
  return memoryFilesystem(statfsSync(dir).type);
}

/**
 * Whether other users can write `dir` without the sticky bit: any of them could then rename their
 * own file over the temp file before it is renamed into place, or over the target afterwards.
 */
export function isSharedDirectory(dir: Stats): boolean {
  return (dir.mode & constants.S_IWOTH) !== 0 && (dir.mode & S_ISVTX) === 0;
}

/**
 * Opens the directory `target` goes in, and checks it through the open handle: it exists, it is on
 * tmpfs or ramfs (unless allowDisk), and no other user can swap files in it.
 */
function openTargetDirectory(target: string, allowDisk: boolean): { dir: OpenDirectory; memory: MemoryFilesystem } {
  const path = dirname(target);
  let dir: OpenDirectory;
  try {
    dir = openDirectory(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new OutputError(
        `cannot write ${show(target)}: the directory ${show(path)} does not exist`,
        'mount a tmpfs volume there (emptyDir medium: Memory), or create it',
      );
    }
    throw outputFailure(error, target);
  }
  try {
    let memory: MemoryFilesystem;
    try {
      memory = memoryFilesystem(dir.filesystemType());
    } catch (error) {
      throw outputFailure(error, target);
    }
    if (!allowDisk && memory === undefined) {
      throw new OutputError(
        `refusing to write ${show(target)}: ${show(path)} is not on tmpfs or ramfs, so the secret would reach a disk`,
        'mount a memory volume there (emptyDir medium: Memory, --tmpfs, /dev/shm), or pass --allow-disk',
      );
    }
    if (isSharedDirectory(dir.stat)) {
      throw new OutputError(
        `refusing to write ${show(target)}: every user can write ${show(path)} and it has no sticky bit, so another user could swap the file`,
        'use a directory only its owner can write (chmod o-w), or a sticky one (chmod +t) as /tmp and /dev/shm are',
      );
    }
    return { dir, memory };
  } catch (error) {
    dir.close();
    throw error;
  }
}

/** Refuses anything at `name` but a regular file: a link, a directory, a device, a FIFO, a socket. */
function checkExisting(dir: OpenDirectory, name: string, target: string): void {
  let existing: Stats;
  try {
    existing = lstatSync(dir.entry(name));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw outputFailure(error, target);
  }
  if (existing.isFile()) return;
  if (existing.isSymbolicLink()) {
    throw new OutputError(
      `refusing to write ${show(target)}: it is a symbolic link`,
      'point --out at a real path, or remove the link',
    );
  }
  if (existing.isDirectory()) {
    throw new OutputError(`cannot write ${show(target)}: it is a directory`, 'give --out a file path inside it');
  }
  const kind = existing.isCharacterDevice()
    ? 'a character device'
    : existing.isBlockDevice()
      ? 'a block device'
      : existing.isFIFO()
        ? 'a FIFO'
        : existing.isSocket()
          ? 'a socket'
          : 'not a regular file';
  throw new OutputError(
    `refusing to replace ${show(target)}: it is ${kind}, not a regular file`,
    'name a regular file, or a path that does not exist yet',
  );
}

/**
 * Everything stage() checks before writing `target`, plus write access to its directory (doctor).
 * Returns the memory filesystem the directory is on, or undefined (on a disk, with allowDisk).
 */
export function checkWritableTarget(target: string, allowDisk: boolean): MemoryFilesystem {
  const { dir, memory } = openTargetDirectory(target, allowDisk);
  try {
    checkExisting(dir, basename(target), target);
    try {
      accessSync(dir.entry('.'), constants.W_OK);
    } catch (error) {
      throw outputFailure(error, target);
    }
    return memory;
  } finally {
    dir.close();
  }
}

/**
 * Where `target` would land, as a string equal for two paths that reach one file through
 * different links: its directory's identity (device and inode) and its name. A directory that
 * does not exist yet is named by its path (the write will refuse it anyway).
 */
export function outputLocation(target: string): string {
  // Normalised first, as the path is before it is written (`a/link/../x` is `a/x`).
  const path = resolve(target);
  try {
    const { dev, ino } = statSync(dirname(path));
    return `${dev}:${ino}/${basename(path)}`;
  } catch {
    return path;
  }
}

/** Refuses two outputs of a run that are one file by real location: the last rename would win. */
export function checkDistinctOutputs(outputs: readonly { readonly path: string; readonly flag: string }[]): void {
  const seen = new Map<string, string>();
  for (const { path, flag } of outputs) {
    const location = outputLocation(path);
    const other = seen.get(location);
    if (other !== undefined) {
      throw new UsageError(`${flag} is the same file as ${other}`, 'give each output its own file');
    }
    seen.set(location, flag);
  }
}

/**
 * Whether `path` names a file: not with a trailing slash, nor with `.` or `..` last (the path would
 * be normalised to its directory's name, and a file of that name written beside it).
 */
export function namesAFile(path: string): boolean {
  return !path.endsWith('/') && !/(^|\/)\.\.?$/.test(path);
}

/** Refuses a flag's output path that does not name a file (see namesAFile). */
export function checkFilePath(flag: string, path: string): void {
  if (!namesAFile(path)) {
    throw new UsageError(`${flag} ${show(path)} does not name a file`, 'give a file path, without a trailing slash');
  }
}

function outputFailure(error: unknown, target: string): OutputError {
  if (error instanceof NoProcFdError) {
    return new OutputError(
      `cannot write ${show(target)}: /proc is not mounted, and files are written only through /proc/self/fd (so the directory checked is the one written)`,
      'mount /proc, as every container runtime does',
    );
  }
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOSPC':
      return new OutputError(
        `cannot write ${show(target)}: no space left on its filesystem`,
        'give the tmpfs volume a larger size limit',
      );
    case 'EROFS':
      return new OutputError(
        `cannot write ${show(target)}: the filesystem is read-only`,
        'mount a writable tmpfs volume there',
      );
    case 'EACCES':
    case 'EPERM':
      return new OutputError(
        `cannot write ${show(target)}: permission denied`,
        'make the directory writable by the user secret-fetch runs as (chown needs root)',
      );
    case 'EDQUOT':
      return new OutputError(`cannot write ${show(target)}: disk quota exceeded`, 'raise the quota of the volume');
    default:
      return new OutputError(`cannot write ${show(target)}: ${code ?? String(error)}`, 'check the --out path');
  }
}
