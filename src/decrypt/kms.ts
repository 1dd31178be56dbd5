// Cloud KMS symmetric Decrypt and Encrypt, through our thin REST client (google/kms-rest.ts), loaded
// only when a key is needed. Follows the KMS data-integrity guidelines: send the CRC32C of every
// input (KMS refuses a mismatch with GRPC.INVALID_ARGUMENT), and check the CRC32C of what it returns.

import {
  IntegrityError,
  NotFoundError,
  PermissionError,
  type SecretFetchError,
  UnavailableError,
  UsageError,
} from '../errors.ts';
import { crc32c } from '../google/crc32c.ts';
import { GRPC } from '../google/grpc.ts';
import type { KmsClient } from '../google/kms-rest.ts';
import type { Retry } from '../retry.ts';
import { Secret } from '../secret.ts';

export { createKmsClient, type KmsClient } from '../google/kms-rest.ts';

/** A CryptoKey's resource name, as Decrypt takes it (not a key version). */
export const KMS_KEY_NAME = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;

/** A --kms-key value: a CryptoKey's resource name. */
export function validateKmsKey(name: string): void {
  if (!KMS_KEY_NAME.test(name)) {
    throw new UsageError(
      `--kms-key ${name} is not a key name`,
      'write projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY',
    );
  }
}

export interface DecryptRequest {
  readonly keyName: string;
  readonly ciphertext: Buffer;
  /** Bytes the ciphertext was bound to at encryption (berglas: the object name); none if absent. */
  readonly additionalAuthenticatedData?: Buffer;
  /** Names the secret in messages. */
  readonly what: string;
  /** What to say when KMS finds the ciphertext does not match (default: another key, or altered). */
  readonly mismatch?: string;
  /** Where the key name came from, for a missing key's hint (default: --kms-key). */
  readonly keyFrom?: string;
}

export async function decryptWithKms(client: KmsClient, request: DecryptRequest, retry: Retry): Promise<Secret> {
  const { keyName, ciphertext, additionalAuthenticatedData: aad, what } = request;
  if (ciphertext.length === 0) {
    throw new IntegrityError(`cannot decrypt ${what}: it is empty`, 'upload the output of gcloud kms encrypt');
  }
  const bound =
    aad === undefined
      ? {}
      : { additionalAuthenticatedData: aad, additionalAuthenticatedDataCrc32c: { value: crc32c(aad) } };
  const [response] = await retry(
    `decrypt ${what} with ${keyName}`,
    // One retry policy, ours: the client makes one request per call.
    () => client.decrypt({ name: keyName, ciphertext, ciphertextCrc32c: { value: crc32c(ciphertext) }, ...bound }),
    (error) => mapKmsError(error, what, keyName, request),
  );
  const plaintext = toBuffer(response.plaintext);
  const expected = response.plaintextCrc32c?.value;
  if (expected === undefined || expected === null || Number(expected) !== crc32c(plaintext)) {
    plaintext.fill(0);
    throw new IntegrityError(
      `decrypting ${what} returned a plaintext whose CRC32C does not match`,
      'the response was corrupted in transit; run again',
    );
  }
  return new Secret(plaintext);
}

export interface EncryptRequest {
  readonly keyName: string;
  readonly plaintext: Buffer;
  readonly additionalAuthenticatedData?: Buffer;
  /** Names the secret in messages. */
  readonly what: string;
}

/** KMS Encrypt (at most 64 KiB of plaintext); the ciphertext is checked against the CRC32C KMS returns. */
export async function encryptWithKms(client: KmsClient, request: EncryptRequest, retry: Retry): Promise<Buffer> {
  const { keyName, plaintext, additionalAuthenticatedData: aad, what } = request;
  const bound =
    aad === undefined
      ? {}
      : { additionalAuthenticatedData: aad, additionalAuthenticatedDataCrc32c: { value: crc32c(aad) } };
  const [response] = await retry(
    `encrypt ${what} with ${keyName}`,
    () => client.encrypt({ name: keyName, plaintext, plaintextCrc32c: { value: crc32c(plaintext) }, ...bound }),
    (error) => mapKmsError(error, what, keyName, { operation: 'encrypt' }),
  );
  const ciphertext = toBuffer(response.ciphertext);
  const expected = response.ciphertextCrc32c?.value;
  const verified =
    response.verifiedPlaintextCrc32c === true &&
    (aad === undefined || response.verifiedAdditionalAuthenticatedDataCrc32c === true);
  if (!verified || expected === undefined || expected === null || Number(expected) !== crc32c(ciphertext)) {
    throw new IntegrityError(
      `encrypting ${what} with ${keyName} was not verified end to end by CRC32C`,
      'the request or response was corrupted in transit; run again',
    );
  }
  return ciphertext;
}

