// Files written by the Flask-Vault CLI (`flask vault init`, `edit`, `encrypt`): credentials.yml.enc
// and any FILE.enc hold the urlsafe base64 of `12-byte nonce ‖ AES-GCM ciphertext ‖ 16-byte tag`,
// with no associated data; master.key holds the urlsafe base64 of the AES key (16, 24 or 32
// bytes: AES-128, -192 or -256). Pure: bytes in, bytes out, nothing read or written here.
//
// Base64 is read strictly, unlike Python's decoder (which skips any byte outside its alphabet):
// only A-Z a-z 0-9 - _, '=' padding optional but exact when present, and the unused low bits of
// the last character zero, so that exactly one text decodes to given bytes. Whitespace is allowed
// only around the text, for the newline an editor adds at the end of a file.

import { type CipherGCMTypes, createDecipheriv } from 'node:crypto';
import { FormatError, IntegrityError } from '../errors.ts';
import { Secret } from '../secret.ts';

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** The cipher for each AES key length in bytes. */
const CIPHERS: Readonly<Record<number, CipherGCMTypes>> = { 16: 'aes-128-gcm', 24: 'aes-192-gcm', 32: 'aes-256-gcm' };
export const KEY_BYTES: readonly number[] = Object.keys(CIPHERS).map(Number);

const MASTER_KEY_HINT =
  'master.key holds the urlsafe base64 of a 16, 24 or 32-byte AES key, as flask vault init writes it';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const SEXTETS = new Int8Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) SEXTETS[ALPHABET.charCodeAt(i)] = i;

type Decoded = { readonly bytes: Buffer } | { readonly problem: string };

const isSpace = (byte: number | undefined): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;

/** Whether `input` holds nothing but whitespace. */
export function isBlank(input: Uint8Array): boolean {
  return input.every((byte) => isSpace(byte));
}

/**
 * Strict urlsafe base64 (RFC 4648 section 5) of `input`, or what is wrong with it, in words that
 * give a byte offset and never the text.
 */
export function decodeUrlsafeBase64(input: Uint8Array): Decoded {
  let start = 0;
  let end = input.length;
  while (start < end && isSpace(input[start])) start++;
  while (end > start && isSpace(input[end - 1])) end--;
  let body = end;
  while (body > start && input[body - 1] === 0x3d) body--;
  for (let i = start; i < body; i++) {
    const byte = input[i] as number;
    if ((SEXTETS[byte] as number) >= 0) continue;
    if (byte === 0x2b || byte === 0x2f) {
      return {
        problem: `a '+' or '/' at byte ${i}: standard base64, where Flask-Vault writes urlsafe base64 (- and _)`,
      };
    }
    if (byte === 0x3d) return { problem: `'=' padding before the end, at byte ${i}` };
    if (isSpace(byte)) return { problem: `whitespace inside the base64 text, at byte ${i}` };
    return { problem: `a byte outside the urlsafe base64 alphabet at byte ${i}` };
  }
  const length = body - start;
  const padding = end - body;
  if (length % 4 === 1) return { problem: `${length} base64 characters, a length no base64 text has (cut short?)` };
  if (padding !== 0 && padding !== (4 - (length % 4)) % 4) return { problem: 'the wrong amount of = padding' };
  const last = length % 4 === 0 ? 0 : (SEXTETS[input[body - 1] as number] as number);
  if ((length % 4 === 2 && last & 0x0f) || (length % 4 === 3 && last & 0x03)) {
    return { problem: 'a last character with unused bits set (cut short or altered?)' };
  }

  const bytes = Buffer.alloc(Math.floor((length * 3) / 4));
  let out = 0;
  let bits = 0;
  let count = 0;
  for (let i = start; i < body; i++) {
    bits = (bits << 6) | (SEXTETS[input[i] as number] as number);
    count += 6;
    if (count >= 8) {
      count -= 8;
      bytes[out++] = (bits >> count) & 0xff;
      bits &= (1 << count) - 1;
    }
  }
  return { bytes };
}

/**
 * The AES key in a master key's text (`what` names where it came from: a file or a variable).
 * The caller zeroes the returned buffer once it is used.
 */
export function decodeMasterKey(text: Uint8Array, what: string): Buffer {
  if (isBlank(text)) throw new FormatError(`${what} is empty`, MASTER_KEY_HINT);
  const decoded = decodeUrlsafeBase64(text);
  if ('problem' in decoded) throw new FormatError(`${what} is not urlsafe base64: ${decoded.problem}`, MASTER_KEY_HINT);
  if (!KEY_BYTES.includes(decoded.bytes.length)) {
    const length = decoded.bytes.length;
    decoded.bytes.fill(0);
    throw new FormatError(`${what} decodes to ${length} bytes, which is not an AES key length`, MASTER_KEY_HINT);
  }
  return decoded.bytes;
}

export interface OpenRequest {
  /** The file's contents: the urlsafe base64 text Flask-Vault wrote. */
  readonly file: Uint8Array;
  /** The AES key (16, 24 or 32 bytes), from decodeMasterKey; not zeroed here. */
  readonly key: Buffer;
  /** Names the file in messages. */
  readonly what: string;
  /** Names the master key in messages (the flag or variable it came from). */
  readonly keyName: string;
}

/** Decrypts a Flask-Vault file; a wrong key or an altered file is an IntegrityError, never a result. */
export function openFlaskVault(request: OpenRequest): Secret {
  const { file, key, what, keyName } = request;
  const hint = 'give the file that flask vault init, edit or encrypt wrote';
  const cipher = CIPHERS[key.length];
  if (cipher === undefined) {
    throw new FormatError(`the master key from ${keyName} is ${key.length} bytes, not 16, 24 or 32`, MASTER_KEY_HINT);
  }
  if (isBlank(file)) throw new IntegrityError(`cannot decrypt ${what}: it is empty`, hint);
  const decoded = decodeUrlsafeBase64(file);
  if ('problem' in decoded) {
    throw new IntegrityError(
      `cannot decrypt ${what}: it is not urlsafe base64 (${decoded.problem})`,
      'is it a Flask-Vault file? A file that is not encrypted needs no key: drop .enc from its name',
    );
  }
  const sealed = decoded.bytes;
  try {
    if (sealed.length < NONCE_BYTES + TAG_BYTES) {
      throw new IntegrityError(
        `cannot decrypt ${what}: it holds ${sealed.length} bytes, fewer than a nonce and a tag (${NONCE_BYTES + TAG_BYTES})`,
        'the file was cut short or is not a Flask-Vault file; restore it from where it was written',
      );
    }
    const decipher = createDecipheriv(cipher, key, sealed.subarray(0, NONCE_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    // GCM hands out plaintext before it checks the tag: it is zeroed unless the tag matches.
    const plaintext = decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
    try {
      decipher.final(); // GCM returns no more bytes here; it checks the tag
    } catch {
      plaintext.fill(0);
      throw new IntegrityError(
        `cannot decrypt ${what} with the master key from ${keyName}: the file does not match this key`,
        'was it encrypted with another master.key, or altered after encryption?',
      );
    }
    return new Secret(plaintext);
  } finally {
    sealed.fill(0);
  }
}
