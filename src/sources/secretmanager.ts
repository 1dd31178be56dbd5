// sm://PROJECT/SECRET[#VERSION] through the thin Secret Manager reader (secretmanager-reader.ts),
// loaded only when an sm:// source is used; the official client (REST mode) is created here for
// the operator commands. One AccessSecretVersion call gives the payload and the version
// it resolved to (latest or an alias becomes a number); the payload is checked against the
// dataCrc32c the service stores for every version (the client library does not check it).

import type { SecretManagerServiceClient } from '@google-cloud/secret-manager/build/src/v1/secret_manager_service_client.js';
import { crc32c } from '../crc32c.ts';
import { type ClientAuth, defaultAuth, fallbackClientOptions } from '../credentials.ts';
import {
  EXIT,
  IntegrityError,
  NotFoundError,
  PermissionError,
  SecretFetchError,
  UnavailableError,
  UsageError,
} from '../errors.ts';
import { Secret } from '../secret.ts';
import type { FetchContext, FetchedSecret } from './index.ts';
import { describeSource, type SecretManagerRef, secretVersionName } from './reference.ts';

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

export async function accessSecretVersion(ref: SecretManagerRef, context: FetchContext): Promise<FetchedSecret> {
  const where = describeSource(ref);
  const name = secretVersionName(ref);
  const client = await context.clients.secretManagerReader(context.retry);
  const [response] = await context.retry(
    `access ${where}`,
    () => client.accessSecretVersion({ name }, ONE_ATTEMPT),
    (e) => mapSecretManagerError(e, ref, 'access'),
  );
  const data = toBuffer(response.payload?.data);
  try {
    const version = resolvedVersion(response.name, ref);
    verifyPayload(
      data,
      response.payload?.dataCrc32c,
      `${where}${ref.version === version ? '' : ` (version ${version})`}`,
      context.maxBytes,
    );
    context.log.debug(`${where}: version ${version}, ${data.length} bytes`);
    return { data: new Secret(data), name: ref.secret, version };
  } catch (error) {
    data.fill(0);
    throw error;
  }
}

function verifyPayload(data: Buffer, dataCrc32c: unknown, at: string, maxBytes: number): void {
  if (data.length > maxBytes) {
    throw new IntegrityError(
      `${at} is ${data.length} bytes, more than the ${maxBytes}-byte limit`,
      'is this the right secret? raise --max-size if it is',
    );
  }
  const expected = checksum(dataCrc32c);
  // The service stores a CRC32C for every version (it computes one when the writer sent none), so a
  // payload without one did not come from Secret Manager as documented: fail closed, as for KMS.
  if (expected === undefined) {
    throw new IntegrityError(
      `${at}: the response has no usable dataCrc32c, so the payload cannot be verified`,
      'Secret Manager sends one with every payload; check --secret-manager-endpoint',
    );
  }
  if (crc32c(data) !== expected) {
    throw new IntegrityError(
      `${at}: the payload does not match its dataCrc32c`,
      'the response was corrupted in transit; run again',
    );
  }
}

/**
 * The version number `ref` names now: one GetSecretVersion (metadata, no payload) for latest or an
 * alias; a numeric version is pinned and returned as it is. For --refresh.
 */
export async function currentSecretVersion(ref: SecretManagerRef, context: FetchContext): Promise<string> {
  if (isVersionNumber(ref.version)) return ref.version;
  const client = await context.clients.secretManagerReader(context.retry);
  const [metadata] = await context.retry(
    `read the version of ${describeSource(ref)}`,
    () => client.getSecretVersion({ name: secretVersionName(ref) }, ONE_ATTEMPT),
    (e) => mapSecretManagerError(e, ref, 'get'),
  );
  return resolvedVersion(metadata.name, ref);
}

function isVersionNumber(version: string): boolean {
  return /^[1-9][0-9]*$/.test(version);
}

/**
 * The version number at the end of the name the service answered with. The project part is not
 * compared: the service answers with the project number even when asked with the project ID.
 */
function resolvedVersion(name: string | null | undefined, ref: SecretManagerRef): string {
  const match = /^projects\/[^/]+\/secrets\/([^/]+)\/versions\/([1-9][0-9]*)$/.exec(name ?? '');
  const where = describeSource(ref);
  if (!match || match[1] !== ref.secret) {
    throw new IntegrityError(
      `Secret Manager answered ${where} with the version name "${name ?? ''}", not a version of ${ref.secret}`,
      'check --secret-manager-endpoint',
    );
  }
  const version = match[2] as string;
  if (isVersionNumber(ref.version) && version !== ref.version) {
    throw new IntegrityError(`${where}: asked for version ${ref.version}, got ${version}`);
  }
  return version;
}

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

function toBuffer(data: Uint8Array | string | null | undefined): Buffer {
  if (data === null || data === undefined) return Buffer.alloc(0);
  return typeof data === 'string'
    ? Buffer.from(data, 'base64')
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

// google-gax reports gRPC status codes, also in REST mode.
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const PERMISSION_DENIED = 7;
const FAILED_PRECONDITION = 9;
const UNAUTHENTICATED = 16;
const TRANSIENT: Record<number, string> = {
  2: 'UNKNOWN', // gax maps unexpected HTTP 5xx here
  4: 'DEADLINE_EXCEEDED',
  8: 'RESOURCE_EXHAUSTED',
  10: 'ABORTED', // a concurrency conflict: Google's guidance is to retry the call
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
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
    case NOT_FOUND:
      return notFound(ref);
    case FAILED_PRECONDITION:
      return unusable(ref, typeof message === 'string' ? message : '');
    case PERMISSION_DENIED:
      return call === 'access'
        ? new PermissionError(
            `permission denied to access ${where} (or the secret does not exist)`,
            `grant roles/secretmanager.secretAccessor on the secret to the service account this runs as: gcloud secrets add-iam-policy-binding ${secret} --project ${project} --member=serviceAccount:SA --role=roles/secretmanager.secretAccessor`,
          )
        : new PermissionError(
            `permission denied to read the version metadata of ${where}, which --refresh polls`,
            `grant roles/secretmanager.viewer on the secret as well (secretmanager.versions.get): gcloud secrets add-iam-policy-binding ${secret} --project ${project} --member=serviceAccount:SA --role=roles/secretmanager.viewer`,
          );
    case UNAUTHENTICATED:
      return new PermissionError(
        `no valid credentials to read ${where}`,
        'set up Application Default Credentials or Workload Identity',
      );
    case INVALID_ARGUMENT:
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
