// berglas://BUCKET/OBJECT[#GENERATION]: a secret that berglas (GoogleCloudPlatform/berglas) wrote
// to Cloud Storage. The object's metadata names the KMS key (berglas-kms-key); the body is
// berglas's envelope (decrypt/envelope.ts), whose data key KMS unwraps bound to the object name.
// Metadata and body are read at one generation, as for gs://, so the key and the data match.

import { openBerglas } from '../decrypt/envelope.ts';
import { unwrapWithKms } from '../decrypt/index.ts';
import { KMS_KEY_NAME } from '../decrypt/kms.ts';
import { FormatError, IntegrityError } from '../errors.ts';
import type { CustomMetadata } from '../google/storage.ts';
import { readPinnedObject } from './gcs.ts';
import type { FetchContext, FetchedSecret } from './index.ts';
import { describeSource, type SourceRef } from './reference.ts';

type BerglasRef = Extract<SourceRef, { scheme: 'berglas' }>;

/** The metadata key under which berglas stores the KMS key's name. */
export const BERGLAS_KEY_METADATA = 'berglas-kms-key';
/** The metadata key, set to "1", by which berglas tells its secrets from other objects in a bucket. */
export const BERGLAS_ID_METADATA = 'berglas-secret';

/**
 * Reads and decrypts a berglas secret. With `expectedKey` (--kms-key), the object must name
 * exactly that key: whoever can write the bucket could otherwise pick a key of their own.
 */
export async function fetchBerglasSecret(
  ref: BerglasRef,
  context: FetchContext,
  expectedKey: string | undefined,
): Promise<FetchedSecret> {
  const where = describeSource(ref);
  let keyName = '';
  const object = await readPinnedObject(ref, context, (metadata) => {
    keyName = berglasKeyName(metadata, where, expectedKey, context.kmsKeyOption);
  });
  try {
    context.log.debug(`${where}: a berglas secret under ${keyName}`);
    const unwrap = unwrapWithKms(
      await context.clients.kms(context.retry),
      {
        keyName,
        what: `the data key of ${where}`,
        keyFrom: `the ${BERGLAS_KEY_METADATA} metadata of ${where}`,
        mismatch:
          'berglas binds the data key to the object name: was the object copied or renamed, encrypted with another key, or altered?',
      },
      context.retry,
    );
    const data = await openBerglas(object.data.reveal(), ref.object, unwrap, where);
    return {
      data,
      name: ref.object,
      version: object.generation,
      signatureVerified: object.signatureVerified,
      keyName,
    };
  } finally {
    object.data.wipe();
  }
}

/** The key the metadata names, without a key version (berglas strips it too when writing). */
export function berglasKeyName(
  metadata: CustomMetadata,
  where: string,
  expectedKey: string | undefined,
  option = '--kms-key',
): string {
  const named = metadata[BERGLAS_KEY_METADATA];
  if (named === undefined || named === '') {
    throw new FormatError(
      `${where} is not a berglas secret: its metadata has no ${BERGLAS_KEY_METADATA}`,
      'read it with gs:// (and --kms-key if gcloud kms encrypt wrote it), or write it with berglas create',
    );
  }
  const keyName = named.replace(/\/cryptoKeyVersions\/[^/]+$/, '');
  // Printable ASCII only: the name goes into one-line messages.
  if (!KMS_KEY_NAME.test(keyName) || !/^[\x21-\x7e]+$/.test(keyName)) {
    throw new FormatError(
      `${where}: its ${BERGLAS_KEY_METADATA} metadata is not a KMS key name`,
      'rewrite the secret with berglas update',
    );
  }
  if (expectedKey !== undefined && keyName !== expectedKey) {
    throw new IntegrityError(
      `${where} names the key ${keyName} in its ${BERGLAS_KEY_METADATA} metadata, not the ${option} ${expectedKey}`,
      `if it was re-encrypted with that key on purpose, change ${option}; if not, someone replaced the object`,
    );
  }
  return keyName;
}
