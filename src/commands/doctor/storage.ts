// gs:// and berglas:// sources: does the caller hold storage.objects.get on the bucket
// (testIamPermissions), and does each object exist (its metadata: generation and size). Nothing is
// downloaded. A berglas object's metadata names its KMS key, which `followUp` checks next.

import { EXIT, NotFoundError, PermissionError } from '../../errors.ts';
import { type CustomMetadata, mapStorageError } from '../../google/storage.ts';
import { describeSource, type ObjectRef } from '../../sources/reference.ts';
import { type Check, type CheckContext, fail, failFrom, ok, warn } from './checklist.ts';
import { bucketGrant } from './grants.ts';

/** More checks that an existing object's custom metadata calls for (a berglas object's key). */
export type FollowUp = (ref: ObjectRef, metadata: CustomMetadata) => Promise<readonly Check[]>;

const GET = 'storage.objects.get';

/** The bucket's line, then one line per object of `refs` (all in that bucket), each with its follow-ups. */
export async function checkBucket(
  bucket: string,
  refs: readonly ObjectRef[],
  context: CheckContext,
  followUp: FollowUp,
): Promise<Check[]> {
  const where = `gs://${bucket}`;
  const grant = bucketGrant(bucket, context.member);
  let granted: boolean | undefined;
  let notFound = false;
  let bucketCheck: Check;
  try {
    const storage = await context.clients.storage(context.retry);
    const [held] = await context.retry(
      `test the permissions on ${where}`,
      () => storage.bucket(bucket).iam.testPermissions([GET]),
      (error) =>
        statusOf(error) === 404
          ? new NotFoundError(
              `bucket ${where} does not exist`,
              `check the bucket in --source (gcloud storage buckets describe ${where})`,
            )
          : classify(error, where, context.member, grant),
    );
    granted = held[GET] === true;
    bucketCheck = granted
      ? ok('bucket', where, `${where}: ${GET} granted`)
      : fail('bucket', where, `${where}: ${GET} is not granted to ${context.member}`, EXIT.permission, grant);
  } catch (error) {
    notFound = error instanceof NotFoundError;
    bucketCheck = failFrom('bucket', where, error);
  }
  const found = await Promise.all(refs.map((ref) => checkObject(ref, context, grant)));
  const objects = found.map((f) => f.check);
  // Bucket IAM is not the whole story on a bucket with fine-grained access: an object ACL can
  // grant the read the bucket's policy does not.
  if (granted === false && objects.every((o) => o.status === 'ok')) {
    bucketCheck = warn(
      'bucket',
      where,
      `${where}: ${GET} is not granted on the bucket, but ${refs.length === 1 ? 'the object' : 'every object'} can be read (object ACLs?)`,
      grant,
    );
  }
  // A 404 on testIamPermissions alone does not prove the bucket missing when its objects read:
  // some emulators do not implement the IAM call.
  if (notFound && objects.length > 0 && objects.every((o) => o.status === 'ok')) {
    bucketCheck = warn(
      'bucket',
      where,
      `${where}: ${GET} could not be tested (testIamPermissions answered 404), but ${refs.length === 1 ? 'the object' : 'every object'} can be read`,
      grant,
    );
  }
  const more = await Promise.all(
    found.map(({ ref, metadata }) => (metadata === undefined ? [] : followUp(ref, metadata))),
  );
  return [bucketCheck, ...found.flatMap((f, i) => [f.check, ...(more[i] ?? [])])];
}

interface FoundObject {
  readonly ref: ObjectRef;
  readonly check: Check;
  /** The custom metadata of an object that exists. */
  readonly metadata?: CustomMetadata;
}

async function checkObject(ref: ObjectRef, context: CheckContext, grant: string): Promise<FoundObject> {
  const where = describeSource(ref);
  try {
    const storage = await context.clients.storage(context.retry);
    const file = storage
      .bucket(ref.bucket)
      .file(ref.object, ref.generation ? { generation: Number(ref.generation) } : {});
    const [metadata] = await context.retry(
      `read the metadata of ${where}`,
      () => file.getMetadata(),
      (error) =>
        statusOf(error) === 404
          ? new NotFoundError(
              `${where} does not exist`,
              `check the object name${ref.generation ? ' and generation' : ''}: gcloud storage ls -a gs://${ref.bucket}/${ref.object.slice(0, ref.object.lastIndexOf('/') + 1)}`,
            )
          : classify(error, where, context.member, grant),
    );
    const generation = String(metadata.generation ?? '');
    const size = String(metadata.size ?? '');
    const custom: Record<string, string> = {};
    for (const [key, value] of Object.entries(metadata.metadata ?? {})) {
      if (typeof value === 'string') custom[key] = value;
    }
    const check = ok('object', where, `${where}: exists, generation ${generation}, ${size} bytes (not downloaded)`, {
      generation,
      size,
    });
    return { ref, check, metadata: custom };
  } catch (error) {
    return { ref, check: failFrom('object', where, error) };
  }
}

/** As the run maps storage errors, but a 403 names the member and the grant that fixes it. */
function classify(error: unknown, where: string, member: string, grant: string) {
  if (statusOf(error) === 403) return new PermissionError(`access denied to ${where}: ${member} cannot read it`, grant);
  return mapStorageError(error, where, GET);
}

function statusOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}
