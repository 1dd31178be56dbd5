// Encryption for push and edit: the inverse of the fetch path's decrypt stage.

import type { Clients } from '../clients.ts';
import { encryptWithKms, KMS_MAX_PLAINTEXT } from '../decrypt/kms.ts';
import { UsageError } from '../errors.ts';
import type { Retry } from '../retry.ts';

/** Ciphertext that the fetch path decrypts with the same --kms-key. */
export async function sealForUpload(
  plaintext: Buffer,
  keyName: string,
  what: string,
  clients: Clients,
  retry: Retry,
): Promise<Buffer> {
  if (plaintext.length > KMS_MAX_PLAINTEXT) {
    throw new UsageError(`${what} is over KMS's 64 KiB limit`, 'envelope encryption is not in this build yet');
  }
  return encryptWithKms(await clients.kms(), { keyName, plaintext, what }, retry);
}
