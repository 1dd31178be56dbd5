// Cloud KMS asymmetric signing (EC_SIGN_P256_SHA256) for secret-fetch sign, through the same REST
// client as decrypt. Follows the KMS data-integrity guidelines, which the client library leaves to
// the caller: check the public key's pemCrc32c and name; send the digest's CRC32C and require
// verifiedDigestCrc32c; check the signature's signatureCrc32c and the name that signed.

import { createPublicKey, type KeyObject } from 'node:crypto';
import { type KmsClient, toBuffer } from '../decrypt/kms.ts';
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
import type { Retry } from '../retry.ts';
import { isP256 } from './verify.ts';

export const SIGNING_ALGORITHM = 'EC_SIGN_P256_SHA256';
// CryptoKeyVersionAlgorithm's number, in case a server answers enums as numbers.
const SIGNING_ALGORITHM_NUMBER = 12;

export interface PublicKey {
  readonly pem: string;
  readonly key: KeyObject;
}

/** The key version's public key, checked: the right name, an intact PEM, an EC P-256 key. */
export async function fetchPublicKey(client: KmsClient, keyVersion: string, retry: Retry): Promise<PublicKey> {
  const [response] = await retry(
    `read the public key of ${keyVersion}`,
    () => client.getPublicKey({ name: keyVersion }),
    (error) => mapKmsSignError(error, keyVersion, 'read the public key of'),
  );
  if (response.name !== keyVersion) {
    throw new IntegrityError(
      `Cloud KMS answered with the public key of ${String(response.name)} when asked for ${keyVersion}`,
      'the request was corrupted in transit; run again',
    );
  }
  const pem = typeof response.pem === 'string' ? response.pem : '';
  if (!sameCrc(response.pemCrc32c?.value, crc32c(Buffer.from(pem)))) {
    throw new IntegrityError(
      `the public key of ${keyVersion} does not match its pemCrc32c`,
      'the response was corrupted in transit; run again',
    );
  }
  const algorithm = response.algorithm;
  if (algorithm !== SIGNING_ALGORITHM && algorithm !== SIGNING_ALGORITHM_NUMBER) {
    throw new UsageError(
      `--signing-key ${keyVersion} is a ${String(algorithm)} key; secret-fetch signs with ${SIGNING_ALGORITHM}`,
      'create one: gcloud kms keys create KEY --keyring RING --location LOCATION --purpose asymmetric-signing --default-algorithm ec-sign-p256-sha256',
    );
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new IntegrityError(`Cloud KMS returned a public key for ${keyVersion} that does not parse`, 'run again');
  }
  if (!isP256(key)) {
    throw new IntegrityError(`Cloud KMS returned a public key for ${keyVersion} that is not EC P-256`, 'run again');
  }
  return { pem, key };
}

/** Signs a SHA-256 digest; returns the DER signature once its name and checksums are checked. */
export async function signDigestWithKms(
  client: KmsClient,
  keyVersion: string,
  digest: Buffer,
  retry: Retry,
): Promise<Buffer> {
  const [response] = await retry(
    `sign with ${keyVersion}`,
    () =>
      client.asymmetricSign({ name: keyVersion, digest: { sha256: digest }, digestCrc32c: { value: crc32c(digest) } }),
    (error) => mapKmsSignError(error, keyVersion, 'sign with'),
  );
  if (response.name !== keyVersion) {
    throw new IntegrityError(
      `Cloud KMS answered for ${String(response.name)} when asked to sign with ${keyVersion}`,
      'the request was corrupted in transit; run again',
    );
  }
  if (response.verifiedDigestCrc32c !== true) {
    throw new IntegrityError(
      `Cloud KMS did not verify the digest's CRC32C when signing with ${keyVersion}`,
      'the request was corrupted in transit; run again',
    );
  }
  const signature = toBuffer(response.signature);
  if (signature.length === 0 || !sameCrc(response.signatureCrc32c?.value, crc32c(signature))) {
    throw new IntegrityError(
      `the signature from ${keyVersion} does not match its signatureCrc32c`,
      'the response was corrupted in transit; run again',
    );
  }
  return signature;
}

function sameCrc(given: unknown, actual: number): boolean {
  return (typeof given === 'string' || typeof given === 'number') && String(given) === String(actual);
}

// gRPC status codes, as google/kms-rest.ts reports them.
export function mapKmsSignError(
  error: unknown,
  keyVersion: string,
  doing: 'sign with' | 'read the public key of',
): SecretFetchError | undefined {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  switch (code) {
    case GRPC.INVALID_ARGUMENT:
      if (typeof message === 'string' && /checksum|crc32c/i.test(message)) {
        return new IntegrityError(
          `Cloud KMS rejected a CRC32C when asked to ${doing} ${keyVersion}`,
          'the request was corrupted in transit; run again',
        );
      }
      return new UsageError(
        `Cloud KMS refused to ${doing} ${keyVersion}`,
        `is it an ${SIGNING_ALGORITHM} key version? (gcloud kms keys versions describe)`,
      );
    case GRPC.NOT_FOUND:
      return new NotFoundError(
        `KMS key version ${keyVersion} does not exist`,
        'check --signing-key: project, location, key ring, key and version (gcloud kms keys versions list)',
      );
    case GRPC.PERMISSION_DENIED:
      return new PermissionError(
        `permission denied to ${doing} ${keyVersion}`,
        'grant roles/cloudkms.signerVerifier on the key to the account this runs as',
      );
    case GRPC.UNAUTHENTICATED:
      return new PermissionError(
        `no valid credentials to use ${keyVersion}`,
        'set up Application Default Credentials (gcloud auth application-default login)',
      );
    case GRPC.FAILED_PRECONDITION:
      return new UsageError(
        `--signing-key ${keyVersion} cannot sign: it is not an asymmetric signing key version, or it is disabled or destroyed`,
        `use an enabled ${SIGNING_ALGORITHM} key version (gcloud kms keys versions describe)`,
      );
    case GRPC.RESOURCE_EXHAUSTED:
    case GRPC.UNAVAILABLE:
    case GRPC.DEADLINE_EXCEEDED:
    case GRPC.INTERNAL:
    case GRPC.UNKNOWN: // an answer no JSON API gives
      return new UnavailableError(
        `Cloud KMS failed to ${doing} ${keyVersion} (status ${String(code)})`,
        'the service is failing; try again later',
      );
    default:
      return undefined;
  }
}