export function toBuffer(data: Uint8Array | string | null | undefined): Buffer {
  if (data === null || data === undefined) return Buffer.alloc(0);
  return typeof data === 'string'
    ? Buffer.from(data, 'base64')
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

// gRPC status codes, as google-gax reported them and google/kms-rest.ts still does.

/** The statuses that are retried, by name for the log (HTTP 429 is GRPC.RESOURCE_EXHAUSTED, 503 GRPC.UNAVAILABLE). */
const TRANSIENT: Record<number, string> = {
  [GRPC.UNKNOWN]: 'UNKNOWN',
  [GRPC.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
  [GRPC.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [GRPC.INTERNAL]: 'INTERNAL',
  [GRPC.UNAVAILABLE]: 'UNAVAILABLE',
};

export function mapKmsError(
  error: unknown,
  what: string,
  keyName: string,
  context: { operation?: 'decrypt' | 'encrypt'; mismatch?: string; keyFrom?: string } = {},
): SecretFetchError | undefined {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : '';
  const operation = context.operation ?? 'decrypt';
  switch (code) {
    case GRPC.INVALID_ARGUMENT:
      if (operation === 'encrypt') {
        return new IntegrityError(
          `KMS refused to encrypt ${what} with ${keyName}`,
          /checksum|crc32c/i.test(text)
            ? 'the request was corrupted in transit; run again'
            : 'is it a symmetric ENCRYPT_DECRYPT key, and the plaintext at most 64 KiB?',
        );
      }
      if (/checksum|crc32c/i.test(text)) {
        return new IntegrityError(
          `cannot ${operation} ${what}: KMS rejected the request's CRC32C`,
          'the request was corrupted in transit; run again',
        );
      }
      return new IntegrityError(
        `cannot decrypt ${what} with ${keyName}: the ciphertext does not match this key`,
        context.mismatch ?? 'was it encrypted with another key, or altered after encryption?',
      );
    case GRPC.NOT_FOUND:
      return new NotFoundError(
        `KMS key ${keyName} does not exist`,
        `check ${context.keyFrom ?? '--kms-key'}: project, location, key ring and key`,
      );
    case GRPC.PERMISSION_DENIED:
      return new PermissionError(
        `permission denied to ${operation} with ${keyName}`,
        `grant roles/cloudkms.cryptoKey${operation === 'decrypt' ? 'Decrypter' : 'Encrypter'} on the key to the service account this runs as`,
      );
    case GRPC.UNAUTHENTICATED:
      return new PermissionError(
        `no valid credentials to use ${keyName}`,
        'set up Application Default Credentials or Workload Identity',
      );
    case GRPC.FAILED_PRECONDITION:
      return new IntegrityError(
        `cannot ${operation} ${what} with ${keyName}: the key version is disabled or destroyed`,
        operation === 'decrypt'
          ? 'enable the key version, or re-encrypt with an enabled one'
          : 'enable the primary key version',
      );
    case GRPC.RESOURCE_EXHAUSTED:
    case GRPC.UNAVAILABLE:
    case GRPC.DEADLINE_EXCEEDED:
    case GRPC.INTERNAL:
    case GRPC.UNKNOWN: // an answer no JSON API gives (a redirect, a body that is not JSON)
      return new UnavailableError(
        `Cloud KMS failed to ${operation} ${what} (status ${code} ${TRANSIENT[code]})`,
        'the service is failing; try again later',
      );
    default:
      return undefined;
  }
}

/** KMS plaintext limit for Encrypt: larger secrets go through an envelope. */
export const KMS_MAX_PLAINTEXT = 64 * 1024;
