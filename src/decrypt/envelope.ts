// Envelope encryption: a fresh 256-bit data key (DEK) encrypts the secret locally with
// AES-256-GCM, and Cloud KMS encrypts ("wraps") only the DEK, so a secret of any size costs one
// small KMS call. Two layouts: berglas's text body (berglas:// sources), and secret-fetch's own
// binary envelope for objects beyond KMS's 64 KiB plaintext limit. The layouts are pure functions
// over bytes; the KMS calls come in as functions, so nothing here does I/O.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { IntegrityError } from '../errors.ts';
import { Secret } from '../secret.ts';

export const DEK_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

/**
 * The first 8 bytes of every secret-fetch envelope: 0x89 "SFENV" CR LF. The leading byte is not
 * ASCII, so no text (a berglas body, base64, a dotenv file) starts with it, and the CR LF catches
 * a transfer that rewrote line endings, as PNG's signature does.
 */
export const ENVELOPE_MAGIC = Buffer.from([0x89, 0x53, 0x46, 0x45, 0x4e, 0x56, 0x0d, 0x0a]);
export const ENVELOPE_VERSION = 1;
/** Magic, version, flags, wrapped-key length (uint16), ciphertext length (uint64). */
export const ENVELOPE_HEADER_BYTES = 20;
/**
 * What KMS binds the wrapped DEK to: the magic, the version and the flags. A DEK wrapped for
 * this format and version unwraps for nothing else (berglas binds its DEKs to object names).
 */
export const ENVELOPE_KEY_AAD = Buffer.concat([ENVELOPE_MAGIC, Buffer.from([ENVELOPE_VERSION, 0])]);

/** KMS Decrypt of a wrapped DEK under `aad`; resolves to the DEK, which the caller wipes. */
export type UnwrapKey = (wrappedKey: Buffer, aad: Buffer) => Promise<Secret>;
/** KMS Encrypt of a DEK under `aad`; resolves to the wrapped DEK. */
export type WrapKey = (key: Buffer, aad: Buffer) => Promise<Buffer>;

