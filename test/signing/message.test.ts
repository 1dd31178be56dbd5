// The signed message's exact layout, checked against bytes written out by hand here (not built by
// the code under test), and the metadata that carries the signature.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  readSignatureMetadata,
  SIGNATURE_METADATA,
  SIGNING_KEY_METADATA,
  signatureMetadata,
  signedMessage,
} from '../../src/signing/message.ts';

const VERSION = 'projects/p/locations/global/keyRings/r/cryptoKeys/signer/cryptoKeyVersions/3';

describe('signedMessage', () => {
  it('is five length-prefixed fields: domain, bucket, object, generation, SHA-256 of the data', () => {
    const message = signedMessage({ bucket: 'vault', object: 'app/x.env', generation: '17' }, Buffer.from('A=1\n'));
    const sha = createHash('sha256').update('A=1\n').digest('hex');
    const expected = [
      '00000020',
      Buffer.from('secret-fetch object signature v1').toString('hex'), // 32 bytes
      '00000005',
      '7661756c74', // vault
      '00000009',
      '6170702f782e656e76', // app/x.env
      '00000002',
      '3137', // 17
      '00000020',
      sha,
    ].join('');
    expect(message.toString('hex')).toBe(expected);
  });

  it('differs whenever any input differs, including where a name splits', () => {
    const data = Buffer.from('secret');
    const base = { bucket: 'vault', object: 'a', generation: '1' };
    const messages = [
      signedMessage(base, data),
      signedMessage({ ...base, bucket: 'vault2' }, data),
      signedMessage({ ...base, object: 'b' }, data),
      signedMessage({ ...base, generation: '2' }, data),
      signedMessage(base, Buffer.from('secreT')),
      // Without length prefixes these two would concatenate to the same bytes.
      signedMessage({ bucket: 'ab', object: 'c', generation: '1' }, data),
      signedMessage({ bucket: 'a', object: 'bc', generation: '1' }, data),
    ].map((m) => m.toString('hex'));
    expect(new Set(messages).size).toBe(messages.length);
  });

  it('holds a hash of the data, never the data', () => {
    const data = Buffer.from('canary-3f1e9a');
    expect(signedMessage({ bucket: 'vault', object: 'o', generation: '1' }, data).includes(data)).toBe(false);
  });

  it('refuses a generation that is not a positive decimal', () => {
    for (const generation of ['', '0', '01', '1e3', '-1', ' 1']) {
      expect(() => signedMessage({ bucket: 'b', object: 'o', generation }, Buffer.alloc(0))).toThrow(/generation/);
    }
  });
});

describe('signature metadata', () => {
  const der = Buffer.from(`3044${'02200'.padEnd(68, '1')}${'02200'.padEnd(68, '2')}`, 'hex');

  it('round-trips the signature and the key version', () => {
    const metadata = signatureMetadata(der, VERSION);
    expect(metadata).toEqual({ [SIGNATURE_METADATA]: der.toString('base64'), [SIGNING_KEY_METADATA]: VERSION });
    expect(readSignatureMetadata({ ...metadata, other: 'kept' })).toEqual({
      kind: 'signed',
      signature: der,
      keyVersion: VERSION,
    });
  });

  it('reports a missing signature', () => {
    expect(readSignatureMetadata(undefined)).toEqual({ kind: 'missing' });
    expect(readSignatureMetadata({})).toEqual({ kind: 'missing' });
    expect(readSignatureMetadata({ [SIGNATURE_METADATA]: '' })).toEqual({ kind: 'missing' });
    expect(readSignatureMetadata({ [SIGNATURE_METADATA]: null })).toEqual({ kind: 'missing' });
  });

  it('reports a malformed one: not a string, not base64, or too long for a P-256 signature', () => {
    for (const value of [42, true, 'not base64!', 'QUJD', 'QUJDRA=', 'A'.repeat(100), `${der.toString('base64')}\n`]) {
      expect(readSignatureMetadata({ [SIGNATURE_METADATA]: value })).toEqual({ kind: 'malformed' });
    }
  });

  it("keeps a key version only when it looks like one (the metadata is anyone's to write)", () => {
    const signature = der.toString('base64');
    for (const key of [undefined, 'web', `${VERSION}\nforged line`, `${VERSION}/x`, 3]) {
      const stored = readSignatureMetadata({ [SIGNATURE_METADATA]: signature, [SIGNING_KEY_METADATA]: key });
      expect(stored).toMatchObject({ kind: 'signed', keyVersion: undefined });
    }
  });
});
