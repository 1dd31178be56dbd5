import * as crypto from 'node:crypto';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  decodeMasterKey,
  decodeUrlsafeBase64,
  NONCE_BYTES,
  openFlaskVault,
  TAG_BYTES,
} from '../../src/decrypt/flask-vault.ts';
import { EXIT, FormatError, IntegrityError, type SecretFetchError } from '../../src/errors.ts';
import { masterKeyText, newKey, sealFlaskVault, sealRaw, urlsafeBase64 } from '../fixtures/flask-vault.ts';

// The real createDecipheriv, wrapped so a test can see the buffers it hands out.
const handedOut: Buffer[] = [];
vi.mock('node:crypto', async (original) => {
  const actual = await original<typeof import('node:crypto')>();
  return {
    ...actual,
    createDecipheriv: (...args: Parameters<typeof actual.createDecipheriv>) => {
      const decipher = actual.createDecipheriv(...args);
      const update = decipher.update.bind(decipher) as (data: Buffer) => Buffer;
      (decipher as unknown as { update: (data: Buffer) => Buffer }).update = (data: Buffer) => {
        const out = update(data);
        handedOut.push(out);
        return out;
      };
      return decipher;
    },
  };
});
afterEach(() => {
  handedOut.length = 0;
});

const CANARY = 'CANARY-fl4sk-v4ult';
const ascii = (text: string) => Buffer.from(text, 'latin1');
const FILE = 'gs://vault/app/credentials.yml.enc';
const KEY_NAME = '--master-key-file /run/keys/master.key';

function open(file: string | Buffer, key: Buffer) {
  return openFlaskVault({ file: Buffer.from(file), key, what: FILE, keyName: KEY_NAME });
}

function caught(action: () => unknown): SecretFetchError {
  try {
    action();
  } catch (error) {
    return error as SecretFetchError;
  }
  throw new Error('expected an error');
}

/** Every printable form of an error: none may hold the canary or the key. */
function printable(error: SecretFetchError): string {
  return [error.line, String(error), error.stack ?? '', inspect(error), JSON.stringify(error)].join('\n');
}

describe('decodeUrlsafeBase64', () => {
  const valid: [string, string][] = [
    ['', ''],
    ['AA', '00'],
    ['AA==', '00'],
    ['AAA', '0000'],
    ['AAA=', '0000'],
    ['AAAA', '000000'],
    ['-_8', 'fbff'],
    ['-_-_', 'fbffbf'],
    ['AQIDBAUG', '010203040506'],
    ['  AQID\n', '010203'],
    ['\r\n\tAQ==\r\n', '01'],
  ];
  it.each(valid)('%j decodes', (text, hex) => {
    const decoded = decodeUrlsafeBase64(ascii(text));
    expect(decoded).toEqual({ bytes: Buffer.from(hex, 'hex') });
  });

  it('agrees with Buffer.from(base64url) on every length and byte value', () => {
    for (let length = 0; length < 70; length++) {
      const bytes = crypto.randomBytes(length);
      const padded = urlsafeBase64(bytes);
      expect(decodeUrlsafeBase64(ascii(padded))).toEqual({ bytes });
      expect(decodeUrlsafeBase64(ascii(padded.replace(/=+$/, '')))).toEqual({ bytes });
    }
  });

  const invalid: [string, string, RegExp][] = [
    ['one character', 'A', /1 base64 characters, a length no base64 text has/],
    ['five characters', 'AAAAA', /5 base64 characters/],
    ['too little padding', 'AA=', /the wrong amount of = padding/],
    ['too much padding', 'AA===', /the wrong amount of = padding/],
    ['padding after a full group', 'AAAA=', /the wrong amount of = padding/],
    ['padding alone', '====', /the wrong amount of = padding/],
    ['padding in the middle', 'A=A=', /'=' padding before the end, at byte 1/],
    ['standard base64 +', 'AA+A', /a '\+' or '\/' at byte 2: standard base64/],
    ['standard base64 /', '/AAA', /a '\+' or '\/' at byte 0/],
    ['a space inside', 'AA AA', /whitespace inside the base64 text, at byte 2/],
    ['a line break inside', 'AAAA\nAAAA', /whitespace inside the base64 text, at byte 4/],
    ['another character', 'AA*A', /a byte outside the urlsafe base64 alphabet at byte 2/],
    ['a NUL', 'AA\0A', /a byte outside the urlsafe base64 alphabet at byte 2/],
    ['unused bits set after 2 characters', 'AB', /unused bits set/],
    ['unused bits set after 3 characters', 'AAB=', /unused bits set/],
  ];
  it.each(invalid)('refuses %s', (_title, text, problem) => {
    const decoded = decodeUrlsafeBase64(ascii(text));
    expect(decoded).toHaveProperty('problem');
    expect((decoded as { problem: string }).problem).toMatch(problem);
  });

  it('refuses bytes that are not ASCII', () => {
    expect(decodeUrlsafeBase64(Buffer.from([0x41, 0x41, 0xc3, 0xa9]))).toEqual({
      problem: 'a byte outside the urlsafe base64 alphabet at byte 2',
    });
  });
});

