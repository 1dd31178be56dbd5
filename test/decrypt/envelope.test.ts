// The envelope layouts, byte by byte. Known answers are built here by hand with node:crypto from
// the documented layouts (README, "Envelopes"), never with the serialisers under test.

import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ENVELOPE_HEADER_BYTES,
  ENVELOPE_KEY_AAD,
  ENVELOPE_MAGIC,
  isEnvelope,
  openBerglas,
  openEnvelope,
  parseBerglasBody,
  parseEnvelope,
  sealBerglas,
  sealEnvelope,
  serialiseBerglasBody,
  serialiseEnvelope,
} from '../../src/decrypt/envelope.ts';
import { EXIT, IntegrityError, type SecretFetchError } from '../../src/errors.ts';
import { Secret } from '../../src/secret.ts';
import { FakeKms, isZero } from './fake-kms.ts';

const WHAT = 'gs://vault/big.bin';

function gcm(key: Buffer, plaintext: Buffer, aad?: Buffer) {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  if (aad) cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce, ciphertext, tag: cipher.getAuthTag() };
}

/** An envelope written from the README's table, not by serialiseEnvelope. */
async function handMadeEnvelope(kms: FakeKms, plaintext: Buffer, dek = randomBytes(32)) {
  const keyAad = Buffer.from('895346454e560d0a0100', 'hex');
  expect(keyAad.toString('latin1')).toBe('\x89SFENV\r\n\x01\x00');
  const wrapped = await kms.wrap(Buffer.from(dek), keyAad);
  const lengths = Buffer.alloc(10);
  lengths.writeUInt16BE(wrapped.length, 0);
  lengths.writeBigUInt64BE(BigInt(plaintext.length), 2);
  const before = Buffer.concat([keyAad, lengths, wrapped]);
  const { nonce, ciphertext, tag } = gcm(dek, plaintext, before);
  return { bytes: Buffer.concat([before, nonce, ciphertext, tag]), wrapped, dek };
}

/** A berglas body written as berglas's writer does, not by serialiseBerglasBody. */
async function handMadeBerglas(kms: FakeKms, plaintext: Buffer, object: string) {
  const dek = randomBytes(32);
  const wrapped = await kms.wrap(Buffer.from(dek), Buffer.from(object));
  const { nonce, ciphertext, tag } = gcm(dek, plaintext);
  const text = `${wrapped.toString('base64')}:${Buffer.concat([nonce, ciphertext, tag]).toString('base64')}`;
  return { bytes: Buffer.from(text), wrapped };
}

async function rejection(promise: Promise<unknown>): Promise<SecretFetchError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(IntegrityError);
    return error as SecretFetchError;
  }
  throw new Error('expected a rejection');
}

function thrown(action: () => unknown): SecretFetchError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as SecretFetchError).exitCode).toBe(EXIT.integrity);
    return error as SecretFetchError;
  }
  throw new Error('expected an error');
}

