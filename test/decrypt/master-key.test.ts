import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decryptWithMasterKey, loadMasterKey, type MasterKeySource } from '../../src/decrypt/master-key.ts';
import {
  EXIT,
  FormatError,
  IntegrityError,
  NotFoundError,
  type SecretFetchError,
  UsageError,
} from '../../src/errors.ts';
import { Secret } from '../../src/secret.ts';
import { masterKeyText, newKey, sealFlaskVault } from '../fixtures/flask-vault.ts';

// The real functions, wrapped to keep the buffers they are given: the key and the key file's
// text must be zeroed once used.
const seen: { keys: Buffer[]; texts: Uint8Array[] } = { keys: [], texts: [] };
vi.mock('../../src/decrypt/flask-vault.ts', async (original) => {
  const actual = await original<typeof import('../../src/decrypt/flask-vault.ts')>();
  return {
    ...actual,
    decodeMasterKey: (text: Uint8Array, what: string) => {
      seen.texts.push(text);
      return actual.decodeMasterKey(text, what);
    },
    openFlaskVault: (request: Parameters<typeof actual.openFlaskVault>[0]) => {
      seen.keys.push(request.key);
      return actual.openFlaskVault(request);
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync('/dev/shm/master-key-test-');
  seen.keys.length = 0;
  seen.texts.length = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const PLAINTEXT = 'SECRET_KEY: s3cr3t-value\n';
const fromFile = (path: string): MasterKeySource => ({ kind: 'file', path });

function caught(action: () => unknown): SecretFetchError {
  try {
    action();
  } catch (error) {
    return error as SecretFetchError;
  }
  throw new Error('expected an error');
}

describe('decryptWithMasterKey', () => {
  it('decrypts with a key file (with the newline an editor adds), then zeroes the key and the file text', () => {
    const key = newKey(24);
    const path = join(dir, 'master.key');
    writeFileSync(path, `${masterKeyText(key)}\n`);
    const secret = decryptWithMasterKey(Buffer.from(sealFlaskVault(PLAINTEXT, key)), fromFile(path), 'c.yml.enc');
    expect(secret.reveal().toString()).toBe(PLAINTEXT);
    expect(seen.keys).toHaveLength(1);
    expect(seen.keys[0]?.length).toBe(24);
    expect(seen.keys[0]?.every((b) => b === 0)).toBe(true);
    expect(seen.texts).toHaveLength(1);
    expect(seen.texts[0]?.every((b) => b === 0)).toBe(true);
  });

  it('decrypts with the key text from the variable, and leaves that text for the next refresh', () => {
    const key = newKey(16);
    const text = new Secret(Buffer.from(masterKeyText(key)));
    const source: MasterKeySource = { kind: 'variable', name: 'SECRET_FETCH_MASTER_KEY', text };
    for (let i = 0; i < 2; i++) {
      const secret = decryptWithMasterKey(Buffer.from(sealFlaskVault(PLAINTEXT, key)), source, 'c.yml.enc');
      expect(secret.reveal().toString()).toBe(PLAINTEXT);
    }
    expect(seen.keys.every((k) => k.every((b) => b === 0))).toBe(true);
    expect(text.reveal().toString()).toBe(masterKeyText(key));
  });

  it('zeroes the key also when the file does not match it', () => {
    const path = join(dir, 'master.key');
    writeFileSync(path, masterKeyText(newKey()));
    const error = caught(() =>
      decryptWithMasterKey(Buffer.from(sealFlaskVault(PLAINTEXT, newKey())), fromFile(path), 'c.yml.enc'),
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.message).toBe(
      `cannot decrypt c.yml.enc with the master key from --master-key-file ${path}: the file does not match this key`,
    );
    expect(seen.keys[0]?.every((b) => b === 0)).toBe(true);
  });
});

describe('loadMasterKey from a file', () => {
  it('a missing file is not found (66), naming the file and the flag', () => {
    const path = join(dir, 'nope', 'master.key');
    const error = caught(() => loadMasterKey(fromFile(path)));
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.exitCode).toBe(EXIT.notFound);
    expect(error.line).toBe(
      `the master key file ${path} does not exist (check --master-key-file and that the volume holding master.key is mounted)`,
    );
  });

  it('a directory is a usage error', () => {
    const error = caught(() => loadMasterKey(fromFile(dir)));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toBe(`--master-key-file ${dir} is a directory`);
  });

  it('a file larger than 1 KiB is not a master key (the limit itself is read)', () => {
    const path = join(dir, 'big');
    writeFileSync(path, `${masterKeyText(newKey())}${' '.repeat(1024 - 44)}`);
    expect(loadMasterKey(fromFile(path))).toHaveLength(32);
    writeFileSync(path, `${masterKeyText(newKey())}${' '.repeat(1025 - 44)}`);
    const error = caught(() => loadMasterKey(fromFile(path)));
    expect(error).toBeInstanceOf(FormatError);
    expect(error.message).toBe(`the master key file ${path} is larger than 1024 bytes: it is not a master key`);
  });

  it('a malformed key names the file and never the text', () => {
    const path = join(dir, 'master.key');
    writeFileSync(path, 'c2VjcmV0LWtleS10ZXh0\n');
    const error = caught(() => loadMasterKey(fromFile(path)));
    expect(error).toBeInstanceOf(FormatError);
    expect(error.exitCode).toBe(EXIT.format);
    expect(error.message).toBe(`the master key file ${path} decodes to 15 bytes, which is not an AES key length`);
    expect(error.line).not.toContain('c2VjcmV0');
  });
});