export interface SealedParts {
  /** The KMS ciphertext of the DEK. */
  readonly wrappedKey: Buffer;
  readonly nonce: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

export interface EnvelopeParts extends SealedParts {
  /** The additional authenticated data the DEK was wrapped with. */
  readonly keyAad: Buffer;
  /** The AES-GCM additional authenticated data: every byte before the nonce. */
  readonly dataAad: Buffer;
}

/** True when `data` starts with the envelope magic; anything else is a raw KMS ciphertext. */
export function isEnvelope(data: Uint8Array): boolean {
  return data.length >= ENVELOPE_MAGIC.length && ENVELOPE_MAGIC.equals(data.subarray(0, ENVELOPE_MAGIC.length));
}

/** Splits an envelope into its parts (views into `data`), checking every length. */
export function parseEnvelope(data: Buffer, what: string): EnvelopeParts {
  const fix = 'was it altered or cut short after it was written?';
  if (!isEnvelope(data)) {
    throw new IntegrityError(`cannot decrypt ${what}: it is not a secret-fetch envelope`, fix);
  }
  if (data.length < ENVELOPE_HEADER_BYTES) {
    throw new IntegrityError(
      `cannot decrypt ${what}: the envelope is truncated (${data.length} bytes, shorter than its ${ENVELOPE_HEADER_BYTES}-byte header)`,
      fix,
    );
  }
  const version = data[8] as number;
  if (version !== ENVELOPE_VERSION) {
    throw new IntegrityError(
      `cannot decrypt ${what}: it is a version ${version} envelope and this secret-fetch reads version ${ENVELOPE_VERSION}`,
      'upgrade secret-fetch, or rewrite the object in version 1',
    );
  }
  if (data[9] !== 0) {
    throw new IntegrityError(`cannot decrypt ${what}: the envelope sets flags this version does not define`, fix);
  }
  const keyLength = data.readUInt16BE(10);
  if (keyLength === 0)
    throw new IntegrityError(`cannot decrypt ${what}: the envelope's wrapped data key is empty`, fix);
  const declared = data.readBigUInt64BE(12);
  const expected = BigInt(ENVELOPE_HEADER_BYTES + keyLength + NONCE_BYTES + TAG_BYTES) + declared;
  if (BigInt(data.length) < expected) {
    throw new IntegrityError(
      `cannot decrypt ${what}: the envelope is truncated (${data.length} bytes of the ${expected} its header declares)`,
      fix,
    );
  }
  if (BigInt(data.length) > expected) {
    throw new IntegrityError(
      `cannot decrypt ${what}: the envelope has ${BigInt(data.length) - expected} bytes after its end`,
      fix,
    );
  }
  const keyEnd = ENVELOPE_HEADER_BYTES + keyLength;
  const dataEnd = data.length - TAG_BYTES;
  return {
    keyAad: data.subarray(0, ENVELOPE_KEY_AAD.length),
    dataAad: data.subarray(0, keyEnd),
    wrappedKey: data.subarray(ENVELOPE_HEADER_BYTES, keyEnd),
    nonce: data.subarray(keyEnd, keyEnd + NONCE_BYTES),
    ciphertext: data.subarray(keyEnd + NONCE_BYTES, dataEnd),
    tag: data.subarray(dataEnd),
  };
}

/** The envelope's bytes before the nonce (header and wrapped DEK): the AES-GCM AAD. */
export function envelopeDataAad(wrappedKey: Buffer, ciphertextLength: number): Buffer {
  if (wrappedKey.length === 0 || wrappedKey.length > 0xffff) {
    throw new IntegrityError(
      `a wrapped data key of ${wrappedKey.length} bytes does not fit an envelope (1 to 65535)`,
      'is the key a symmetric Cloud KMS key?',
    );
  }
  const header = Buffer.alloc(ENVELOPE_HEADER_BYTES);
  ENVELOPE_KEY_AAD.copy(header, 0);
  header.writeUInt16BE(wrappedKey.length, 10);
  header.writeBigUInt64BE(BigInt(ciphertextLength), 12);
  return Buffer.concat([header, wrappedKey]);
}

export function serialiseEnvelope(parts: SealedParts): Buffer {
  checkSealedLengths(parts);
  const aad = envelopeDataAad(parts.wrappedKey, parts.ciphertext.length);
  return Buffer.concat([aad, parts.nonce, parts.ciphertext, parts.tag]);
}

/**
 * Splits a berglas body, `base64(wrapped DEK) ":" base64(nonce ‖ ciphertext ‖ tag)`, standard
 * base64 with padding. CR and LF inside the base64 are skipped, as Go's decoder (berglas's) does.
 */
export function parseBerglasBody(data: Buffer, what: string): SealedParts {
  const fix = 'was the object written by berglas, and not changed since?';
  const text = data.toString('latin1');
  const colon = text.indexOf(':');
  if (colon === -1) {
    throw new IntegrityError(
      `cannot decrypt ${what}: it is not a berglas body (no ':' between the wrapped data key and the data)`,
      fix,
    );
  }
  const wrappedKey = strictBase64(text.slice(0, colon));
  if (wrappedKey === undefined) {
    throw new IntegrityError(`cannot decrypt ${what}: its wrapped data key is not valid base64`, fix);
  }
  if (wrappedKey.length === 0) throw new IntegrityError(`cannot decrypt ${what}: its wrapped data key is empty`, fix);
  const sealed = strictBase64(text.slice(colon + 1));
  if (sealed === undefined) throw new IntegrityError(`cannot decrypt ${what}: its data is not valid base64`, fix);
  if (sealed.length < NONCE_BYTES + TAG_BYTES) {
    throw new IntegrityError(
      `cannot decrypt ${what}: its data is ${sealed.length} bytes, shorter than a ${NONCE_BYTES}-byte nonce and a ${TAG_BYTES}-byte tag`,
      fix,
    );
  }
  return {
    wrappedKey,
    nonce: sealed.subarray(0, NONCE_BYTES),
    ciphertext: sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES),
    tag: sealed.subarray(sealed.length - TAG_BYTES),
  };
}

