// Stores a signature in the signed object's custom metadata with a metadata PATCH conditioned on
// the generation and metageneration that were read: if the object was rewritten, or its metadata
// changed, since its bytes were read and signed, Cloud Storage refuses the PATCH (412) and nothing
// is stored. So a signature can only ever land on the exact bytes it covers.

import { IntegrityError, type SecretFetchError } from '../errors.ts';
import type { Clients } from '../google/clients.ts';
import { mapStorageError, type ObjectInfo } from '../google/storage.ts';
import type { Logger } from '../log.ts';
import type { Retry } from '../retry.ts';
import { describeSource, type SourceRef } from '../sources/reference.ts';
import { SIGNATURE_METADATA } from './message.ts';

type GsRef = Extract<SourceRef, { scheme: 'gs' }>;

export interface StoreContext {
  readonly clients: Clients;
  readonly retry: Retry;
  readonly log: Logger;
}

/** PATCHes `fields` into the custom metadata of the generation `read` describes; returns its new metageneration. */
export async function storeSignature(
  ref: GsRef,
  read: ObjectInfo,
  fields: Readonly<Record<string, string>>,
  context: StoreContext,
): Promise<string> {
  const where = `${describeSource({ ...ref, generation: undefined })}#${read.generation}`;
  const storage = await context.clients.storage(context.retry);
  // A pinned URI patches that generation, live or not; otherwise the live object, which must
  // still be the generation that was read.
  const file = storage
    .bucket(ref.bucket)
    .file(ref.object, ref.generation ? { generation: Number(ref.generation) } : {});
  const [metadata] = await context.retry(
    `store the signature of ${where}`,
    () =>
      file.setMetadata(
        { metadata: { ...fields } },
        { ifGenerationMatch: read.generation, ifMetagenerationMatch: read.metageneration },
      ),
    (error) => mapPatchError(error, where),
  );
  if (
    String(metadata.generation) !== read.generation ||
    metadata.metadata?.[SIGNATURE_METADATA] !== fields[SIGNATURE_METADATA]
  ) {
    throw new IntegrityError(
      `Cloud Storage answered the signature PATCH of ${where} with another object or metadata`,
      'check the object (gcloud storage objects describe) and sign it again',
    );
  }
  return String(metadata.metageneration ?? '');
}

function mapPatchError(error: unknown, where: string): SecretFetchError | undefined {
  if ((error as { code?: unknown } | null)?.code === 412) {
    return new IntegrityError(
      `${where} changed while it was being signed (a new generation or new metadata since it was read), so the signature was not stored`,
      'check who wrote it and what it holds now, then sign it again',
    );
  }
  return mapStorageError(error, where, 'storage.objects.update', 'roles/storage.objectUser');
}
