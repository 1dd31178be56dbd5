// gs://BUCKET/OBJECT[#GENERATION] and berglas:// objects through the thin Cloud Storage reader
// (google/storage-rest.ts), loaded only when such a source is used. A plain gs:// source is one
// GET whose headers give its generation, length and CRC32C; where the metadata is needed first
// (--verify-key, berglas's key), it is read and the data then downloaded at exactly that
// generation. Either way the bytes and what we know about them come from the same write.

import {
  type CustomMetadata,
  customMetadata,
  mapStorageError,
  type ObjectInfo,
  readMediaObject,
  readObject,
} from '../google/storage.ts';
import { Secret } from '../secret.ts';
import { type ObjectToVerify, requireSignature, verifyObjectSignature } from '../signing/verify.ts';
import type { FetchContext, FetchedSecret } from './index.ts';
import { describeSource, type ObjectRef } from './reference.ts';

export interface PinnedObject {
  /** The bytes as stored (ciphertext, usually): the caller wipes them once done. */
  readonly data: Secret;
  /** The generation the metadata named and the data was downloaded at. */
  readonly generation: string;
  readonly metadata: CustomMetadata;
  /** Checked against FetchContext.verifyKey (always true when one is given). */
  readonly signatureVerified: boolean;
}

/**
 * A gs:// source: in one GET (the response headers pin and check it), unless --verify-key needs
 * the signature in its metadata before the bytes.
 */
export async function fetchObject(ref: ObjectRef, context: FetchContext): Promise<FetchedSecret> {
  if (context.verifyKey === undefined) {
    const { data, generation } = await readMediaObject(ref, context);
    return { data: new Secret(data), name: ref.object, version: generation };
  }
  const { data, generation, signatureVerified } = await readPinnedObject(ref, context);
  return { data, name: ref.object, version: generation, signatureVerified };
}

/**
 * The object at one generation, its signature checked when --verify-key is given: an unsigned
 * object is refused before its bytes are downloaded, and a signed one is checked over exactly
 * the bytes of the generation whose metadata held the signature. `inspect` sees the custom
 * metadata before the download and may refuse the object by throwing.
 */
export async function readPinnedObject(
  ref: ObjectRef,
  context: FetchContext,
  inspect?: (metadata: CustomMetadata) => void,
): Promise<PinnedObject> {
  const { verifyKey } = context;
  const signed = (read: ObjectInfo): ObjectToVerify => ({
    bucket: ref.bucket,
    object: ref.object,
    generation: read.generation,
    metadata: read.metadata,
  });
  const read = await readObject(ref, context, (info) => {
    if (verifyKey !== undefined) requireSignature(signed(info));
    inspect?.(customMetadata(info.metadata));
  });
  if (verifyKey !== undefined) {
    try {
      verifyObjectSignature(verifyKey, signed(read), read.data);
    } catch (error) {
      read.data.fill(0);
      throw error;
    }
  }
  return {
    data: new Secret(read.data),
    generation: read.generation,
    metadata: customMetadata(read.metadata),
    signatureVerified: verifyKey !== undefined,
  };
}

/** The generation of the live object: one metadata read, no download (for --refresh). */
export async function objectGeneration(ref: ObjectRef, context: FetchContext): Promise<string> {
  const where = describeSource(ref);
  const gcs = await context.clients.gcs(context.retry);
  const metadata = await context.retry(
    `read the metadata of ${where}`,
    () => gcs.getMetadata(ref.bucket, ref.object),
    (e) => mapStorageError(e, where, 'storage.objects.get'),
  );
  return String(metadata.generation ?? '');
}
