// --verify-key: the PEM checks, and signature verification against signatures made here with
// node:crypto over a message this test lays out itself (independently of src/signing/message.ts).

import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT, type SecretFetchError } from '../../src/errors.ts';
import { loadVerifyKey, requireSignature, verifyObjectSignature } from '../../src/signing/verify.ts';

const dir = mkdtempSync(join(tmpdir(), 'sf-verify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const VERSION = 'projects/p/locations/global/keyRings/r/cryptoKeys/signer/cryptoKeyVersions/1';

function ecKeys(): { privateKey: KeyObject; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, pem: publicKey.export({ type: 'spki', format: 'pem' }) as string };
}

function pemFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The v1 message, written out field by field (4-byte big-endian length, then the bytes). */
function message(bucket: string, object: string, generation: string, data: Buffer): Buffer {
  const field = (bytes: Buffer) =>
    Buffer.concat([Buffer.from(bytes.length.toString(16).padStart(8, '0'), 'hex'), bytes]);
  return Buffer.concat([
    field(Buffer.from('secret-fetch object signature v1')),
    field(Buffer.from(bucket)),
    field(Buffer.from(object)),
    field(Buffer.from(generation)),
    field(createHash('sha256').update(data).digest()),
  ]);
}

function thrown(fn: () => unknown): SecretFetchError {
  try {
    fn();
  } catch (error) {
    return error as SecretFetchError;
  }
  throw new Error('expected it to throw');
}

describe('loadVerifyKey', () => {
  it('loads an EC P-256 public key PEM', () => {
    const { pem } = ecKeys();
    const key = loadVerifyKey(pemFile('good.pem', pem), 'good.pem');
    expect(key.path).toBe('good.pem');
    expect(key.key.asymmetricKeyType).toBe('ec');
  });

  it.each([
    ['a missing file', () => join(dir, 'missing.pem'), EXIT.notFound, /does not exist/],
    [
      'a directory',
      () => {
        mkdirSync(join(dir, 'd.pem'), { recursive: true });
        return join(dir, 'd.pem');
      },
      EXIT.usage,
      /is not a file/,
    ],
    ['an empty file', () => pemFile('empty.pem', ''), EXIT.usage, /not a PEM public key/],
    ['text', () => pemFile('text.pem', 'hello\n'), EXIT.usage, /not a PEM public key/],
    [
      'a private key',
      () => pemFile('private.pem', ecKeys().privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
      EXIT.usage,
      /holds a private key/,
    ],
    [
      'a broken PEM body',
      () => pemFile('broken.pem', '-----BEGIN PUBLIC KEY-----\nAAAA!!!!\n-----END PUBLIC KEY-----\n'),
      EXIT.usage,
      /not a valid PEM public key/,
    ],
    [
      'an RSA public key',
      () =>
        pemFile(
          'rsa.pem',
          generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
            type: 'spki',
            format: 'pem',
          }) as string,
        ),
      EXIT.usage,
      /not an EC P-256 public key/,
    ],
    [
      'a P-384 public key',
      () =>
        pemFile(
          'p384.pem',
          generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({
            type: 'spki',
            format: 'pem',
          }) as string,
        ),
      EXIT.usage,
      /not an EC P-256 public key/,
    ],
    ['a huge file', () => pemFile('huge.pem', 'x'.repeat(70_000)), EXIT.usage, /too large/],
  ])('refuses %s', (_name, path, code, message) => {
    const error = thrown(() => loadVerifyKey(path()));
    expect(error.exitCode).toBe(code);
    expect(error.message).toMatch(message);
    expect(error.line).not.toContain('\n');
  });
});

