// Secret Manager: the library client (REST mode, for the operator commands), the dataCrc32c of a
// payload, and what a Secret Manager error means in secret-fetch's terms (the sm:// reader, push,
// edit and doctor share them).

import type { SecretManagerServiceClient } from '@google-cloud/secret-manager/build/src/v1/secret_manager_service_client.js';
import { EXIT, NotFoundError, PermissionError, SecretFetchError, UnavailableError, UsageError } from '../errors.ts';
import { describeSource, type SecretManagerRef, secretVersionName } from '../sources/reference.ts';
import { type ClientAuth, defaultAuth, fallbackClientOptions } from './credentials.ts';
import { GRPC } from './grpc.ts';

/**
 * What secret-fetch calls: access and get version (the sm:// reader), addSecretVersion and
 * createSecret (push and edit, src/publish/secretmanager.ts), testIamPermissions (doctor).
 */
export type SecretManagerClient = Pick<
  SecretManagerServiceClient,
  'accessSecretVersion' | 'getSecretVersion' | 'addSecretVersion' | 'createSecret' | 'testIamPermissions'
>;

export async function createSecretManagerClient(
  endpoint: string | undefined,
  auth: ClientAuth = defaultAuth(endpoint),
): Promise<SecretManagerClient> {
  const [{ SecretManagerServiceClient }, gax, options] = await Promise.all([
    import('@google-cloud/secret-manager/build/src/v1/secret_manager_service_client.js'),
    import('google-gax/fallback'),
    fallbackClientOptions(endpoint, auth),
  ]);
  return new SecretManagerServiceClient(options, gax);
}

// One retry policy, ours. `maxRetries: 0` alone would turn a 429 or 503 (AccessSecretVersion's own
// retry codes) into a DEADLINE_EXCEEDED "Exceeded maximum number of retries" that hides the status;
// with no retry codes the first error comes back as it is.
export const ONE_ATTEMPT = { maxRetries: 0, retry: { retryCodes: [] } };

/** dataCrc32c is an int64: a decimal string in REST mode, but a number or a Long (or {value}) also do. */
export function checksum(value: unknown): number | undefined {
  let v = value;
  if (typeof v === 'object' && v !== null && 'value' in v) v = (v as { value: unknown }).value;
  // A protobufjs Long: {low, high, unsigned}, whose toString gives the decimal value.
  if (typeof v === 'object' && v !== null && 'low' in v && 'high' in v) v = String(v);
  if (typeof v === 'number') v = Number.isSafeInteger(v) ? String(v) : undefined;
  if (typeof v !== 'string' || !/^[0-9]{1,10}$/.test(v)) return undefined;
  const n = Number(v);
  return n <= 0xffffffff ? n : undefined;
}

