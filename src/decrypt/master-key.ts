// Decrypting Flask-Vault files with their master key, which comes from a file (--master-key-file,
// read here, at run time and on every refresh, so the key is held only while it is used) or from
// SECRET_FETCH_MASTER_KEY (its text, held by the options as a Secret).

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { FormatError, NotFoundError, PermissionError, UsageError } from '../errors.ts';
import { Secret } from '../secret.ts';
import { decodeMasterKey, openFlaskVault } from './flask-vault.ts';

export type MasterKeySource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'variable'; readonly name: string; readonly text: Secret };

/** The master key's text itself: a variable only, never a flag (argv is visible to every user in ps). */
export const MASTER_KEY_VARIABLE = 'SECRET_FETCH_MASTER_KEY';

/**
 * The master key from --master-key-file (read at run time) or SECRET_FETCH_MASTER_KEY (checked
 * now, held as a Secret); both is a usage error.
 */
export function masterKeySource(
  file: string | undefined,
  environ: Readonly<Record<string, string | undefined>>,
): MasterKeySource | undefined {
  const given = environ[MASTER_KEY_VARIABLE];
  const text = given === '' ? undefined : given;
  if (file !== undefined && text !== undefined) {
    throw new UsageError(
      `both --master-key-file (or SECRET_FETCH_MASTER_KEY_FILE) and ${MASTER_KEY_VARIABLE} are given`,
      'give the master key one way only',
    );
  }
  if (file === '') throw new UsageError('--master-key-file is empty', 'give the path of master.key');
  if (file !== undefined) return Object.freeze({ kind: 'file', path: file });
  if (text === undefined) return undefined;
  const secret = new Secret(Buffer.from(text, 'utf8'));
  try {
    decodeMasterKey(secret.reveal(), MASTER_KEY_VARIABLE).fill(0);
  } catch (error) {
    secret.wipe();
    // A bad value of a variable is a usage error, as for every other SECRET_FETCH_* variable.
    if (error instanceof FormatError) throw new UsageError(error.message, error.hint);
    throw error;
  }
  return Object.freeze({ kind: 'variable', name: MASTER_KEY_VARIABLE, text: secret });
}

/** A master.key file is 24 to 44 characters of base64; anything much larger is the wrong file. */
const MAX_KEY_FILE_BYTES = 1024;

/** Where the master key comes from, for messages: the flag and path, or the variable's name. */
export function describeMasterKey(source: MasterKeySource): string {
  return source.kind === 'file' ? `--master-key-file ${source.path}` : source.name;
}

/** Decrypts `ciphertext` (the Flask-Vault file `what`) with the master key; the key is zeroed after. */
export function decryptWithMasterKey(ciphertext: Buffer, source: MasterKeySource, what: string): Secret {
  const key = loadMasterKey(source);
  try {
    return openFlaskVault({ file: ciphertext, key, what, keyName: describeMasterKey(source) });
  } finally {
    key.fill(0);
  }
}

/** The AES key from its source; the caller zeroes it. */
export function loadMasterKey(source: MasterKeySource): Buffer {
  if (source.kind === 'variable') return decodeMasterKey(source.text.reveal(), source.name);
  const text = readKeyFile(source.path);
  try {
    return decodeMasterKey(text, `the master key file ${source.path}`);
  } finally {
    text.fill(0);
  }
}

function readKeyFile(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new NotFoundError(
        `the master key file ${path} does not exist`,
        'check --master-key-file and that the volume holding master.key is mounted',
      );
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new PermissionError(
        `cannot read the master key file ${path}: permission denied`,
        'make it readable by the user secret-fetch runs as',
      );
    }
    throw new NotFoundError(`cannot open the master key file ${path}: ${code}`, 'check --master-key-file');
  }
  try {
    if (fstatSync(fd).isDirectory()) {
      throw new UsageError(`--master-key-file ${path} is a directory`, 'name the master.key file inside it');
    }
    // One byte more than the limit tells a file at the limit from a larger one; reading to EOF
    // (not trusting st_size) also reads a key from a pipe or a procfs-like file.
    const buffer = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length > MAX_KEY_FILE_BYTES) {
        buffer.fill(0);
        throw new FormatError(
          `the master key file ${path} is larger than ${MAX_KEY_FILE_BYTES} bytes: it is not a master key`,
          'give the master.key that flask vault init wrote',
        );
      }
    }
    return buffer.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}
