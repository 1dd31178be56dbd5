// Encryption for push and edit: the inverse of the fetch path's decrypt stage. Up to KMS's 64 KiB
// plaintext limit the secret goes to KMS whole (what `gcloud kms encrypt` writes, readable by any
// tool); beyond it, a secret-fetch envelope (src/decrypt/envelope.ts). berglas:// objects get
// berglas's own body, whatever their size.

import { sealBerglas, sealEnvelope } from '../decrypt/envelope.ts';
import { encryptWithKms, KMS_MAX_PLAINTEXT } from '../decrypt/kms.ts';
import type { Clients } from '../google/clients.ts';
import type { Retry } from '../retry.ts';

/** Ciphertext that the fetch path decrypts with the same --kms-key. */
export async function sealForUpload(
  plaintext: Buffer,
  keyName: string,
  what: string,
  clients: Clients,
  retry: Retry,
): Promise<Buffer> {
  const kms = await clients.kms(retry);
  if (plaintext.length <= KMS_MAX_PLAINTEXT) return encryptWithKms(kms, { keyName, plaintext, what }, retry);
  return sealEnvelope(plaintext, (key, aad) =>
    encryptWithKms(
      kms,
      { keyName, plaintext: key, additionalAuthenticatedData: aad, what: `the data key of ${what}` },
      retry,
    ),
  );
}

/** A berglas body for the object `object`: its data key is bound to that name (KMS AAD), as berglas does. */
export async function sealBerglasForUpload(
  plaintext: Buffer,
  keyName: string,
  object: string,
  what: string,
  clients: Clients,
  retry: Retry,
): Promise<Buffer> {
  const kms = await clients.kms(retry);
  return sealBerglas(plaintext, object, (key, aad) =>
    encryptWithKms(
      kms,
      { keyName, plaintext: key, additionalAuthenticatedData: aad, what: `the data key of ${what}` },
      retry,
    ),
  );
}
