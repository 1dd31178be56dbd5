// Cloud Storage: the library client (@google-cloud/storage, for the operator commands), reading
// one object pinned to its generation with its CRC32C checked (the gs:// and berglas:// readers,
// and sign), and what a Cloud Storage error means in secret-fetch's terms.

import type { Storage } from '@google-cloud/storage';
import {
  EXIT,
  IntegrityError,
  NotFoundError,
  PermissionError,
  SecretFetchError,
  UnavailableError,
  UsageError,
} from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Retry } from '../retry.ts';
import { describeSource, type ObjectRef } from '../sources/reference.ts';
import type { Clients } from './clients.ts';
import { crc32c } from './crc32c.ts';
import { type ClientAuth, defaultAuth } from './credentials.ts';
import { AnswerTooLargeError } from './rest.ts';

/** The object's custom metadata (x-goog-meta-*), e.g. berglas's `berglas-kms-key`. */
export type CustomMetadata = Readonly<Record<string, string>>;

/** Custom metadata values arrive as strings, or as null for a key being removed: keep the strings. */
export function customMetadata(raw: unknown): CustomMetadata {
  const out: Record<string, string> = {};
  if (raw === null || typeof raw !== 'object') return Object.freeze(out);
  for (const [key, value] of Object.entries(raw)) if (typeof value === 'string') out[key] = value;
  return Object.freeze(out);
}

export async function createStorageClient(
  endpoint: string | undefined,
  auth: ClientAuth = defaultAuth(endpoint),
): Promise<Storage> {
  const { Storage } = await import('@google-cloud/storage');
  // Retries are ours (see fetchObject), so a retried stream can never be piped twice.
  const retryOptions = { autoRetry: false, maxRetries: 0 };
  const storage = new Storage({
    retryOptions,
    ...(endpoint === undefined ? {} : { apiEndpoint: endpoint.replace(/\/$/, '') }),
    // The library sends no credentials to any endpoint but its default unless told to.
    ...(auth === 'none' ? {} : { useAuthWithCustomEndpoint: true }),
    ...(typeof auth === 'object' ? { authClient: auth } : {}),
  });
  // The library takes STORAGE_EMULATOR_HOST from the process environment as its base URL as is
  // (no /storage/v1, no scheme added): use the endpoint's, so the operator commands and the run's
  // reader (google/storage-rest.ts) send the same paths to one base.
  if (endpoint !== undefined) storage.baseUrl = `${new URL(endpoint).origin}/storage/v1`;
  return storage;
}

/** What reading an object needs: the clients, the retry policy, the log and the size limit. */
export interface ObjectReadContext {
  readonly clients: Clients;
  readonly retry: Retry;
  readonly log: Logger;
  readonly maxBytes: number;
}

/** What the metadata read says about the generation that is then downloaded. */
export interface ObjectInfo {
  readonly generation: string;
  readonly metageneration: string;
  /** The object's custom metadata (x-goog-meta-*), or undefined when it has none. */
  readonly metadata: Readonly<Record<string, unknown>> | undefined;
}

/**
 * Reads the object's metadata, then downloads exactly that generation and checks its CRC32C.
 * `beforeDownload` sees the metadata first and may refuse the object by throwing.
 */
export async function readObject(
  ref: ObjectRef,
  context: ObjectReadContext,
  beforeDownload?: (info: ObjectInfo) => void,
): Promise<ObjectInfo & { readonly data: Buffer }> {
  const where = describeSource(ref);
  const gcs = await context.clients.gcs(context.retry);
  const metadata = await context.retry(
    `read the metadata of ${where}`,
    () => gcs.getMetadata(ref.bucket, ref.object, ref.generation),
    (e) => mapStorageError(e, where, 'storage.objects.get'),
  );
  // Every field the download and its check depend on must be there and well-formed: bytes that
  // cannot be pinned to one generation, measured against a size and checked by a CRC32C are refused.
  const generation = typeof metadata.generation === 'string' ? metadata.generation : '';
  const expectedCrc = crc32cOf(metadata.crc32c);
  if (!/^[1-9][0-9]*$/.test(generation) || typeof metadata.size !== 'string' || !/^[0-9]+$/.test(metadata.size)) {
    throw new IntegrityError(
      `${where}: Cloud Storage's metadata has no valid generation or size, so the download cannot be pinned and measured`,
      'the answer was not from Cloud Storage as documented; check --storage-endpoint',
    );
  }
  if (expectedCrc === undefined) {
    throw new IntegrityError(
      `${where}: Cloud Storage's metadata has no valid CRC32C, so the download could not be checked`,
      'the answer was not from Cloud Storage as documented; check --storage-endpoint',
    );
  }
  if (ref.generation && generation !== ref.generation) {
    throw new IntegrityError(`${where}: asked for generation ${ref.generation}, got ${generation}`);
  }
  const size = Number(metadata.size);
  if (!(size <= context.maxBytes)) {
    throw new IntegrityError(
      `${where} is ${metadata.size} bytes, more than the ${context.maxBytes}-byte limit`,
      'is this the right object?',
    );
  }
  context.log.debug(`${where}: generation ${generation}, ${size} bytes`);
  const info: ObjectInfo = {
    generation,
    metageneration: String(metadata.metageneration ?? ''),
    metadata: metadata.metadata ?? undefined,
  };
  beforeDownload?.(info);

  // Pin the generation read from the metadata, so the data and its checksum can't come from two different writes.
  const data = await context.retry(
    `download ${where}#${generation}`,
    () => gcs.download(ref.bucket, ref.object, generation, size),
    (e) => mapStorageError(e, `${where}#${generation}`, 'storage.objects.get'),
  );
  // Checked against the CRC32C of the metadata we pinned: the bytes and the checksum come from the
  // same write, and a download corrupted in transit never reaches a sink.
  checkDownload(`${where}#${generation}`, data, size, expectedCrc);
  return { ...info, data };
}

