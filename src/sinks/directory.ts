// An output directory held open. Its filesystem is checked, and the temp file created, renamed and
// removed, in the directory that was opened, so flipping a component of its path meanwhile (a
// symlink swapped between a tmpfs and a disk directory) cannot move a byte anywhere else. Node has
// no openat, fstatfs or renameat: /proc/self/fd/N stands in for them, since the kernel resolves it
// to the open directory itself, not to the path it was opened by. Everything that depends on that
// trick is in these two functions, to be swapped for real *at calls if the runtime ever offers them.

import { closeSync, constants, fstatSync, openSync, type Stats, statfsSync, statSync } from 'node:fs';

/** Linux's O_PATH (node:fs has no constant for it). */
const O_PATH = 0o10000000;

export interface OpenDirectory {
  /** The directory as it was opened: identity (dev, ino), mode and owner. */
  readonly stat: Stats;
  /** statfs(2)'s f_type for the open directory. */
  filesystemType(): number;
  /** A path to `name` inside the open directory, whatever its original path leads to now. */
  entry(name: string): string;
  close(): void;
}

/** /proc/self/fd does not lead back to the directory opened (no /proc, or a foreign one). */
export class NoProcFdError extends Error {
  readonly code = 'ENOPROCFD';
}

/** Opens `dir` (symlinks followed, as for any path); throws open's errno error, or NoProcFdError. */
export function openDirectory(dir: string): OpenDirectory {
  // O_PATH, as a dirfd for openat would be: no read permission needed, so a write-only drop
  // directory (mode 0300) works as it does by path.
  const fd = openSync(dir, O_PATH | constants.O_DIRECTORY);
  try {
    const stat = fstatSync(fd);
    const handle = `/proc/self/fd/${fd}`;
    let reached: Stats | undefined;
    try {
      reached = statSync(handle);
    } catch {
      reached = undefined;
    }
    // Fail closed: every later step names the directory through this link.
    if (reached?.dev !== stat.dev || reached.ino !== stat.ino) {
      throw new NoProcFdError(`${handle} does not lead to the directory opened`);
    }
    let open = true;
    return {
      stat,
      filesystemType: () => statfsSync(handle).type,
      entry: (name) => `${handle}/${name}`,
      close: () => {
        if (open) closeSync(fd);
        open = false;
      },
    };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** statfs(2)'s f_type for the file open as `fd` (fstatfs, through the same /proc link). */
export function filesystemTypeOf(fd: number): number {
  return statfsSync(`/proc/self/fd/${fd}`).type;
}
