// Properties of the envelope layouts (src/decrypt/envelope.ts): arbitrary bytes, including bytes
// that start like an envelope or look like a berglas body, are either parsed or refused with one
// of the project's typed errors; seal then open gives back the plaintext; and a change to any
// byte of a sealed secret is refused, never answered with another plaintext.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ENVELOPE_MAGIC,
  openBerglas,
  openEnvelope,
  parseBerglasBody,
  parseEnvelope,
  sealBerglas,
  sealEnvelope,
  serialiseBerglasBody,
  serialiseEnvelope,
} from '../../src/decrypt/envelope.ts';
import { IntegrityError, SecretFetchError } from '../../src/errors.ts';
import { Secret } from '../../src/secret.ts';
import { FakeKms, isZero } from '../decrypt/fake-kms.ts';

const WHAT = 'gs://vault/o';
const bytes = (maxLength = 200) => fc.uint8Array({ maxLength }).map((b) => Buffer.from(b));

/** Bytes that pass the magic check, with small plausible header fields, so parsing goes deep. */
const envelopeLike = fc
  .tuple(
    fc.constantFrom(0, 1, 1, 1, 2, 255),
    fc.constantFrom(0, 0, 0, 1, 0x80),
    fc.integer({ min: 0, max: 80 }),
    fc.oneof(fc.bigInt({ min: 0n, max: 100n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    bytes(),
  )
  .map(([version, flags, keyLength, length, rest]) => {
    const header = Buffer.alloc(20);
    ENVELOPE_MAGIC.copy(header);
    header[8] = version;
    header[9] = flags;
    header.writeUInt16BE(keyLength, 10);
    header.writeBigUInt64BE(length, 12);
    return Buffer.concat([header, rest]);
  });

/** Envelopes whose lengths all agree, so opening reaches the key and the AES-GCM check. */
const wellFormed = fc
  .tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 60 }))
  .chain(([keyLength, length]) =>
    fc.uint8Array({ minLength: keyLength + 28 + length, maxLength: keyLength + 28 + length }).map((rest) => {
      const header = Buffer.alloc(20);
      ENVELOPE_MAGIC.copy(header);
      header[8] = 1;
      header.writeUInt16BE(keyLength, 10);
      header.writeBigUInt64BE(BigInt(length), 12);
      return Buffer.concat([header, rest]);
    }),
  );

const BASE64_PIECES = ['QUJD', 'QQ==', 'QUI=', 'A', '=', '==', '+/', '-_', ':', '\r\n', '\n', ' ', 'é', '\0'];
/** Text built from base64 pieces and separators, so some of it is a well-formed body. */
const berglasLike = fc
  .array(fc.oneof(fc.constantFrom(...BASE64_PIECES), fc.uint8Array({ minLength: 28, maxLength: 60 }).map(b64)), {
    maxLength: 12,
  })
  .map((parts) => Buffer.from(parts.join(''), 'utf8'));

function b64(b: Uint8Array): string {
  return Buffer.from(b).toString('base64');
}

function outcome(action: () => unknown): unknown {
  try {
    action();
    return undefined;
  } catch (error) {
    return error;
  }
}

async function settle(promise: Promise<Secret>): Promise<Secret | unknown> {
  try {
    return await promise;
  } catch (error) {
    return error;
  }
}

const aKey = fc.oneof(
  bytes(40),
  fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b)),
);

/** An unwrap that answers any wrapped key with arbitrary bytes: the layout must cope with any key. */
const anyKey = (key: Buffer) => async () => new Secret(Buffer.from(key));