describe('secret-fetch envelope', () => {
  it('has the documented magic and key AAD', () => {
    expect(ENVELOPE_MAGIC.toString('latin1')).toBe('\x89SFENV\r\n');
    expect(ENVELOPE_KEY_AAD.toString('hex')).toBe('895346454e560d0a0100');
    expect(ENVELOPE_HEADER_BYTES).toBe(20);
  });

  it('tells an envelope from a raw KMS ciphertext, text and short input', () => {
    expect(isEnvelope(ENVELOPE_MAGIC)).toBe(true);
    expect(isEnvelope(ENVELOPE_MAGIC.subarray(0, 7))).toBe(false);
    expect(isEnvelope(Buffer.from('\x00\x00\x00\x01 a test-server KMS ciphertext'))).toBe(false);
    expect(isEnvelope(Buffer.from('CiQAqD+xX0a real KMS ciphertext begins 0a 24', 'base64'))).toBe(false);
    expect(isEnvelope(Buffer.from('SFENV\r\n\x01'))).toBe(false);
    expect(isEnvelope(Buffer.from('Q2lRQQ==:AAAA'))).toBe(false);
    expect(isEnvelope(Buffer.alloc(0))).toBe(false);
  });

  it('opens an envelope written by hand from the documented layout, unwrapping with the key AAD', async () => {
    const kms = new FakeKms();
    const plaintext = Buffer.from('TOKEN=abc\n'.repeat(10_000));
    const { bytes, wrapped } = await handMadeEnvelope(kms, plaintext);
    const parts = parseEnvelope(bytes, WHAT);
    expect(parts.wrappedKey.equals(wrapped)).toBe(true);
    expect(parts.ciphertext.length).toBe(plaintext.length);
    const secret = await openEnvelope(bytes, kms.unwrap, WHAT);
    expect(secret.reveal().equals(plaintext)).toBe(true);
    expect(kms.aads.at(-1)?.equals(ENVELOPE_KEY_AAD)).toBe(true);
    // The data key is wiped once the data is decrypted.
    expect(kms.unwrapped).toHaveLength(1);
    expect(isZero((kms.unwrapped[0] as Secret).reveal())).toBe(true);
  });

  it('seals what it opens, wiping the data key, and serialises what it parses', async () => {
    const kms = new FakeKms();
    const plaintext = randomBytes(70_000);
    const sealed = await sealEnvelope(plaintext, kms.wrap);
    expect(isEnvelope(sealed)).toBe(true);
    expect(kms.aads[0]?.equals(ENVELOPE_KEY_AAD)).toBe(true);
    expect(isZero(kms.wrapped[0] as Buffer)).toBe(true);
    expect(sealed.length).toBe(20 + parseEnvelope(sealed, WHAT).wrappedKey.length + 12 + 70_000 + 16);
    expect(serialiseEnvelope(parseEnvelope(sealed, WHAT)).equals(sealed)).toBe(true);
    expect((await openEnvelope(sealed, kms.unwrap, WHAT)).reveal().equals(plaintext)).toBe(true);
  });

  it('seals an empty secret too', async () => {
    const kms = new FakeKms();
    const sealed = await sealEnvelope(Buffer.alloc(0), kms.wrap);
    expect((await openEnvelope(sealed, kms.unwrap, WHAT)).byteLength).toBe(0);
  });

  it.each([
    ['the magic', 1],
    ['the version', 8],
    ['the wrapped key length', 11],
    ['the declared ciphertext length', 19],
    ['a byte of the wrapped key', 25],
    ['the nonce', -40],
    ['the ciphertext', -20],
    ['the tag', -1],
  ])('refuses a change to %s', async (_part, at) => {
    const kms = new FakeKms();
    const { bytes } = await handMadeEnvelope(kms, Buffer.from('x'.repeat(100)));
    const i = at < 0 ? bytes.length + at : at;
    bytes[i] = (bytes[i] as number) ^ 0x01;
    const error = await rejection(openEnvelope(bytes, kms.unwrap, WHAT));
    expect(error.message).toMatch(/^(cannot decrypt gs:\/\/vault\/big\.bin: |fake KMS)/);
  });

  it('says the data does not match its data key when the AES-GCM tag fails', async () => {
    const kms = new FakeKms();
    const { bytes } = await handMadeEnvelope(kms, Buffer.from('x'.repeat(100)));
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0x80;
    const error = await rejection(openEnvelope(bytes, kms.unwrap, WHAT));
    expect(error.line).toBe(
      'cannot decrypt gs://vault/big.bin: the data does not match its data key (was the object altered or cut short after it was written?)',
    );
    expect(isZero((kms.unwrapped[0] as Secret).reveal())).toBe(true);
  });

  it('refuses a data key that is not 32 bytes, and still wipes it', async () => {
    const kms = new FakeKms();
    const { bytes } = await handMadeEnvelope(kms, Buffer.from('x'), randomBytes(32));
    const short = async (wrapped: Buffer, aad: Buffer) =>
      new Secret((await kms.unwrap(wrapped, aad)).reveal().subarray(0, 16));
    const error = await rejection(openEnvelope(bytes, short, WHAT));
    expect(error.message).toMatch(/its data key is 16 bytes, not the 32 of an AES-256 key/);
    expect(isZero((kms.unwrapped[0] as Secret).reveal().subarray(0, 16))).toBe(true);
  });

  const header = (version = 1, flags = 0, keyLength = 4, length = 3n) => {
    const h = Buffer.alloc(20);
    ENVELOPE_MAGIC.copy(h);
    h[8] = version;
    h[9] = flags;
    h.writeUInt16BE(keyLength, 10);
    h.writeBigUInt64BE(length, 12);
    return h;
  };
  const whole = (h: Buffer, extra = 0) => Buffer.concat([h, Buffer.alloc(4 + 12 + 3 + 16 + extra)]);

  it.each([
    ['magic only', ENVELOPE_MAGIC, /the envelope is truncated \(8 bytes, shorter than its 20-byte header\)/],
    ['cut in the header', whole(header()).subarray(0, 19), /truncated \(19 bytes, shorter than its 20-byte header\)/],
    ['cut in the data', whole(header()).subarray(0, 40), /truncated \(40 bytes of the 55 its header declares\)/],
    ['cut by a whole tag', whole(header()).subarray(0, 39), /truncated \(39 bytes of the 55/],
    ['trailing bytes', whole(header(), 2), /the envelope has 2 bytes after its end/],
    ['a huge declared length', whole(header(1, 0, 4, 2n ** 64n - 1n)), /truncated \(55 bytes of the \d{20} its/],
    ['version 2', whole(header(2)), /it is a version 2 envelope and this secret-fetch reads version 1 \(upgrade/],
    ['version 0', whole(header(0)), /a version 0 envelope/],
    ['unknown flags', whole(header(1, 1)), /sets flags this version does not define/],
    ['an empty wrapped key', Buffer.concat([header(1, 0, 0, 0n), Buffer.alloc(28)]), /wrapped data key is empty/],
    ['no magic', Buffer.from('not an envelope at all, but long'), /it is not a secret-fetch envelope/],
  ])('refuses %s, naming the object', (_name, bytes, message) => {
    const error = thrown(() => parseEnvelope(bytes, WHAT));
    expect(error.line).toMatch(/^cannot decrypt gs:\/\/vault\/big\.bin: /);
    expect(error.line).toMatch(message);
    expect(error.line).not.toContain('\n');
  });

  it('refuses to seal with a wrapped key that does not fit its 16-bit length', async () => {
    const error = await rejection(sealEnvelope(Buffer.from('x'), async () => Buffer.alloc(70_000)));
    expect(error.message).toMatch(/a wrapped data key of 70000 bytes does not fit an envelope/);
  });
});

describe('berglas body', () => {
  const OBJECT = 'apps/db-password';

  it('opens a body written as berglas writes it, unwrapping with the object name as AAD', async () => {
    const kms = new FakeKms();
    const plaintext = Buffer.from('s3cr3t');
    const { bytes, wrapped } = await handMadeBerglas(kms, plaintext, OBJECT);
    expect(parseBerglasBody(bytes, WHAT).wrappedKey.equals(wrapped)).toBe(true);
    const secret = await openBerglas(bytes, OBJECT, kms.unwrap, WHAT);
    expect(secret.reveal().equals(plaintext)).toBe(true);
    expect(kms.aads.at(-1)?.toString()).toBe(OBJECT);
    expect(isZero((kms.unwrapped[0] as Secret).reveal())).toBe(true);
  });

  it('skips CR and LF inside the base64, as the Go decoder berglas uses does', async () => {
    const kms = new FakeKms();
    const { bytes } = await handMadeBerglas(kms, Buffer.from('v'), OBJECT);
    const text = bytes.toString();
    const folded = Buffer.from(`${text.slice(0, 10)}\r\n${text.slice(10, 70)}\n${text.slice(70)}\n`);
    expect((await openBerglas(folded, OBJECT, kms.unwrap, WHAT)).reveal().toString()).toBe('v');
  });

  it('is refused by KMS under another object name (copied or renamed)', async () => {
    const kms = new FakeKms();
    const { bytes } = await handMadeBerglas(kms, Buffer.from('v'), OBJECT);
    const error = await rejection(openBerglas(bytes, `${OBJECT}-copy`, kms.unwrap, WHAT));
    expect(error.message).toMatch(/fake KMS: the ciphertext does not match/);
  });

  it('seals what it opens, and serialises what it parses', async () => {
    const kms = new FakeKms();
    const sealed = await sealBerglas(Buffer.from('hello'), OBJECT, kms.wrap);
    expect(kms.aads[0]?.toString()).toBe(OBJECT);
    expect(isZero(kms.wrapped[0] as Buffer)).toBe(true);
    expect(sealed.toString()).toMatch(/^[A-Za-z0-9+/]+=*:[A-Za-z0-9+/]+=*$/);
    expect(serialiseBerglasBody(parseBerglasBody(sealed, WHAT)).equals(sealed)).toBe(true);
    expect((await openBerglas(sealed, OBJECT, kms.unwrap, WHAT)).reveal().toString()).toBe('hello');
  });

  it('refuses a tampered body with the GCM failure, never a plaintext', async () => {
    const kms = new FakeKms();
    const { bytes } = await handMadeBerglas(kms, Buffer.from('a longer secret value'), OBJECT);
    const [key, data] = bytes.toString().split(':') as [string, string];
    const raw = Buffer.from(data, 'base64');
    raw[14] = (raw[14] as number) ^ 0x04;
    const tampered = Buffer.from(`${key}:${raw.toString('base64')}`);
    const error = await rejection(openBerglas(tampered, OBJECT, kms.unwrap, WHAT));
    expect(error.line).toBe(
      'cannot decrypt gs://vault/big.bin: the data does not match its data key (was the object altered after berglas wrote it?)',
    );
  });

  const nonceAndTag = Buffer.alloc(28).toString('base64');
  it.each([
    ['no colon', 'QUJD', /it is not a berglas body \(no ':' between the wrapped data key and the data\)/],
    ['an empty body', '', /no ':'/],
    ['a bad character in the key', `QU*D:${nonceAndTag}`, /its wrapped data key is not valid base64/],
    ['a key without its padding', `QUI:${nonceAndTag}`, /its wrapped data key is not valid base64/],
    ['URL-safe base64', `QU-_:${nonceAndTag}`, /its wrapped data key is not valid base64/],
    ['an empty key', `:${nonceAndTag}`, /its wrapped data key is empty/],
    ['a second colon', `QUJD:${nonceAndTag}:QUJD`, /its data is not valid base64/],
    ['padding in the middle of the data', `QUJD:QQ==${nonceAndTag}`, /its data is not valid base64/],
    ['spaces', `QUJD: ${nonceAndTag}`, /its data is not valid base64/],
    [
      'a short nonce and tag',
      `QUJD:${Buffer.alloc(27).toString('base64')}`,
      /its data is 27 bytes, shorter than a 12-byte nonce and a 16-byte tag/,
    ],
    ['no data', 'QUJD:', /its data is 0 bytes/],
    ['non-ASCII', `QUJD:${nonceAndTag}\u00e9`, /its data is not valid base64/],
  ])('refuses %s, naming the object', (_name, text, message) => {
    const error = thrown(() => parseBerglasBody(Buffer.from(text, 'utf8'), WHAT));
    expect(error.message).toMatch(/^cannot decrypt gs:\/\/vault\/big\.bin: /);
    expect(error.message).toMatch(message);
    expect(error.hint).toBe('was the object written by berglas, and not changed since?');
  });
});
