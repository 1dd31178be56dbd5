// --kms-key: may the caller decrypt with the key (testIamPermissions for
// cloudkms.cryptoKeyVersions.useToDecrypt)? Nothing is decrypted. KMS answers an empty set for a
// key that does not exist, so "not granted" also covers a wrong key name.

import { EXIT, NotFoundError, PermissionError, UnavailableError, UsageError } from '../../errors.ts';
import { GRPC } from '../../google/grpc.ts';
import { type Check, type CheckContext, fail, failFrom, ok } from './checklist.ts';
import { kmsKeyGrant } from './grants.ts';

const DECRYPT = 'cloudkms.cryptoKeyVersions.useToDecrypt';

export async function checkKmsKey(keyName: string, context: CheckContext): Promise<Check> {
  const grant = kmsKeyGrant(keyName, context.member);
  try {
    const kms = await context.clients.kms(context.retry);
    const [response] = await context.retry(
      `test the permissions on ${keyName}`,
      () => kms.testIamPermissions({ resource: keyName, permissions: [DECRYPT] }),
      (error) => classify(error, keyName),
    );
    if ((response.permissions ?? []).includes(DECRYPT)) return ok('kms-key', keyName, `${keyName}: ${DECRYPT} granted`);
    return fail(
      'kms-key',
      keyName,
      `${keyName}: ${DECRYPT} is not granted to ${context.member} (or the key does not exist: KMS does not say which)`,
      EXIT.permission,
      grant,
    );
  } catch (error) {
    return failFrom('kms-key', keyName, error);
  }
}

// gRPC status codes, as google/kms-rest.ts reports them.
function classify(error: unknown, keyName: string) {
  const code = (error as { code?: unknown } | null)?.code;
  const project = /^projects\/([^/]+)\//.exec(keyName)?.[1] ?? 'PROJECT';
  switch (code) {
    case GRPC.INVALID_ARGUMENT:
      return new UsageError(`Cloud KMS refused the key name ${keyName}`, 'check --kms-key');
    case GRPC.NOT_FOUND:
      return new NotFoundError(
        `KMS key ${keyName} does not exist`,
        'check --kms-key: project, location, key ring and key',
      );
    case GRPC.PERMISSION_DENIED: // testIamPermissions itself needs no permission, so the API or project refused
      return new PermissionError(
        `Cloud KMS refused to test the permissions on ${keyName}`,
        `is the Cloud KMS API enabled in ${project}? (gcloud services enable cloudkms.googleapis.com --project=${project})`,
      );
    case GRPC.UNAUTHENTICATED:
      return new PermissionError(
        `no valid credentials to use ${keyName}`,
        'set up Application Default Credentials or Workload Identity',
      );
    case GRPC.UNKNOWN: // an answer no JSON API gives
    case GRPC.DEADLINE_EXCEEDED:
    case GRPC.RESOURCE_EXHAUSTED:
    case GRPC.INTERNAL:
    case GRPC.UNAVAILABLE:
      return new UnavailableError(
        `Cloud KMS failed to test the permissions on ${keyName} (status ${String(code)})`,
        'the service is failing; try again later',
      );
    default:
      return undefined;
  }
}
