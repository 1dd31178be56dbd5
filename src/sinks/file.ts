// The file sink: a secret lands on tmpfs (memory, never disk), complete or not at all. Each file
// is first written to a temp file beside its target and only renamed into place once every
// stage has succeeded, so a failure leaves no partial file and no file at all.

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
  statfsSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { OutputError } from '../errors.ts';

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

export interface FileOptions {
  readonly mode: number;
  readonly allowDisk: boolean;
  readonly uid: number | undefined;
  readonly gid: number | undefined;
}

/** Temp files written but not yet renamed; removed on any failure or signal. */
export class StagedFiles {
  readonly #staged: { temp: string; target: string }[] = [];

  /** Check the target and write `data` to a temp file beside it. */
  stage(target: string, data: Uint8Array, options: FileOptions): void {
    checkTarget(target, options.allowDisk);
    const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
    let fd: number;
    try {
      // O_EXCL|O_NOFOLLOW: never reuse or follow something an attacker placed at the temp name.
      fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (error) {
      throw outputFailure(error, target);
    }
    this.#staged.push({ temp, target });
    try {
      let offset = 0;
      while (offset < data.byteLength) offset += writeSync(fd, data, offset);
      // Set mode and owner on the open file, before it is visible: independent of the umask.
      fchmodSync(fd, options.mode);
      if (options.uid !== undefined || options.gid !== undefined) fchownSync(fd, options.uid ?? -1, options.gid ?? -1);
      fsyncSync(fd);
    } catch (error) {
      throw outputFailure(error, target);
    } finally {
      closeSync(fd);
    }
  }

  /** Rename every staged file into place. */
  commit(): string[] {
    const written: string[] = [];
    for (const { temp, target } of this.#staged) {
      try {
        renameSync(temp, target);
      } catch (error) {
        throw outputFailure(error, target);
      }
      written.push(target);
    }
    this.#staged.length = 0;
    return written;
  }

  /** Remove every temp file not yet renamed. Safe to call from a signal handler, more than once. */
  discard(): void {
    for (const { temp } of this.#staged.splice(0)) {
      try {
        unlinkSync(temp);
      } catch {
        // Already gone.
      }
    }
  }
}

/** The memory filesystem `dir` is on (tmpfs or ramfs), or undefined for any other; throws statfs's error. */
export function memoryFilesystemAt(dir: string): 'tmpfs' | 'ramfs' | undefined {
  const { type } = statfsSync(dir);
  return type === TMPFS_MAGIC ? 'tmpfs' : type === RAMFS_MAGIC ? 'ramfs' : undefined;
}

/** The memory filesystem `target` would land on (tmpfs or ramfs), or undefined for any other. */
export function memoryFilesystemOf(target: string): 'tmpfs' | 'ramfs' | undefined {
  const dir = dirname(target);
  try {
    return memoryFilesystemAt(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new OutputError(
        `cannot write ${target}: the directory ${dir} does not exist`,
        'mount a tmpfs volume there (emptyDir medium: Memory), or create it',
      );
    }
    throw outputFailure(error, target);
  }
}

function checkTarget(target: string, allowDisk: boolean): void {
  const dir = dirname(target);
  // Always called: it also refuses a directory that does not exist, with or without --allow-disk.
  const memory = memoryFilesystemOf(target);
  if (!allowDisk && memory === undefined) {
    throw new OutputError(
      `refusing to write ${target}: ${dir} is not on tmpfs or ramfs, so the secret would reach a disk`,
      'mount a memory volume there (emptyDir medium: Memory, --tmpfs, /dev/shm), or pass --allow-disk',
    );
  }
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(target);
  } catch {
    existing = undefined;
  }
  if (existing?.isSymbolicLink()) {
    throw new OutputError(
      `refusing to write ${target}: it is a symbolic link`,
      'point --out at a real path, or remove the link',
    );
  }
  if (existing?.isDirectory()) {
    throw new OutputError(`cannot write ${target}: it is a directory`, 'give --out a file path inside it');
  }
}

/** Everything stage() checks before writing `target`, plus write access to its directory (doctor). */
export function checkWritableTarget(target: string, allowDisk: boolean): void {
  checkTarget(target, allowDisk);
  try {
    accessSync(dirname(target), constants.W_OK);
  } catch (error) {
    throw outputFailure(error, target);
  }
}

function outputFailure(error: unknown, target: string): OutputError {
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOSPC':
      return new OutputError(
        `cannot write ${target}: no space left on its filesystem`,
        'give the tmpfs volume a larger size limit',
      );
    case 'EROFS':
      return new OutputError(
        `cannot write ${target}: the filesystem is read-only`,
        'mount a writable tmpfs volume there',
      );
    case 'EACCES':
    case 'EPERM':
      return new OutputError(
        `cannot write ${target}: permission denied`,
        'make the directory writable by the user secret-fetch runs as (chown needs root)',
      );
    case 'EDQUOT':
      return new OutputError(`cannot write ${target}: disk quota exceeded`, 'raise the quota of the volume');
    default:
      return new OutputError(`cannot write ${target}: ${code ?? String(error)}`, 'check the --out path');
  }
}
