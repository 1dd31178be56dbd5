// Adding a Secret Manager version (push, edit). AddSecretVersion takes no precondition, so the
// check that nobody added a version since the operator looked is a read before the add, not an
// atomic condition as on Cloud Storage: two writers racing inside that window both succeed, and
// the second sees its version number come out higher than expected and says so.

import {
  ConflictError,
  IntegrityError,
  NotFoundError,
  PermissionError,
  type SecretFetchError,
  UsageError,
} from '../errors.ts';
import { crc32c } from '../google/crc32c.ts';
import { GRPC } from '../google/grpc.ts';
import { mapSecretManagerError, ONE_ATTEMPT, type SecretManagerClient } from '../google/secretmanager.ts';
import type { Logger } from '../log.ts';
import type { Retry } from '../retry.ts';

/** Secret Manager refuses a payload over 64 KiB. */
export const SECRET_MANAGER_MAX_PAYLOAD = 64 * 1024;

export interface SecretTarget {
  readonly project: string;
  readonly secret: string;
}

/**
 * What must hold before the version is added:
 * - create: the secret does not exist yet; it is created (atomically: a second creator gets 75);
 * - first: the secret exists and has no version yet;
 * - on-top: the newest version (what `latest` names) is still `version`.
 */
export type VersionCondition =
  | { readonly kind: 'create' }
  | { readonly kind: 'first' }
  | { readonly kind: 'on-top'; readonly version: string };

export interface AddVersionRequest extends SecretTarget {
  readonly data: Buffer;
  readonly condition: VersionCondition;
}

// google-gax reports gRPC status codes, also in REST mode.

/** Checks the condition, adds the version and resolves to its number. */
export async function publishSecretVersion(
  client: SecretManagerClient,
  request: AddVersionRequest,
  retry: Retry,
  log: Logger,
): Promise<string> {
  const { data, condition } = request;
  const where = secretUri(request);
  if (data.length > SECRET_MANAGER_MAX_PAYLOAD) throw payloadTooLarge(where, data.length);
  if (condition.kind === 'create') {
    await createSecret(client, request, retry, log);
  } else {
    const newest = await newestVersion(client, request, retry);
    if (condition.kind === 'first' && newest !== undefined) {
      throw new ConflictError(
        `${where} already has versions (the newest is ${newest})`,
        `to add one on top of it, pass --if-version ${newest}`,
      );
    }
    if (condition.kind === 'on-top' && newest !== condition.version) {
      throw newest === undefined
        ? new NotFoundError(
            `${where} has no version ${condition.version} any more: the secret does not exist, or has no versions`,
            `check the name: gcloud secrets list --project=${request.project}`,
          )
        : new ConflictError(
            `${where} is no longer at version ${condition.version}: version ${newest} was added since`,
            'read it again (secret-fetch show, or edit), then retry with --if-version set to the newest version',
          );
    }
  }
  const version = await addVersion(client, request, retry);
  const expected = condition.kind === 'on-top' ? String(BigInt(condition.version) + 1n) : '1';
  if (version !== expected) {
    log.warn(
      `${where}: added as version ${version}, not ${expected}: another version was added between the check and the add (by someone else, or by a retry of this request whose first response was lost); see gcloud secrets versions list ${request.secret} --project=${request.project}`,
    );
  }
  return version;
}

export function payloadTooLarge(where: string, bytes: number): UsageError {
  return new UsageError(
    `${where}: the payload would be ${bytes} bytes, more than Secret Manager's ${SECRET_MANAGER_MAX_PAYLOAD}-byte limit`,
    'store a secret this big in Cloud Storage instead (push FILE gs://BUCKET/OBJECT --kms-key KEY seals it as an envelope)',
  );
}

/** The number of the newest version (what `latest` names, whatever its state), or undefined when none. */
async function newestVersion(
  client: SecretManagerClient,
  target: SecretTarget,
  retry: Retry,
): Promise<string | undefined> {
  const where = secretUri(target);
  const metadata = await retry(
    `read the newest version of ${where}`,
    () =>
      client.getSecretVersion({ name: `${secretName(target)}/versions/latest` }, ONE_ATTEMPT).then(
        ([found]) => found,
        (error: unknown) => {
          // The secret has no version yet (or does not exist: the add then says which).
          if (codeOf(error) === GRPC.NOT_FOUND) return undefined;
          throw error;
        },
      ),
    (error) =>
      codeOf(error) === GRPC.PERMISSION_DENIED
        ? new PermissionError(
            `permission denied to read the newest version of ${where}, which is checked before adding one (or the secret does not exist)`,
            `grant roles/secretmanager.viewer on the secret (secretmanager.versions.get) as well as roles/secretmanager.secretVersionAdder: ${grant(target, 'roles/secretmanager.viewer')}`,
          )
        : readError(error, target),
  );
  return metadata === undefined ? undefined : versionNumber(metadata.name, target);
}

