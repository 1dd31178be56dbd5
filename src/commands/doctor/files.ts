// The local checks: can a file source be opened for reading (it is not read), and would the file
// sink accept each --out target (the directory exists, is tmpfs or ramfs, and is writable).

import { closeSync, fstatSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from '../../errors.ts';
import { show } from '../../log.ts';
import { checkWritableTarget } from '../../sinks/file.ts';
import { openSecretFile } from '../../sources/file.ts';
import { type Check, failFrom, ok, warn } from './checklist.ts';

export function checkFileSource(path: string): Check {
  try {
    const fd = openSecretFile(path);
    try {
      const stat = fstatSync(fd);
      if (stat.isDirectory())
        throw new UsageError(`--source ${path} is a directory`, 'name the secrets file inside it');
      return ok('file', path, `${path}: readable, ${stat.size} bytes (not read)`, { size: String(stat.size) });
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    return failFrom('file', path, error);
  }
}

export function checkOutTarget(target: string, allowDisk: boolean): Check {
  try {
    const filesystem = checkWritableTarget(target, allowDisk);
    const dir = show(dirname(target));
    if (filesystem === undefined) {
      return warn(
        'out',
        target,
        `--out ${show(target)}: ${dir} is not on tmpfs or ramfs, and --allow-disk lets the secret reach a disk`,
        'mount a memory volume there (emptyDir medium: Memory, --tmpfs, /dev/shm) and drop --allow-disk',
      );
    }
    return ok('out', target, `--out ${show(target)}: ${dir} is ${filesystem} and writable`, { filesystem });
  } catch (error) {
    return failFrom('out', target, error);
  }
}
