// The decrypt stage for --kms-key: a secret-fetch envelope (see envelope.ts) has its data key
// unwrapped by KMS and is decrypted here; anything else is one KMS ciphertext, as
// `gcloud kms encrypt` writes it, and KMS decrypts it whole.

import type { Retry } from '../retry.ts';
import type { Secret } from '../secret.ts';
import { isEnvelope, openEnvelope, type UnwrapKey } from './envelope.ts';
import { type DecryptRequest, decryptWithKms, type KmsClient } from './kms.ts';

export async function decryptSecret(
  client: KmsClient,
  request: { readonly keyName: string; readonly data: Buffer; readonly what: string },
  retry: Retry,
): Promise<Secret> {
  const { keyName, data, what } = request;
  if (!isEnvelope(data)) return decryptWithKms(client, { keyName, ciphertext: data, what }, retry);
  return openEnvelope(data, unwrapWithKms(client, { keyName, what: `the data key of ${what}` }, retry), what);
}

/** An UnwrapKey that asks KMS to decrypt a wrapped data key under the given AAD. */
export function unwrapWithKms(
  client: KmsClient,
  request: Omit<DecryptRequest, 'ciphertext' | 'additionalAuthenticatedData'>,
  retry: Retry,
): UnwrapKey {
  return (wrappedKey, aad) =>
    decryptWithKms(client, { ...request, ciphertext: wrappedKey, additionalAuthenticatedData: aad }, retry);
}
