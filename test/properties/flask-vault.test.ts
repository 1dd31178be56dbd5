// Flask-Vault files: whatever the bytes, opening one gives the plaintext the writer sealed or an
// IntegrityError (never another error, never a wrong result); a master key is 16, 24 or 32 bytes
// or a FormatError. The writer is test/fixtures/flask-vault.ts (node:crypto directly).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeMasterKey, openFlaskVault } from '../../src/decrypt/flask-vault.ts';
import { FormatError, IntegrityError } from '../../src/errors.ts';
import { masterKeyText, sealFlaskVault } from '../fixtures/flask-vault.ts';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const key = fc.constantFrom(16, 24, 32).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));
const plaintext = fc.uint8Array({ maxLength: 300 });
const whitespace = fc.constantFrom('', '\n', '\r\n', ' \n', '\n\n');

function open(file: Uint8Array | string, aesKey: Uint8Array) {
  return openFlaskVault({ file: Buffer.from(file), key: Buffer.from(aesKey), what: 'f.yml.enc', keyName: 'k' });
}

function failure(action: () => unknown): unknown {
  try {
    action();
    return undefined;
  } catch (error) {
    return error;
  }
}

describe('flask-vault round trip', () => {
  it('opens what the writer sealed, with any key size, trailing whitespace or padding', () => {
    fc.assert(
      fc.property(plaintext, key, whitespace, fc.boolean(), (data, aesKey, tail, unpadded) => {
        const text = sealFlaskVault(data, aesKey);
        const file = `${unpadded ? text.replace(/=+$/, '') : text}${tail}`;
        expect(open(file, aesKey).reveal()).toEqual(Buffer.from(data));
      }),
      { numRuns: 300 },
    );
  });

  it('reads back every master key the writer wrote', () => {
    fc.assert(
      fc.property(key, whitespace, (aesKey, tail) => {
        expect(decodeMasterKey(Buffer.from(`${masterKeyText(aesKey)}${tail}`), 'k')).toEqual(Buffer.from(aesKey));
      }),
    );
  });
});

describe('flask-vault: altered files and wrong keys', () => {
  it('refuses any changed character with an IntegrityError', () => {
    fc.assert(
      fc.property(plaintext, key, fc.nat(), fc.constantFrom(...ALPHABET), (data, aesKey, at, replacement) => {
        const text = sealFlaskVault(data, aesKey).replace(/=+$/, '');
        const i = at % text.length;
        fc.pre(text[i] !== replacement);
        const altered = `${text.slice(0, i)}${replacement}${text.slice(i + 1)}`;
        expect(failure(() => open(altered, aesKey))).toBeInstanceOf(IntegrityError);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a file cut short anywhere, or with characters added', () => {
    fc.assert(
      fc.property(
        plaintext,
        key,
        fc.nat(),
        fc.string({ unit: fc.constantFrom(...ALPHABET), minLength: 1, maxLength: 8 }),
        (data, aesKey, at, extra) => {
          const text = sealFlaskVault(data, aesKey).replace(/=+$/, '');
          expect(failure(() => open(text.slice(0, at % text.length), aesKey))).toBeInstanceOf(IntegrityError);
          expect(failure(() => open(`${text}${extra}`, aesKey))).toBeInstanceOf(IntegrityError);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses another key', () => {
    fc.assert(
      fc.property(plaintext, key, key, (data, sealedWith, openedWith) => {
        fc.pre(Buffer.compare(Buffer.from(sealedWith), Buffer.from(openedWith)) !== 0);
        expect(failure(() => open(sealFlaskVault(data, sealedWith), openedWith))).toBeInstanceOf(IntegrityError);
      }),
      { numRuns: 200 },
    );
  });
});

describe('flask-vault: arbitrary input', () => {
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    fc.string({ unit: fc.constantFrom(...`${ALPHABET}=+/ \n\r\t*.`), maxLength: 120 }).map((s) => Buffer.from(s)),
  );

  it('opening throws nothing but an IntegrityError, and never succeeds', () => {
    fc.assert(
      fc.property(bytes, key, (file, aesKey) => {
        expect(failure(() => open(file, aesKey))).toBeInstanceOf(IntegrityError);
      }),
      { numRuns: 1000 },
    );
  });

  it('a master key is 16, 24 or 32 bytes, or a FormatError that does not quote it', () => {
    fc.assert(
      fc.property(bytes, (text) => {
        const error = failure(() => {
          const decoded = decodeMasterKey(text, 'SECRET_FETCH_MASTER_KEY');
          expect([16, 24, 32]).toContain(decoded.length);
        });
        if (error === undefined) return;
        expect(error).toBeInstanceOf(FormatError);
        const printed = (error as FormatError).line;
        const body = Buffer.from(text).toString('latin1').trim();
        if (body.length >= 6) expect(printed).not.toContain(body);
      }),
      { numRuns: 1000 },
    );
  });
});
