// gs:// sources: does the caller hold storage.objects.get on the bucket (testIamPermissions), and
// does each object exist (its metadata: generation and size). Nothing is downloaded.

import { EXIT, NotFoundError, PermissionError } from '../../errors.ts';
import { mapStorageError } from '../../sources/gcs.ts';
import { describeSource, type SourceRef } from '../../sources/reference.ts';
import { type Check, type CheckContext, fail, failFrom, ok, warn } from './checklist.ts';
import { bucketGrant } from './grants.ts';

export type GsRef = Extract<SourceRef, { scheme: 'gs' }>;

const GET = 'storage.objects.get';

/** The bucket's line, then one line per object of `refs` (all in that bucket). */
export async function checkBucket(bucket: string, refs: readonly GsRef[], context: CheckContext): Promise<Check[]> {
  const where = `gs://${bucket}`;
  const grant = bucketGrant(bucket, context.member);
  let granted: boolean | undefined;
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
    bucketCheck = failFrom('bucket', where, error);
  }
  const objects = await Promise.all(refs.map((ref) => checkObject(ref, context, grant)));
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
  return [bucketCheck, ...objects];
}

async function checkObject(ref: GsRef, context: CheckContext, grant: string): Promise<Check> {
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
    return ok('object', where, `${where}: exists, generation ${generation}, ${size} bytes (not downloaded)`, {
      generation,
      size,
    });
  } catch (error) {
    return failFrom('object', where, error);
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
