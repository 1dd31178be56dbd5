// sm://PROJECT/SECRET[#VERSION] through the thin Secret Manager reader (google/secretmanager-rest.ts),
// loaded only when an sm:// source is used. One AccessSecretVersion call gives the payload and the version
// it resolved to (latest or an alias becomes a number); the payload is checked against the
// dataCrc32c the service stores for every version (the client library does not check it).

import { IntegrityError } from '../errors.ts';
import { crc32c } from '../google/crc32c.ts';
import { checksum, isVersionNumber, mapSecretManagerError, ONE_ATTEMPT } from '../google/secretmanager.ts';
import { Secret } from '../secret.ts';
import type { FetchContext, FetchedSecret } from './index.ts';
import { describeSource, type SecretManagerRef, secretVersionName } from './reference.ts';

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

function toBuffer(data: Uint8Array | string | null | undefined): Buffer {
  if (data === null || data === undefined) return Buffer.alloc(0);
  return typeof data === 'string'
    ? Buffer.from(data, 'base64')
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