describe('verifyObjectSignature', () => {
  const signer = ecKeys();
  const verifyKey = loadVerifyKey(pemFile('signer.pem', signer.pem), 'signer.pem');
  const data = Buffer.from('ciphertext bytes');
  const where = { bucket: 'vault', object: 'app/secrets.cfg.enc', generation: '1700000000000001' };
  const signatureOf = (m: Buffer, key = signer.privateKey) => sign('sha256', m, key).toString('base64');
  const good = signatureOf(message(where.bucket, where.object, where.generation, data));
  const metadata = (signature: string) => ({
    'secret-fetch-signature': signature,
    'secret-fetch-signing-key': VERSION,
  });

  it('accepts a signature over exactly these bytes, bucket, name and generation', () => {
    expect(() => verifyObjectSignature(verifyKey, { ...where, metadata: metadata(good) }, data)).not.toThrow();
    expect(requireSignature({ ...where, metadata: metadata(good) })).toMatchObject({ keyVersion: VERSION });
  });

  it.each([
    ['other bytes', where, Buffer.from('ciphertext byteS')],
    ['another object name', { ...where, object: 'app/other.cfg.enc' }, data],
    ['another bucket', { ...where, bucket: 'vault-staging' }, data],
    ['another generation (a re-upload of the same bytes)', { ...where, generation: '1700000000000002' }, data],
  ])('refuses the signature for %s (76)', (_name, object, bytes) => {
    const error = thrown(() => verifyObjectSignature(verifyKey, { ...object, metadata: metadata(good) }, bytes));
    expect(error.exitCode).toBe(EXIT.integrity);
    expect(error.message).toBe(
      `the signature of gs://${object.bucket}/${object.object}#${object.generation} does not verify with --verify-key signer.pem: the object, its name or its generation changed after signing, or another key signed it`,
    );
    expect(error.hint).toContain(`secret-fetch sign gs://${object.bucket}/${object.object} --signing-key ${VERSION}`);
  });

  it('refuses a signature made by another key', () => {
    const other = signatureOf(message(where.bucket, where.object, where.generation, data), ecKeys().privateKey);
    const error = thrown(() => verifyObjectSignature(verifyKey, { ...where, metadata: metadata(other) }, data));
    expect(error.exitCode).toBe(EXIT.integrity);
    expect(error.message).toMatch(/does not verify with --verify-key signer\.pem/);
  });

  it('refuses a tampered signature, whichever byte was changed', () => {
    const der = Buffer.from(good, 'base64');
    for (const i of [0, 1, 3, 10, der.length - 1]) {
      const tampered = Buffer.from(der);
      tampered[i] = (tampered[i] as number) ^ 0x01;
      const error = thrown(() =>
        verifyObjectSignature(verifyKey, { ...where, metadata: metadata(tampered.toString('base64')) }, data),
      );
      expect([i, error.exitCode]).toEqual([i, EXIT.integrity]);
    }
  });

  it('refuses a signature in IEEE P1363 (r||s) form: KMS signatures are DER', () => {
    const p1363 = sign('sha256', message(where.bucket, where.object, where.generation, data), {
      key: signer.privateKey,
      dsaEncoding: 'ieee-p1363',
    });
    const error = thrown(() =>
      verifyObjectSignature(verifyKey, { ...where, metadata: metadata(p1363.toString('base64')) }, data),
    );
    expect(error.exitCode).toBe(EXIT.integrity);
  });

  it('refuses an object without a signature, naming the command that signs it', () => {
    for (const m of [undefined, {}, { 'secret-fetch-signing-key': VERSION }]) {
      const error = thrown(() => verifyObjectSignature(verifyKey, { ...where, metadata: m }, data));
      expect(error.exitCode).toBe(EXIT.integrity);
      expect(error.line).toBe(
        'gs://vault/app/secrets.cfg.enc#1700000000000001 has no secret-fetch signature, and --verify-key refuses unsigned objects (if this object is yours, check it and sign it: secret-fetch sign gs://vault/app/secrets.cfg.enc --signing-key KEYVERSION)',
      );
    }
  });

  it('refuses a malformed signature before looking at the bytes', () => {
    const error = thrown(() => requireSignature({ ...where, metadata: { 'secret-fetch-signature': 'not base64!' } }));
    expect(error.exitCode).toBe(EXIT.integrity);
    expect(error.message).toMatch(/carries a malformed secret-fetch signature/);
  });
});
