// sm:// sources: does the caller hold secretmanager.versions.access on the secret
// (testIamPermissions), and does each version exist and is it enabled (GetSecretVersion: metadata,
// never the payload). The accessor role does not grant secretmanager.versions.get, so with it
// alone the version cannot be looked at without reading it: that is said as a warning.

import { EXIT, NotFoundError, PermissionError, UsageError } from '../../errors.ts';
import { GRPC } from '../../google/grpc.ts';
import { mapSecretManagerError, ONE_ATTEMPT } from '../../google/secretmanager.ts';
import { describeSource, type SecretManagerRef, secretVersionName } from '../../sources/reference.ts';
import { type Check, type CheckContext, fail, failFrom, ok, warn } from './checklist.ts';
import { secretGrant } from './grants.ts';

const ACCESS = 'secretmanager.versions.access';
const GET = 'secretmanager.versions.get';

// google-gax reports gRPC status codes, also in REST mode.

/** The secret's line, then one line per version of `refs` (all of that one secret). */
export async function checkSecret(refs: readonly SecretManagerRef[], context: CheckContext): Promise<Check[]> {
  const { project, secret } = refs[0] as SecretManagerRef;
  const where = `sm://${project}/${secret}`;
  const resource = `projects/${project}/secrets/${secret}`;
  let held: readonly string[];
  try {
    const client = await context.clients.secretManager(context.retry);
    const [response] = await context.retry(
      `test the permissions on ${where}`,
      () => client.testIamPermissions({ resource, permissions: [ACCESS, GET] }, ONE_ATTEMPT),
      (error) => classify(error, refs[0] as SecretManagerRef),
    );
    held = response.permissions ?? [];
  } catch (error) {
    return [failFrom('secret', where, error)];
  }
  const secretCheck = held.includes(ACCESS)
    ? ok('secret', where, `${where}: ${ACCESS} granted`)
    : fail(
        'secret',
        where,
        `${where}: ${ACCESS} is not granted to ${context.member} (or the secret does not exist)`,
        EXIT.permission,
        secretGrant(project, secret, context.member),
      );
  if (!held.includes(GET)) {
    // Without versions.get only a read would tell; the failure above already says what is missing.
    if (!held.includes(ACCESS)) return [secretCheck];
    return [
      secretCheck,
      ...refs.map((ref) =>
        warn(
          'secret-version',
          describeSource(ref),
          `${describeSource(ref)}: not checked whether this version exists and is enabled: ${GET} is not granted (the accessor role does not include it; only --refresh on latest or an alias needs it)`,
        ),
      ),
    ];
  }
  return [secretCheck, ...(await Promise.all(refs.map((ref) => checkVersion(ref, context))))];
}

async function checkVersion(ref: SecretManagerRef, context: CheckContext): Promise<Check> {
  const where = describeSource(ref);
  const { project, secret } = ref;
  try {
    const client = await context.clients.secretManager(context.retry);
    const [metadata] = await context.retry(
      `read the metadata of ${where}`,
      () => client.getSecretVersion({ name: secretVersionName(ref) }, ONE_ATTEMPT),
      (error) => mapSecretManagerError(error, ref, 'get'),
    );
    const number = /\/versions\/([0-9]+)$/.exec(metadata.name ?? '')?.[1] ?? '?';
    const label = ref.version === number ? `version ${number}` : `version ${number} (${ref.version})`;
    // An enum: its name, or its number if the client did not turn it back.
    const state = String(metadata.state);
    if (state === 'ENABLED' || state === '1') {
      return ok('secret-version', where, `${where}: ${label} exists and is enabled (not accessed)`, {
        version: number,
      });
    }
    const destroyed = state === 'DESTROYED' || state === '3';
    const fix = destroyed
      ? `its data is gone: add a new version (secret-fetch push FILE sm://${project}/${secret} --if-version N)`
      : `gcloud secrets versions enable ${number} --secret=${secret} --project=${project}`;
    const latest = ref.version === 'latest' ? ', or pin an enabled version with #N (latest never skips it)' : '';
    return fail(
      'secret-version',
      where,
      `${where}: ${label} is ${destroyed ? 'destroyed' : 'disabled'}`,
      EXIT.notFound,
      `${fix}${latest}`,
    );
  } catch (error) {
    return failFrom('secret-version', where, error);
  }
}

function classify(error: unknown, ref: SecretManagerRef) {
  const { project, secret } = ref;
  switch ((error as { code?: unknown } | null)?.code) {
    case GRPC.NOT_FOUND:
      return new NotFoundError(
        `the secret ${secret} does not exist in project ${project}`,
        `check the name (gcloud secrets list --project=${project}), or create it: secret-fetch push FILE sm://${project}/${secret} --create`,
      );
    case GRPC.PERMISSION_DENIED: // testIamPermissions itself needs no permission, so the API or project refused
      return new PermissionError(
        `Secret Manager refused to test the permissions on sm://${project}/${secret}`,
        `is the Secret Manager API enabled in ${project}? (gcloud services enable secretmanager.googleapis.com --project=${project})`,
      );
    case GRPC.INVALID_ARGUMENT:
      return new UsageError(
        `Secret Manager refused the secret name projects/${project}/secrets/${secret}`,
        'check the project and secret ID',
      );
    default:
      return mapSecretManagerError(error, ref, 'get');
  }
}
