// A secrets file that is already on disk: a mounted Kubernetes Secret, a Cloud Run secret volume.

import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { IntegrityError, NotFoundError, PermissionError, UsageError } from '../errors.ts';
import { Secret } from '../secret.ts';
import type { FetchedSecret } from './index.ts';

export function readSecretFile(path: string, maxBytes: number): FetchedSecret {
  const fd = openSecretFile(path);
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new UsageError(`--source ${path} is a directory`, 'name the secrets file inside it');
    if (stat.size > maxBytes) {
      throw new IntegrityError(
        `${path} is ${stat.size} bytes, more than the ${maxBytes}-byte limit`,
        'is this the right file?',
      );
    }
    // Read until EOF rather than trusting st_size: procfs/sysfs-like files report 0.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.max(64 * 1024, stat.size + 1));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      total += n;
      if (total > maxBytes)
        throw new IntegrityError(`${path} is more than the ${maxBytes}-byte limit`, 'is this the right file?');
      chunks.push(chunk.subarray(0, n));
    }
    const data = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    return { data: new Secret(data), name: path };
  } finally {
    closeSync(fd);
  }
}

/** Opens the secrets file for reading (also doctor's check that it can be read), errors mapped. */
export function openSecretFile(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new NotFoundError(`${path} does not exist`, 'check the --source path and that the volume is mounted');
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new PermissionError(
        `cannot read ${path}: permission denied`,
        'make it readable by the user secret-fetch runs as',
      );
    }
    throw new NotFoundError(`cannot open ${path}: ${code}`, 'check the --source path');
  }
}

/** Device, inode, size and mtime of the file `path` names now (following symlinks). */
export function fileVersion(path: string): string {
  try {
    const stat = statSync(path, { bigint: true });
    return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`${path} does not exist`);
    if (code === 'EACCES' || code === 'EPERM') throw new PermissionError(`cannot stat ${path}: permission denied`);
    throw new NotFoundError(`cannot stat ${path}: ${code}`);
  }
}
