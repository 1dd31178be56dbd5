// The master key options: --master-key-file (or SECRET_FETCH_MASTER_KEY_FILE) and
// SECRET_FETCH_MASTER_KEY, which sources they apply to, and what is refused before any I/O.

import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { EXIT, UsageError } from '../src/errors.ts';
import { parseInvocation, type RunSource } from '../src/options.ts';
import { masterKeyText, newKey, urlsafeBase64 } from './fixtures/flask-vault.ts';

/** The master key a source is decrypted with, if it is a Flask-Vault file. */
const masterKeyOf = (s: RunSource | undefined) => (s?.decrypt.kind === 'flask-vault' ? s.decrypt.masterKey : undefined);
/** The Cloud KMS key a source is decrypted with, or the key a berglas object must name. */
const kmsKeyOf = (s: RunSource | undefined) =>
  s?.decrypt.kind === 'kms' ? s.decrypt.key : s?.decrypt.kind === 'self' ? s.decrypt.kmsKey : undefined;

const KMS = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
const KEY_TEXT = masterKeyText(newKey(32));

function options(argv: string[], env: Record<string, string> = {}) {
  const invocation = parseInvocation(argv, env);
  if (invocation.kind !== 'run') throw new Error(`expected a run, got ${invocation.kind}`);
  return invocation.options;
}