async function createSecret(client: SecretManagerClient, target: SecretTarget, retry: Retry, log: Logger) {
  const where = secretUri(target);
  let attempts = 0;
  try {
    await retry(
      `create ${where}`,
      () => {
        attempts++;
        return client.createSecret(
          {
            parent: `projects/${target.project}`,
            secretId: target.secret,
            secret: { replication: { automatic: {} } },
          },
          ONE_ATTEMPT,
        );
      },
      (error) => {
        switch (codeOf(error)) {
          case GRPC.ALREADY_EXISTS:
            return new ConflictError(
              `${where} already exists`,
              `drop --create; to add a version on top of its newest, pass --if-version N (gcloud secrets versions list ${target.secret} --project=${target.project})`,
            );
          case GRPC.PERMISSION_DENIED:
            return new PermissionError(
              `permission denied to create the secret ${target.secret} in project ${target.project}`,
              `secretmanager.secrets.create is in roles/secretmanager.admin on the project; or have it created: gcloud secrets create ${target.secret} --project=${target.project} --replication-policy=automatic`,
            );
          default:
            return readError(error, target);
        }
      },
    );
  } catch (error) {
    // A retried create whose first attempt landed (the response was lost) finds its own secret;
    // the version number check after the add tells whether anyone else got in between.
    if (error instanceof ConflictError && attempts > 1) {
      log.debug(`${where}: the first create attempt had landed`);
      return;
    }
    throw error;
  }
}

async function addVersion(client: SecretManagerClient, request: AddVersionRequest, retry: Retry): Promise<string> {
  const where = secretUri(request);
  const checksum = crc32c(request.data);
  const [version] = await retry(
    `add a version to ${where}`,
    () =>
      client.addSecretVersion(
        { parent: secretName(request), payload: { data: request.data, dataCrc32c: checksum } },
        ONE_ATTEMPT,
      ),
    (error) => addError(error, request),
  );
  const number = versionNumber(version.name, request);
  // Secret Manager refuses a payload whose dataCrc32c does not match; this flag says it received ours.
  if (version.clientSpecifiedPayloadChecksum !== true) {
    throw new IntegrityError(
      `${where}#${number}: Secret Manager did not confirm the payload's CRC32C`,
      `check the version (gcloud secrets versions access ${number} --secret=${request.secret} --project=${request.project}) and disable it if it is wrong; check --secret-manager-endpoint`,
    );
  }
  // An enum: its name, or its number (1) if the client did not turn it back.
  const state: unknown = version.state;
  if (state !== 'ENABLED' && state !== 1) {
    throw new IntegrityError(
      `${where}#${number} was added but is not enabled (${String(state)})`,
      `gcloud secrets versions describe ${number} --secret=${request.secret} --project=${request.project}`,
    );
  }
  return number;
}

function addError(error: unknown, target: SecretTarget): SecretFetchError | undefined {
  const where = secretUri(target);
  const message = (error as { message?: unknown } | null)?.message;
  const text = typeof message === 'string' ? message : '';
  switch (codeOf(error)) {
    case GRPC.NOT_FOUND:
      return new NotFoundError(
        `the secret ${target.secret} does not exist in project ${target.project}`,
        `create it: gcloud secrets create ${target.secret} --project=${target.project} --replication-policy=automatic (or push with --create)`,
      );
    case GRPC.PERMISSION_DENIED:
      return new PermissionError(
        `permission denied to add a version to ${where} (or the secret does not exist)`,
        `grant roles/secretmanager.secretVersionAdder on the secret: ${grant(target, 'roles/secretmanager.secretVersionAdder')}`,
      );
    case GRPC.INVALID_ARGUMENT:
      if (/crc32c|checksum/i.test(text)) {
        return new IntegrityError(
          `Secret Manager refused the version for ${where}: the payload did not match its CRC32C`,
          'it was corrupted on the way; run again',
        );
      }
      if (/64\s*KiB|too large|larger than/i.test(text)) {
        return new UsageError(
          `Secret Manager refused the payload for ${where} as larger than its ${SECRET_MANAGER_MAX_PAYLOAD}-byte limit`,
          'store a secret this big in Cloud Storage instead',
        );
      }
      return new UsageError(`Secret Manager refused to add a version to ${where}`, 'check the project and secret ID');
    default:
      return readError(error, target);
  }
}

/** Transient failures and missing credentials, mapped as the sm:// reader maps them. */
function readError(error: unknown, target: SecretTarget): SecretFetchError | undefined {
  return mapSecretManagerError(error, { scheme: 'sm', ...target, version: 'latest' }, 'get');
}

function versionNumber(name: string | null | undefined, target: SecretTarget): string {
  const match = /^projects\/[^/]+\/secrets\/([^/]+)\/versions\/([1-9][0-9]*)$/.exec(name ?? '');
  if (!match || match[1] !== target.secret) {
    throw new IntegrityError(
      `Secret Manager answered for ${secretUri(target)} with the version name "${name ?? ''}", not a version of ${target.secret}`,
      'check --secret-manager-endpoint',
    );
  }
  return match[2] as string;
}

function grant(target: SecretTarget, role: string): string {
  return `gcloud secrets add-iam-policy-binding ${target.secret} --project=${target.project} --member=PRINCIPAL --role=${role}`;
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

export function secretName(target: SecretTarget): string {
  return `projects/${target.project}/secrets/${target.secret}`;
}

export function secretUri(target: SecretTarget): string {
  return `sm://${target.project}/${target.secret}`;
}