describe('parsing arbitrary bytes', () => {
  it('parseEnvelope throws nothing but SecretFetchError', () => {
    fc.assert(
      fc.property(fc.oneof(bytes(), envelopeLike, wellFormed), (data) => {
        const error = outcome(() => parseEnvelope(data, WHAT));
        if (error !== undefined) expect(error).toBeInstanceOf(SecretFetchError);
      }),
      { numRuns: 1000 },
    );
  });

  it('parseBerglasBody throws nothing but SecretFetchError', () => {
    fc.assert(
      fc.property(fc.oneof(bytes(), berglasLike), (data) => {
        const error = outcome(() => parseBerglasBody(data, WHAT));
        if (error !== undefined) expect(error).toBeInstanceOf(SecretFetchError);
      }),
      { numRuns: 1000 },
    );
  });

  it('opening rejects with nothing but SecretFetchError, whatever key KMS answers', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(bytes(), envelopeLike, wellFormed, berglasLike), aKey, async (data, key) => {
        for (const result of [
          await settle(openEnvelope(data, anyKey(key), WHAT)),
          await settle(openBerglas(data, 'o', anyKey(key), WHAT)),
        ]) {
          if (!(result instanceof Secret)) expect(result).toBeInstanceOf(SecretFetchError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('seal, then open', () => {
  const plaintexts = fc.oneof(
    bytes(2000),
    fc.integer({ min: 65_530, max: 65_540 }).map((n) => Buffer.alloc(n, 7)),
  );

  it('gives back the plaintext, and wipes the data keys on both sides', async () => {
    await fc.assert(
      fc.asyncProperty(plaintexts, fc.string({ minLength: 1, maxLength: 30 }), async (plaintext, object) => {
        const kms = new FakeKms();
        const envelope = await sealEnvelope(plaintext, kms.wrap);
        const body = await sealBerglas(plaintext, object, kms.wrap);
        expect((await openEnvelope(envelope, kms.unwrap, WHAT)).reveal().equals(plaintext)).toBe(true);
        expect((await openBerglas(body, object, kms.unwrap, WHAT)).reveal().equals(plaintext)).toBe(true);
        for (const key of [...kms.wrapped, ...kms.unwrapped.map((s) => s.reveal())]) expect(isZero(key)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('serialise(parse(x)) is x for every sealed secret', async () => {
    await fc.assert(
      fc.asyncProperty(bytes(500), async (plaintext) => {
        const kms = new FakeKms();
        const envelope = await sealEnvelope(plaintext, kms.wrap);
        const body = await sealBerglas(plaintext, 'o', kms.wrap);
        expect(serialiseEnvelope(parseEnvelope(envelope, WHAT)).equals(envelope)).toBe(true);
        expect(serialiseBerglasBody(parseBerglasBody(body, WHAT)).equals(body)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses an envelope with any one byte changed', async () => {
    await fc.assert(
      fc.asyncProperty(bytes(300), fc.nat(), fc.integer({ min: 1, max: 255 }), async (plaintext, at, mask) => {
        const kms = new FakeKms();
        const envelope = await sealEnvelope(plaintext, kms.wrap);
        const i = at % envelope.length;
        envelope[i] = (envelope[i] as number) ^ mask;
        const result = await settle(openEnvelope(envelope, kms.unwrap, WHAT));
        expect(result).toBeInstanceOf(IntegrityError);
      }),
      { numRuns: 300 },
    );
  });

  it('never opens a changed berglas body to another plaintext', async () => {
    // Base64 has slack (the unused low bits of a last character), so a changed body may decode to
    // the same bytes and open to the same plaintext; anything else must be refused.
    await fc.assert(
      fc.asyncProperty(bytes(300), fc.nat(), fc.integer({ min: 1, max: 255 }), async (plaintext, at, mask) => {
        const kms = new FakeKms();
        const body = await sealBerglas(plaintext, 'o', kms.wrap);
        const i = at % body.length;
        body[i] = (body[i] as number) ^ mask;
        const result = await settle(openBerglas(body, 'o', kms.unwrap, WHAT));
        if (result instanceof Secret) expect(result.reveal().equals(plaintext)).toBe(true);
        else expect(result).toBeInstanceOf(SecretFetchError);
      }),
      { numRuns: 300 },
    );
  });
});