/**
 * The live object (or the generation `ref` pins) in one GET where its response carries the
 * headers that pin and check it: the generation, the stored length (checked against the limit
 * before the body is read) and the CRC32C. An answer without them is read as readObject reads it:
 * the metadata first, then that generation.
 */
export async function readMediaObject(
  ref: ObjectRef,
  context: ObjectReadContext,
): Promise<{ readonly generation: string; readonly data: Buffer }> {
  const where = describeSource(ref);
  const gcs = await context.clients.gcs(context.retry);
  const read = await context.retry(
    `download ${where}`,
    () =>
      gcs.readMedia(ref.bucket, ref.object, ref.generation, (media) => {
        if (ref.generation && media.generation !== ref.generation) {
          throw new IntegrityError(`${where}: asked for generation ${ref.generation}, got ${media.generation}`);
        }
        if (!(media.size <= context.maxBytes)) {
          throw new IntegrityError(
            `${where} is ${media.size} bytes, more than the ${context.maxBytes}-byte limit`,
            'is this the right object?',
          );
        }
      }),
    (e) => mapStorageError(e, where, 'storage.objects.get'),
  );
  if (read === undefined) {
    context.log.debug(`${where}: the download carries no generation, length and CRC32C; reading its metadata first`);
    return readObject(ref, context);
  }
  const { headers, data } = read;
  context.log.debug(`${where}: generation ${headers.generation}, ${headers.size} bytes`);
  checkDownload(`${where}#${headers.generation}`, data, headers.size, headers.crc32c);
  return { generation: headers.generation, data };
}

/** The bytes are exactly the stored length and match the stored CRC32C; otherwise they are zeroed and refused. */
function checkDownload(at: string, data: Buffer, size: number, crc: number): void {
  if (data.length !== size) {
    data.fill(0);
    throw new IntegrityError(
      `${at}: the download ended after ${data.length} of the ${size} bytes its metadata gives`,
      'the download was cut short; run again',
    );
  }
  if (crc32c(data) !== crc) {
    data.fill(0);
    throw new IntegrityError(
      `${at}: the downloaded bytes do not match the object's CRC32C`,
      'the download was corrupted in transit; run again',
    );
  }
}

/** The CRC32C of a metadata `crc32c` field (base64 of 4 big-endian bytes), or undefined if it is not one. */
function crc32cOf(field: unknown): number | undefined {
  if (typeof field !== 'string' || !/^[A-Za-z0-9+/]{6}==$/.test(field)) return undefined;
  return Buffer.from(field, 'base64').readUInt32BE(0);
}

interface StorageApiError {
  code?: number | string;
  message?: string;
}

export function mapStorageError(
  error: unknown,
  where: string,
  permission: string,
  role = 'roles/storage.objectViewer',
): SecretFetchError | undefined {
  if (error instanceof AnswerTooLargeError) {
    return new IntegrityError(
      `${where}: the download is longer than the ${error.maxBytes} bytes its metadata gives`,
      'the answer was not from Cloud Storage as documented; check --storage-endpoint',
    );
  }
  const { code } = (error ?? {}) as StorageApiError;
  if (code === 404) {
    return new NotFoundError(
      `${where} does not exist`,
      'check the bucket, object name and generation (gcloud storage ls -a)',
    );
  }
  if (code === 403) {
    return new PermissionError(
      `access denied to ${where}`,
      `grant ${permission} (${role}) on the bucket to the service account this runs as`,
    );
  }
  if (code === 401) {
    return new PermissionError(
      `no valid credentials for ${where}`,
      'set up Application Default Credentials or Workload Identity',
    );
  }
  if (code === 'CONTENT_DOWNLOAD_MISMATCH') {
    return new IntegrityError(
      `${where}: the downloaded bytes do not match the object's checksum`,
      'the download was corrupted in transit; run again',
    );
  }
  // Transient, as Cloud Storage's retry strategy lists them: 408, 429 and 5xx.
  if (typeof code === 'number' && (code === 408 || code === 429 || code >= 500)) {
    return new UnavailableError(
      `Cloud Storage answered ${code} for ${where}`,
      'the service is failing; try again later',
    );
  }
  // Final: the same request would get the same answer (other 4xx are not expected, and stay internal errors).
  if (code === 400) {
    return new UsageError(
      `Cloud Storage refused the request for ${where} as invalid (400)`,
      'check the bucket name, the object name and the generation',
    );
  }
  if (code === 412) {
    // secret-fetch sends no precondition, so this is not weather: say so rather than retry.
    return new IntegrityError(
      `Cloud Storage answered 412 (precondition failed) for ${where}, to a read that sets no precondition`,
      'is a proxy between secret-fetch and Cloud Storage adding one? If not, please report this',
    );
  }
  // Any other status (a redirect, 409, 418, ...) is not an answer Cloud Storage gives to these calls:
  // the endpoint is something else, and asking again would not change that.
  if (typeof code === 'number') {
    return new SecretFetchError(
      `Cloud Storage answered ${code} for ${where}, an answer it does not give to this request`,
      EXIT.unavailable,
      'check --storage-endpoint or STORAGE_EMULATOR_HOST: is it Cloud Storage, or a proxy in between?',
    );
  }
  return undefined;
}