describe('decodeMasterKey', () => {
  it.each([16, 24, 32] as const)(
    'reads a %d-byte key as flask vault init writes it, with or without a newline',
    (n) => {
      const key = newKey(n);
      expect(decodeMasterKey(ascii(masterKeyText(key)), 'k')).toEqual(key);
      expect(decodeMasterKey(ascii(`${masterKeyText(key)}\n`), 'k')).toEqual(key);
      expect(decodeMasterKey(ascii(masterKeyText(key).replace(/=+$/, '')), 'k')).toEqual(key);
    },
  );

  const bad: [string, string, RegExp][] = [
    ['empty', '', /^SECRET_FETCH_MASTER_KEY is empty$/],
    ['only a newline', '\n', /^SECRET_FETCH_MASTER_KEY is empty$/],
    ['not base64', `${CANARY}!`, /^SECRET_FETCH_MASTER_KEY is not urlsafe base64: a byte outside .* at byte 18$/],
    ['standard base64', `${urlsafeBase64(Buffer.alloc(32, 0xfb))}`.replaceAll('-', '+'), /standard base64/],
    [
      '20 bytes',
      urlsafeBase64(Buffer.from(CANARY.padEnd(20, 'x'))),
      /decodes to 20 bytes, which is not an AES key length/,
    ],
    ['64 bytes', urlsafeBase64(Buffer.alloc(64, 1)), /decodes to 64 bytes/],
    ['a file instead of a key', sealFlaskVault(CANARY, newKey()), /decodes to \d+ bytes/],
  ];
  it.each(bad)('refuses %s with a FormatError that shows no key text', (_title, text, message) => {
    const error = caught(() => decodeMasterKey(ascii(text), 'SECRET_FETCH_MASTER_KEY'));
    expect(error).toBeInstanceOf(FormatError);
    expect(error.exitCode).toBe(EXIT.format);
    expect(error.message).toMatch(message);
    expect(error.hint).toMatch(/urlsafe base64 of a 16, 24 or 32-byte AES key/);
    const all = printable(error);
    expect(all).not.toContain('CANARY');
    if (text.length > 8) expect(all).not.toContain(text.trim().slice(0, 8));
  });
});

