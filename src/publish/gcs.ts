// Writing a secret object to Cloud Storage (push, edit): always conditional, so two operators
// never overwrite each other silently. The object is created only if absent (ifGenerationMatch=0)
// or replaces exactly the generation the operator read.

import type { Storage } from '@google-cloud/storage';
import { ConflictError } from '../errors.ts';
import { crc32c } from '../google/crc32c.ts';
import { mapStorageError } from '../google/storage.ts';
import type { Logger } from '../log.ts';
import type { Retry } from '../retry.ts';

export interface UploadRequest {
  readonly bucket: string;
  readonly object: string;
  readonly data: Buffer;
  /** The generation to replace, or '0' to create only if absent. */
  readonly ifGenerationMatch: string;
  /** How messages name the target (default gs://BUCKET/OBJECT; push to berglas:// says berglas://). */
  readonly uri?: string;
  /** Custom metadata (x-goog-meta-*), e.g. berglas's key name. */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** Secrets must never sit in a cache between GCS and a reader. */
export const SECRET_CACHE_CONTROL = 'private, no-store';

/** Uploads with the precondition; resolves to the new generation. */
export async function uploadSecretObject(
  storage: Storage,
  request: UploadRequest,
  retry: Retry,
  log: Logger,
): Promise<string> {
  const { bucket, object, data, ifGenerationMatch, metadata } = request;
  const where = request.uri ?? `gs://${bucket}/${object}`;
  const file = storage.bucket(bucket).file(object);
  let attempts = 0;
  try {
    await retry(
      `upload ${where}`,
      () => {
        attempts++;
        return file.save(data, {
          resumable: false,
          validation: 'crc32c',
          preconditionOpts: { ifGenerationMatch: Number(ifGenerationMatch) },
          metadata: {
            contentType: 'application/octet-stream',
            cacheControl: SECRET_CACHE_CONTROL,
            ...(metadata === undefined ? {} : { metadata: { ...metadata } }),
          },
        });
      },
      (error) =>
        (error as { code?: unknown }).code === 412
          ? preconditionFailed(where, ifGenerationMatch)
          : mapStorageError(error, where, 'storage.objects.create', 'roles/storage.objectUser'),
    );
    return String(file.metadata.generation);
  } catch (error) {
    // A retried upload whose first attempt landed (the response was lost) fails its own
    // precondition: if the live object is byte-for-byte ours, the upload did succeed.
    if (error instanceof ConflictError && attempts > 1) {
      const [live] = await file.getMetadata();
      const ours = Buffer.alloc(4);
      ours.writeUInt32BE(crc32c(data));
      if (live.crc32c === ours.toString('base64') && Number(live.size) === data.length) {
        log.debug(`${where}: the first upload attempt had landed as generation ${live.generation}`);
        return String(live.generation);
      }
    }
    throw error;
  }
}

function preconditionFailed(where: string, ifGenerationMatch: string): ConflictError {
  return ifGenerationMatch === '0'
    ? new ConflictError(
        `${where} already exists`,
        'to replace it, pass --if-generation with the generation you mean to replace (secret-fetch show prints it with -v)',
      )
    : new ConflictError(
        `${where} is no longer at generation ${ifGenerationMatch}: someone changed it since`,
        'read it again (secret-fetch edit does this), then retry with the new generation',
      );
}