// google-gax reports gRPC status codes, also in REST mode.
const TRANSIENT: Record<number, string> = {
  [GRPC.UNKNOWN]: 'UNKNOWN', // gax maps unexpected HTTP 5xx here
  [GRPC.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
  [GRPC.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [GRPC.ABORTED]: 'ABORTED', // a concurrency conflict: Google's guidance is to retry the call
  [GRPC.INTERNAL]: 'INTERNAL',
  [GRPC.UNAVAILABLE]: 'UNAVAILABLE',
};

/** `call` is what failed: access (the payload) or get (version metadata, for --refresh). */
export function mapSecretManagerError(
  error: unknown,
  ref: SecretManagerRef,
  call: 'access' | 'get',
): SecretFetchError | undefined {
  const { code, message, httpStatusCode } = (error ?? {}) as {
    code?: unknown;
    message?: unknown;
    httpStatusCode?: unknown;
  };
  const where = describeSource(ref);
  const { project, secret } = ref;
  switch (code) {
    case GRPC.NOT_FOUND:
      return notFound(ref);
    case GRPC.FAILED_PRECONDITION:
      return unusable(ref, typeof message === 'string' ? message : '');
    case GRPC.PERMISSION_DENIED:
      return call === 'access'
        ? new PermissionError(
            `permission denied to access ${where} (or the secret does not exist)`,
            `grant roles/secretmanager.secretAccessor on the secret to the service account this runs as: gcloud secrets add-iam-policy-binding ${secret} --project ${project} --member=serviceAccount:SA --role=roles/secretmanager.secretAccessor`,
          )
        : new PermissionError(
            `permission denied to read the version metadata of ${where}, which --refresh polls`,
            `grant roles/secretmanager.viewer on the secret as well (secretmanager.versions.get): gcloud secrets add-iam-policy-binding ${secret} --project ${project} --member=serviceAccount:SA --role=roles/secretmanager.viewer`,
          );
    case GRPC.UNAUTHENTICATED:
      return new PermissionError(
        `no valid credentials to read ${where}`,
        'set up Application Default Credentials or Workload Identity',
      );
    case GRPC.INVALID_ARGUMENT:
      return new UsageError(
        `Secret Manager refused the name ${secretVersionName(ref)}`,
        'check the project, secret ID and version',
      );
    default: {
      if (typeof code !== 'number') return undefined;
      const transient = TRANSIENT[code];
      if (transient === undefined) {
        // Not an answer Secret Manager gives to this call: the endpoint is something else.
        const http = typeof httpStatusCode === 'number' ? ` (HTTP ${httpStatusCode})` : '';
        return new SecretFetchError(
          `Secret Manager answered gRPC status ${code}${http} for ${where}, an answer it does not give to this call`,
          EXIT.unavailable,
          'check SECRET_FETCH_SECRET_MANAGER_ENDPOINT: is it Secret Manager, or a proxy in between?',
        );
      }
      const status = typeof httpStatusCode === 'number' ? `${httpStatusCode} ${transient}` : transient;
      return new UnavailableError(
        `Secret Manager answered ${status} for ${where}`,
        'the service is failing; try again later',
      );
    }
  }
}

function notFound(ref: SecretManagerRef): NotFoundError {
  const { project, secret, version } = ref;
  const where = describeSource(ref);
  if (version === 'latest') {
    return new NotFoundError(
      `${where}: secret ${secret} does not exist in project ${project}, or has no versions`,
      `check the project and secret ID: gcloud secrets list --project ${project}`,
    );
  }
  const what = isVersionNumber(version) ? `version ${version}` : `version aliased "${version}"`;
  return new NotFoundError(
    `${where}: secret ${secret} in project ${project} has no ${what}, or does not exist`,
    isVersionNumber(version)
      ? `list its versions: gcloud secrets versions list ${secret} --project ${project}`
      : `gcloud secrets describe ${secret} --project ${project} lists its aliases`,
  );
}

/** A disabled or destroyed version; the service's message names the state and the version number. */
function unusable(ref: SecretManagerRef, message: string): NotFoundError {
  const { project, secret, version } = ref;
  const state = /\b(DISABLED|DESTROYED)\b/.exec(message)?.[1]?.toLowerCase() ?? 'disabled or destroyed';
  const number = /\/versions\/([0-9]+)\]/.exec(message)?.[1] ?? (isVersionNumber(version) ? version : undefined);
  const label =
    version === 'latest'
      ? `the latest version${number ? ` (${number})` : ''}`
      : isVersionNumber(version)
        ? `version ${version}`
        : `the version aliased "${version}"${number ? ` (${number})` : ''}`;
  const fix =
    state === 'destroyed'
      ? `its data is gone: add a new version (gcloud secrets versions add ${secret} --project ${project} --data-file=FILE)`
      : `enable it: gcloud secrets versions enable ${number ?? 'N'} --secret ${secret} --project ${project}`;
  const pin =
    version === 'latest' ? ', or pin an enabled version with #N (latest never skips a disabled or destroyed one)' : '';
  return new NotFoundError(`${describeSource(ref)}: ${label} of secret ${secret} is ${state}`, `${fix}${pin}`);
}

/** A version number (not latest or an alias): it names one immutable version. */
export function isVersionNumber(version: string): boolean {
  return /^[1-9][0-9]*$/.test(version);
}