describe('openFlaskVault', () => {
  const PLAINTEXT = `---\n# credentials\nSECRET_KEY: ${CANARY}\ndb.password: "p@ss"\n`;

  it.each([16, 24, 32] as const)('opens what the writer sealed with a %d-byte key', (n) => {
    const key = newKey(n);
    const secret = open(sealFlaskVault(PLAINTEXT, key), key);
    expect(secret.reveal().toString('utf8')).toBe(PLAINTEXT);
    expect(String(secret)).toBe('[redacted]');
  });

  it('accepts a trailing newline, surrounding whitespace and a file without padding', () => {
    const key = newKey();
    for (const plaintext of ['a', 'ab', 'abc', PLAINTEXT]) {
      const text = sealFlaskVault(plaintext, key);
      expect(open(`${text}\n`, key).reveal().toString()).toBe(plaintext);
      expect(open(`  ${text}\r\n\n`, key).reveal().toString()).toBe(plaintext);
      expect(open(text.replace(/=+$/, ''), key).reveal().toString()).toBe(plaintext);
    }
  });

  it('opens an empty plaintext (authenticated: a real empty file, not a failure)', () => {
    const key = newKey(16);
    expect(open(sealFlaskVault('', key), key).byteLength).toBe(0);
  });

  /** Opening must fail with an IntegrityError matching `message`, showing neither plaintext nor key. */
  function expectIntegrity(file: string | Buffer, key: Buffer, message: RegExp): IntegrityError {
    const error = caught(() => open(file, key));
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.exitCode).toBe(EXIT.integrity);
    expect(error.message).toMatch(message);
    expect(error.message.startsWith(`cannot decrypt ${FILE}`)).toBe(true);
    const all = printable(error);
    expect(all).not.toContain('CANARY');
    expect(all).not.toContain(masterKeyText(key).slice(0, 12));
    return error as IntegrityError;
  }

  it('refuses a wrong key of every length, and zeroes what GCM handed out before the tag check', () => {
    for (const n of [16, 24, 32] as const) {
      const file = sealFlaskVault(PLAINTEXT, newKey(n));
      handedOut.length = 0;
      const error = expectIntegrity(
        file,
        newKey(n),
        /with the master key from --master-key-file \/run\/keys\/master\.key: the file does not match this key$/,
      );
      expect(error.hint).toMatch(/another master\.key, or altered/);
      expect(handedOut).toHaveLength(1);
      expect(handedOut[0]?.length).toBe(Buffer.byteLength(PLAINTEXT));
      expect(handedOut[0]?.every((b) => b === 0)).toBe(true);
    }
  });

  it('refuses a key of the right length for another AES size', () => {
    const key = newKey(32);
    expectIntegrity(sealFlaskVault(PLAINTEXT, key), key.subarray(0, 16), /the file does not match this key/);
  });

  it('refuses every single flipped bit: in the nonce, the ciphertext and the tag', () => {
    const key = newKey(16);
    const sealed = sealRaw(Buffer.from(PLAINTEXT), key);
    for (const at of [0, NONCE_BYTES - 1, NONCE_BYTES, NONCE_BYTES + 5, sealed.length - TAG_BYTES, sealed.length - 1]) {
      for (const bit of [0x01, 0x80]) {
        const altered = Buffer.from(sealed);
        altered[at] = (altered[at] as number) ^ bit;
        expectIntegrity(urlsafeBase64(altered), key, /the file does not match this key/);
      }
    }
  });

  it('refuses a flipped character of the base64 text', () => {
    const key = newKey();
    const text = sealFlaskVault(PLAINTEXT, key);
    const at = 30;
    const flipped = `${text.slice(0, at)}${text[at] === 'A' ? 'B' : 'A'}${text.slice(at + 1)}`;
    expectIntegrity(flipped, key, /the file does not match this key/);
  });

  it('refuses a file cut short, wherever it is cut', () => {
    const key = newKey();
    const text = sealFlaskVault(PLAINTEXT, key);
    for (let keep = 1; keep < text.length - 2; keep += 3) {
      expectIntegrity(
        text.slice(0, keep),
        key,
        /does not match this key|fewer than a nonce and a tag|a length no base64|unused bits set \(cut short/,
      );
    }
    expectIntegrity(
      urlsafeBase64(sealRaw(Buffer.from('x'), key).subarray(0, 27)),
      key,
      /it holds 27 bytes, fewer than a nonce and a tag \(28\)/,
    );
  });

  it('refuses bytes appended to the file', () => {
    const key = newKey();
    expectIntegrity(
      urlsafeBase64(Buffer.concat([sealRaw(Buffer.from(PLAINTEXT), key), Buffer.from('x')])),
      key,
      /does not match/,
    );
  });

  it('refuses an empty file, and one of whitespace only', () => {
    const key = newKey();
    for (const file of ['', '\n', '  \r\n']) {
      const error = expectIntegrity(file, key, /: it is empty$/);
      expect(error.hint).toMatch(/flask vault init, edit or encrypt/);
    }
  });

  it('refuses a file that is not base64: the plaintext itself, standard base64', () => {
    const key = newKey();
    const error = expectIntegrity(
      PLAINTEXT,
      key,
      /it is not urlsafe base64 \(whitespace inside the base64 text, at byte 3\)$/,
    );
    expect(error.hint).toMatch(/A file that is not encrypted needs no key: drop \.enc from its name/);
    const standard = Buffer.from(sealRaw(Buffer.alloc(60, 0xff), key)).toString('base64');
    expect(standard).toMatch(/[+/]/);
    expectIntegrity(standard, key, /standard base64/);
  });

  it('refuses a key that is not 16, 24 or 32 bytes, before reading the file', () => {
    const error = caught(() => open(sealFlaskVault(PLAINTEXT, newKey()), Buffer.alloc(20)));
    expect(error).toBeInstanceOf(FormatError);
    expect(error.message).toBe(
      'the master key from --master-key-file /run/keys/master.key is 20 bytes, not 16, 24 or 32',
    );
  });
});
