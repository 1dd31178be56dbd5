// What a secret-fetch signature covers and where it lives. Pure: the signer (secret-fetch sign)
// and the verifier (--verify-key) build the same bytes from the same inputs, and nothing else.
//
// The signature covers the object's exact bytes AND where they were found: bucket, object name and
// generation. Without the name, anyone who can write to the bucket could copy a validly signed
// object (bytes and metadata) over another name, e.g. swap the staging secret in for production's;
// without the generation, they could put back an old signed version (say, one holding a revoked
// password). A generation is assigned by Cloud Storage on every write and cannot be chosen, so a
// signature is good for exactly one write of one object; any rewrite (a copy, a restore, a storage
// class change through rewrite) needs a new signature.

import { createHash } from 'node:crypto';

/** Custom metadata on the signed object: the DER signature, base64. */
export const SIGNATURE_METADATA = 'secret-fetch-signature';
/** Custom metadata on the signed object: the key version that signed (for people; never trusted). */
export const SIGNING_KEY_METADATA = 'secret-fetch-signing-key';

/** Changes if the message layout ever does, so an old signature can never be read as a new one. */
const DOMAIN = 'secret-fetch object signature v1';

export const KEY_VERSION_NAME =
  /^projects\/[^/\s]+\/locations\/[^/\s]+\/keyRings\/[^/\s]+\/cryptoKeys\/[^/\s]+\/cryptoKeyVersions\/[1-9][0-9]*$/;

export interface SignedObject {
  readonly bucket: string;
  readonly object: string;
  /** The generation the bytes were read at, in decimal, as Cloud Storage reports it. */
  readonly generation: string;
}

/**
 * The signed message: five fields, each a 4-byte big-endian length and then its bytes: the domain
 * string, the bucket, the object name (UTF-8), the generation (decimal ASCII) and the SHA-256 of the
 * object's bytes. Length prefixes make it unambiguous whatever characters a name holds. The message
 * holds a hash of the data, never the data, so it can be logged or kept.
 */
export function signedMessage(object: SignedObject, data: Uint8Array): Buffer {
  if (!/^[1-9][0-9]*$/.test(object.generation)) throw new Error(`not a generation: ${object.generation}`);
  const fields = [
    Buffer.from(DOMAIN),
    Buffer.from(object.bucket),
    Buffer.from(object.object),
    Buffer.from(object.generation),
    createHash('sha256').update(data).digest(),
  ];
  return Buffer.concat(
    fields.flatMap((field) => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(field.length);
      return [length, field];
    }),
  );
}

/** The SHA-256 digest of the message: what Cloud KMS signs (EC_SIGN_P256_SHA256 takes a digest). */
export function messageDigest(message: Uint8Array): Buffer {
  return createHash('sha256').update(message).digest();
}

export type StoredSignature =
  | { readonly kind: 'signed'; readonly signature: Buffer; readonly keyVersion: string | undefined }
  | { readonly kind: 'missing' }
  | { readonly kind: 'malformed' };

/** The signature in an object's custom metadata, as stored by signatureMetadata. */
export function readSignatureMetadata(metadata: Readonly<Record<string, unknown>> | undefined): StoredSignature {
  const value = metadata?.[SIGNATURE_METADATA];
  if (value === undefined || value === null || value === '') return { kind: 'missing' };
  // A P-256 DER signature is 8 to 72 bytes: at most 96 base64 characters.
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]{8,96}={0,2}$/.test(value) || value.length % 4 !== 0) {
    return { kind: 'malformed' };
  }
  const key = metadata?.[SIGNING_KEY_METADATA];
  // Shown in messages only when it looks like a key version: the metadata is anyone's to write.
  const keyVersion = typeof key === 'string' && KEY_VERSION_NAME.test(key) ? key : undefined;
  return { kind: 'signed', signature: Buffer.from(value, 'base64'), keyVersion };
}

/** The custom metadata that stores a signature (a metadata PATCH merges it with the rest). */
export function signatureMetadata(signature: Uint8Array, keyVersion: string): Record<string, string> {
  return {
    [SIGNATURE_METADATA]: Buffer.from(signature).toString('base64'),
    [SIGNING_KEY_METADATA]: keyVersion,
  };
}