export function serialiseBerglasBody(parts: SealedParts): Buffer {
  checkSealedLengths(parts);
  const sealed = Buffer.concat([parts.nonce, parts.ciphertext, parts.tag]);
  return Buffer.from(`${parts.wrappedKey.toString('base64')}:${sealed.toString('base64')}`, 'latin1');
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64 with padding, or undefined: Buffer.from alone would skip any invalid byte. */
function strictBase64(text: string): Buffer | undefined {
  const bare = text.replace(/[\r\n]/g, '');
  return BASE64.test(bare) ? Buffer.from(bare, 'base64') : undefined;
}

/** Opens a secret-fetch envelope: unwraps its DEK through KMS and decrypts locally. */
export async function openEnvelope(data: Buffer, unwrap: UnwrapKey, what: string): Promise<Secret> {
  const parts = parseEnvelope(data, what);
  const key = await unwrap(parts.wrappedKey, parts.keyAad);
  return decryptLocally(parts, key, parts.dataAad, what, 'was the object altered or cut short after it was written?');
}

/** Opens a berglas body: the DEK is bound to the object name (KMS AAD); the data has no AAD. */
export async function openBerglas(data: Buffer, objectName: string, unwrap: UnwrapKey, what: string): Promise<Secret> {
  const parts = parseBerglasBody(data, what);
  const key = await unwrap(parts.wrappedKey, Buffer.from(objectName, 'utf8'));
  return decryptLocally(parts, key, undefined, what, 'was the object altered after berglas wrote it?');
}

/** Seals `plaintext` in a secret-fetch envelope under a fresh DEK, wrapped by `wrap`. */
export async function sealEnvelope(plaintext: Uint8Array, wrap: WrapKey): Promise<Buffer> {
  const key = randomBytes(DEK_BYTES);
  try {
    const wrappedKey = await wrap(key, ENVELOPE_KEY_AAD);
    const aad = envelopeDataAad(wrappedKey, plaintext.length);
    const { nonce, ciphertext, tag } = encryptLocally(key, plaintext, aad);
    return Buffer.concat([aad, nonce, ciphertext, tag]);
  } finally {
    key.fill(0);
  }
}

/** Seals `plaintext` as berglas does for the object `objectName`. */
export async function sealBerglas(plaintext: Uint8Array, objectName: string, wrap: WrapKey): Promise<Buffer> {
  const key = randomBytes(DEK_BYTES);
  try {
    const wrappedKey = await wrap(key, Buffer.from(objectName, 'utf8'));
    return serialiseBerglasBody({ wrappedKey, ...encryptLocally(key, plaintext, undefined) });
  } finally {
    key.fill(0);
  }
}

function encryptLocally(key: Buffer, plaintext: Uint8Array, aad: Buffer | undefined) {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  if (aad !== undefined) cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce, ciphertext, tag: cipher.getAuthTag() };
}

function decryptLocally(parts: SealedParts, dek: Secret, aad: Buffer | undefined, what: string, fix: string): Secret {
  const key = dek.reveal();
  try {
    if (key.length !== DEK_BYTES) {
      throw new IntegrityError(
        `cannot decrypt ${what}: its data key is ${key.length} bytes, not the ${DEK_BYTES} of an AES-256 key`,
        'was it written by another tool?',
      );
    }
    const decipher = createDecipheriv('aes-256-gcm', key, parts.nonce, { authTagLength: TAG_BYTES });
    decipher.setAuthTag(parts.tag);
    if (aad !== undefined) decipher.setAAD(aad);
    const plaintext = decipher.update(parts.ciphertext);
    let rest: Buffer;
    try {
      rest = decipher.final(); // checks the tag; GCM returns no bytes here
    } catch {
      plaintext.fill(0); // released before the tag was checked: never let it out
      throw new IntegrityError(`cannot decrypt ${what}: the data does not match its data key`, fix);
    }
    if (rest.length === 0) return new Secret(plaintext);
    const whole = Buffer.concat([plaintext, rest]);
    plaintext.fill(0);
    rest.fill(0);
    return new Secret(whole);
  } finally {
    dek.wipe();
  }
}

function checkSealedLengths(parts: SealedParts): void {
  if (parts.nonce.length !== NONCE_BYTES || parts.tag.length !== TAG_BYTES) {
    throw new IntegrityError(
      `a sealed secret needs a ${NONCE_BYTES}-byte nonce and a ${TAG_BYTES}-byte tag, not ${parts.nonce.length} and ${parts.tag.length}`,
    );
  }
}
