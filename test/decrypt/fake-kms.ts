// A stand-in for Cloud KMS in unit tests: wraps and unwraps data keys with AES-256-GCM under one
// master key, honouring the additional authenticated data as KMS does. It records what it was
// given, so tests can check the AAD and that data keys are wiped after use.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { IntegrityError } from '../../src/errors.ts';
import { Secret } from '../../src/secret.ts';

export class FakeKms {
  readonly #master = randomBytes(32);
  /** Every data key handed out by unwrap, to check they were wiped. */
  readonly unwrapped: Secret[] = [];
  /** Every data key given to wrap (the caller's buffer, not a copy). */
  readonly wrapped: Buffer[] = [];
  /** The AAD of every wrap and unwrap, in order. */
  readonly aads: Buffer[] = [];

  wrap = async (key: Buffer, aad: Buffer): Promise<Buffer> => {
    this.wrapped.push(key);
    this.aads.push(Buffer.from(aad));
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#master, nonce);
    cipher.setAAD(aad);
    return Buffer.concat([nonce, cipher.update(key), cipher.final(), cipher.getAuthTag()]);
  };

  unwrap = async (wrappedKey: Buffer, aad: Buffer): Promise<Secret> => {
    this.aads.push(Buffer.from(aad));
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#master, wrappedKey.subarray(0, 12));
      decipher.setAAD(aad);
      decipher.setAuthTag(wrappedKey.subarray(wrappedKey.length - 16));
      const key = new Secret(Buffer.concat([decipher.update(wrappedKey.subarray(12, -16)), decipher.final()]));
      this.unwrapped.push(key);
      return key;
    } catch {
      throw new IntegrityError('fake KMS: the ciphertext does not match this key');
    }
  };
}

export function isZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}