function usageError(argv: string[], env: Record<string, string> = {}): UsageError {
  try {
    parseInvocation(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(EXIT.usage);
    return error as UsageError;
  }
  throw new Error(`expected a usage error for ${argv.join(' ')}`);
}

describe('the master key', () => {
  it('applies to .enc sources without --kms-key, whose format is read through .enc', () => {
    const o = options([
      '--source',
      'gs://vault/app/credentials.yml.enc',
      '--source',
      'config/credentials.toml.enc',
      '--source',
      'plain.json',
      '--master-key-file',
      '/run/keys/master.key',
      '--env',
    ]);
    expect(o.sources.map((s) => [s.format, masterKeyOf(s), kmsKeyOf(s)])).toEqual([
      ['yaml', { kind: 'file', path: '/run/keys/master.key' }, undefined],
      ['toml', { kind: 'file', path: '/run/keys/master.key' }, undefined],
      ['json', undefined, undefined],
    ]);
  });

  it('takes the file from SECRET_FETCH_MASTER_KEY_FILE, and the flag wins over it', () => {
    const env = { SECRET_FETCH_MASTER_KEY_FILE: '/from/env/master.key' };
    expect(masterKeyOf(options(['--source', 'c.yml.enc', '--env'], env).sources[0])).toEqual({
      kind: 'file',
      path: '/from/env/master.key',
    });
    expect(
      masterKeyOf(options(['--source', 'c.yml.enc', '--env', '--master-key-file', '/flag/master.key'], env).sources[0]),
    ).toEqual({ kind: 'file', path: '/flag/master.key' });
  });

  it.each(['CREDENTIALS.YML.ENC', 'secrets.env.enc', 'settings.cfg.enc', 'blob.enc'])('applies to %s', (name) => {
    expect(
      masterKeyOf(options(['--source', name, '--out', '/dev/shm/x', '--master-key-file', 'k']).sources[0]),
    ).toEqual({
      kind: 'file',
      path: 'k',
    });
  });

  it('leaves a berglas:// object, which names its own key, to its reader', () => {
    expect(options(['--source', 'berglas://vault/app.yml.enc', '--env']).sources[0]).toMatchObject({
      decrypt: { kind: 'self', kmsKey: undefined },
      format: 'yaml',
    });
    expect(
      options([
        '--source',
        'berglas://vault/a.yml.enc',
        '--source',
        'c.yml.enc',
        '--master-key-file',
        'k',
        '--env',
      ]).sources.map(masterKeyOf),
    ).toEqual([undefined, { kind: 'file', path: 'k' }]);
  });

  it('leaves a source with --kms-key to Cloud KMS', () => {
    const o = options(['--source', 'gs://vault/a.yml.enc', '--kms-key', KMS, '--env']);
    expect(o.sources[0]).toMatchObject({ decrypt: { kind: 'kms', key: KMS }, format: 'yaml' });
  });

  it('holds SECRET_FETCH_MASTER_KEY as a Secret that never prints', () => {
    const o = options(['--source', 'c.toml.enc', '--env'], { SECRET_FETCH_MASTER_KEY: `${KEY_TEXT}\n` });
    const source = masterKeyOf(o.sources[0]);
    expect(source?.kind).toBe('variable');
    if (source?.kind !== 'variable') throw new Error('unreachable');
    expect(source.name).toBe('SECRET_FETCH_MASTER_KEY');
    expect(source.text.reveal().toString()).toBe(`${KEY_TEXT}\n`);
    for (const printed of [JSON.stringify(o), inspect(o, { depth: 10 }), String(source.text)]) {
      expect(printed).not.toContain(KEY_TEXT.slice(0, 16));
    }
  });

  it.each([16, 24, 32] as const)('accepts a %d-byte key in SECRET_FETCH_MASTER_KEY', (n) => {
    const text = masterKeyText(newKey(n));
    expect(
      masterKeyOf(options(['--source', 'c.yml.enc', '--env'], { SECRET_FETCH_MASTER_KEY: text }).sources[0]),
    ).toBeDefined();
  });

  it('treats an empty SECRET_FETCH_MASTER_KEY as absent', () => {
    expect(
      masterKeyOf(options(['--source', 'c.yml', '--env'], { SECRET_FETCH_MASTER_KEY: '' }).sources[0]),
    ).toBeUndefined();
  });
});

describe('the master key: refused before any I/O', () => {
  it('refuses both a key file and a key', () => {
    const message =
      /^both --master-key-file \(or SECRET_FETCH_MASTER_KEY_FILE\) and SECRET_FETCH_MASTER_KEY are given$/;
    const env = { SECRET_FETCH_MASTER_KEY: KEY_TEXT };
    expect(usageError(['--source', 'c.yml.enc', '--env', '--master-key-file', 'k'], env).message).toMatch(message);
    const both = { ...env, SECRET_FETCH_MASTER_KEY_FILE: 'k' };
    const error = usageError(['--source', 'c.yml.enc', '--env'], both);
    expect(error.message).toMatch(message);
    expect(error.hint).toBe('give the master key one way only');
    expect(error.line).not.toContain(KEY_TEXT.slice(0, 16));
  });

  it.each([
    ['c.yml.enc', ['--env']],
    ['gs://vault/app/credentials.toml.enc', ['--env']],
    ['secrets.env.enc', ['--out', '/dev/shm/x']],
    ['settings.cfg.enc', ['--format', 'yaml', '--out', '/dev/shm/x']],
  ])('refuses %s without any key, naming the fix', (source, rest) => {
    const error = usageError(['--source', source, ...rest]);
    expect(error.line).toBe(
      `${source} is encrypted (.enc) but no key is given (add --master-key-file PATH (or SECRET_FETCH_MASTER_KEY) for a Flask-Vault file, or --kms-key NAME for Cloud KMS)`,
    );
  });

  it('copies a raw .enc source without a key as it is (ciphertext for the app to open)', () => {
    expect(options(['--source', 'blob.enc', '--out', '/dev/shm/x']).sources[0]).toMatchObject({
      format: 'raw',
      decrypt: { kind: 'none' },
    });
  });

  it('refuses a master key that no source uses', () => {
    const error = usageError(['--source', 'plain.yml', '--env', '--master-key-file', 'k']);
    expect(error.message).toBe('--master-key-file is given, but no source is a Flask-Vault file');
    expect(error.hint).toMatch(/sources whose name ends in \.enc and that have no --kms-key/);
    expect(
      usageError(['--source', 'a.yml.enc', '--kms-key', KMS, '--env'], { SECRET_FETCH_MASTER_KEY: KEY_TEXT }).message,
    ).toBe('SECRET_FETCH_MASTER_KEY is given, but no source is a Flask-Vault file');
    expect(usageError(['--', 'true'], { SECRET_FETCH_MASTER_KEY_FILE: 'k' }).message).toMatch(
      /no source is a Flask-Vault file/,
    );
  });

  it('refuses an empty --master-key-file', () => {
    expect(usageError(['--source', 'c.yml.enc', '--env', '--master-key-file', '']).message).toBe(
      '--master-key-file is empty',
    );
  });

  it.each([
    [
      'not base64',
      'not*a*key',
      /^SECRET_FETCH_MASTER_KEY is not urlsafe base64: a byte outside the urlsafe base64 alphabet at byte 3$/,
    ],
    ['standard base64', urlsafeBase64(Buffer.alloc(32, 0xfb)).replaceAll('-', '+'), /standard base64/],
    [
      '20 bytes',
      urlsafeBase64(Buffer.alloc(20, 7)),
      /^SECRET_FETCH_MASTER_KEY decodes to 20 bytes, which is not an AES key length$/,
    ],
    ['blank', ' \n', /^SECRET_FETCH_MASTER_KEY is empty$/],
  ])('refuses a SECRET_FETCH_MASTER_KEY that is %s, without quoting it', (_title, text, message) => {
    const error = usageError(['--source', 'c.yml.enc', '--env'], { SECRET_FETCH_MASTER_KEY: text });
    expect(error.message).toMatch(message);
    expect(error.hint).toMatch(/urlsafe base64 of a 16, 24 or 32-byte AES key/);
    if (text.trim().length > 4) expect(error.line).not.toContain(text.trim());
  });
});
