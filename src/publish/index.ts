// Writing a secret, for push and edit alike: seal the plaintext as the fetch path will open it
// (Cloud KMS or an envelope; berglas's own body and metadata for berglas://; nothing with
// --plaintext), then upload it under the target's condition. Resolves to what the command prints:
// TARGET#GENERATION, or sm://PROJECT/SECRET#VERSION.

import { NotFoundError } from '../errors.ts';
import type { Clients } from '../google/clients.ts';
import { customMetadata, mapStorageError } from '../google/storage.ts';
import type { Logger } from '../log.ts';
import type { Retry } from '../retry.ts';
import { BERGLAS_ID_METADATA, BERGLAS_KEY_METADATA, berglasKeyName } from '../sources/berglas.ts';
import { describeSource, type ObjectRef, type SecretManagerRef } from '../sources/reference.ts';
import { uploadSecretObject } from './gcs.ts';
import { sealBerglasForUpload, sealForUpload } from './seal.ts';
import {
  payloadTooLarge,
  publishSecretVersion,
  SECRET_MANAGER_MAX_PAYLOAD,
  secretUri,
  type VersionCondition,
} from './secretmanager.ts';

/** Where a secret is written, and the condition the write is made under. */
export type WriteTarget =
  /** gs:// or berglas://: replace exactly this generation ('0': create only). */
  | { readonly ref: ObjectRef; readonly ifGenerationMatch: string }
  | { readonly ref: SecretManagerRef; readonly condition: VersionCondition };

export interface WriteContext {
  readonly clients: Clients;
  readonly retry: Retry;
  readonly log: Logger;
}

/** Seals `plaintext` under `kmsKey` (none: as it is) and writes it to `target`; `what` names it in messages. */
export async function writeSecret(
  plaintext: Buffer,
  kmsKey: string | undefined,
  target: WriteTarget,
  what: string,
  context: WriteContext,
): Promise<string> {
  const { clients, retry, log } = context;
  if ('condition' in target) {
    const { ref, condition } = target;
    const where = secretUri(ref);
    const data = kmsKey === undefined ? plaintext : await sealForUpload(plaintext, kmsKey, what, clients, retry);
    // KMS adds its own bytes: a ciphertext over the limit is refused before Secret Manager is called.
    if (data.length > SECRET_MANAGER_MAX_PAYLOAD) throw payloadTooLarge(where, data.length);
    const version = await publishSecretVersion(
      await clients.secretManager(retry),
      { project: ref.project, secret: ref.secret, data, condition },
      retry,
      log,
    );
    return `${where}#${version}`;
  }
  const { ref, ifGenerationMatch } = target;
  // Callers refuse this first (push: a usage error; edit: the key the object names); a bug that
  // reached here would upload the plaintext under a berglas name.
  if (ref.scheme === 'berglas' && kmsKey === undefined) {
    throw new Error(`${describeSource(ref)} is written only encrypted, and no key was given`);
  }
  const berglas = ref.scheme === 'berglas' && kmsKey !== undefined;
  if (berglas && ifGenerationMatch !== '0') await checkBerglasKey(ref, ifGenerationMatch, kmsKey, context);
  const data =
    kmsKey === undefined
      ? plaintext
      : berglas
        ? await sealBerglasForUpload(plaintext, kmsKey, ref.object, what, clients, retry)
        : await sealForUpload(plaintext, kmsKey, what, clients, retry);
  const generation = await uploadSecretObject(
    await clients.storage(retry),
    {
      bucket: ref.bucket,
      object: ref.object,
      uri: describeSource(ref),
      data,
      ifGenerationMatch,
      ...(berglas ? { metadata: { [BERGLAS_ID_METADATA]: '1', [BERGLAS_KEY_METADATA]: kmsKey } } : {}),
    },
    retry,
    log,
  );
  return `${describeSource(ref)}#${generation}`;
}

/**
 * A berglas secret is replaced only under the key it names: the generation being replaced must
 * name `kmsKey` in its berglas-kms-key metadata (else 76, nothing written). Moving a secret to
 * another key is a new object, not a silent rewrite.
 */
async function checkBerglasKey(
  ref: ObjectRef,
  generation: string,
  kmsKey: string,
  context: WriteContext,
): Promise<void> {
  const where = describeSource(ref);
  const gcs = await context.clients.gcs(context.retry);
  let resource: Awaited<ReturnType<typeof gcs.getMetadata>>;
  try {
    resource = await context.retry(
      `read the metadata of ${where}#${generation}`,
      () => gcs.getMetadata(ref.bucket, ref.object, generation),
      (e) => mapStorageError(e, `${where}#${generation}`, 'storage.objects.get'),
    );
  } catch (error) {
    // Gone: replaced since. The upload's own condition then refuses it as the conflict it is (75).
    if (error instanceof NotFoundError) return;
    throw error;
  }
  berglasKeyName(customMetadata(resource.metadata), `${where}#${generation}`, kmsKey);
}
