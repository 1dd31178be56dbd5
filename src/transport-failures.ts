// What any call to a service can meet on the way, whatever the service, in secret-fetch's terms:
// a network failure (retried), a host name that does not resolve, an answer over its size limit,
// malformed HTTP, or a server certificate not to trust (each final). The one place these rules
// live; each service's own classifier (retry.ts Classify) is asked first.

import { EXIT, IntegrityError, SecretFetchError, UnavailableError } from './errors.ts';

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);

function networkFailure(error: unknown, what: string): UnavailableError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !NETWORK_CODES.has(code)) return undefined;
  return new UnavailableError(`could not ${what}: ${code}`, 'check the network and the endpoint', { cause: error });
}

/** getaddrinfo's final answers (EAI_AGAIN, the resolver not answering yet, is weather above). */
const UNRESOLVED_HOST = new Set(['ENOTFOUND', 'EAI_FAIL']);

/** No such host name: a typo in an endpoint or a missing DNS entry, which asking again does not fix. */
function unresolvedHost(error: unknown, what: string): SecretFetchError | undefined {
  const { code, hostname } = (error ?? {}) as { code?: unknown; hostname?: unknown };
  if (typeof code !== 'string' || !UNRESOLVED_HOST.has(code)) return undefined;
  const host = typeof hostname === 'string' ? ` ${hostname}` : '';
  return new SecretFetchError(
    `could not ${what}: the host name${host} does not resolve (${code})`,
    EXIT.unavailable,
    "check the endpoint's host name (--storage-endpoint, --kms-endpoint, --secret-manager-endpoint or STORAGE_EMULATOR_HOST) and the container's DNS",
  );
}

/** What any service's call can meet on the way, in the order checked, where its classifier said nothing. */
const TRANSPORT_FAILURES = [networkFailure, unresolvedHost, oversizedAnswer, malformedHttp, untrustedServer];

export function transportFailure(error: unknown, what: string): SecretFetchError | undefined {
  for (const recognise of TRANSPORT_FAILURES) {
    const failure = recognise(error, what);
    if (failure !== undefined) return failure;
  }
  return undefined;
}

/** TLS errors that mean the server's certificate is not one to trust: asking again changes nothing. */
const UNTRUSTED_CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function untrustedServer(error: unknown, what: string): SecretFetchError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !UNTRUSTED_CERTIFICATE.has(code)) return undefined;
  return new SecretFetchError(
    `could not ${what}: the server's TLS certificate is not trusted (${code}), so nothing was sent to it`,
    EXIT.unavailable,
    'check the endpoint; if it uses a private CA, give that CA with --ca-file PATH (or SECRET_FETCH_CA_FILE)',
  );
}

/** Node's HTTP parser refused the answer (HPE_HEADER_OVERFLOW, HPE_INVALID_CONTENT_LENGTH, ...). */
function malformedHttp(error: unknown, what: string): SecretFetchError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('HPE_')) return undefined;
  return new SecretFetchError(
    `could not ${what}: the answer is not valid HTTP (${code})`,
    EXIT.unavailable,
    'check the endpoint: is it the Google API, or a proxy in between?',
  );
}

/** An answer cut off at its size limit (google/rest.ts): not weather, and not what the API documents. */
function oversizedAnswer(error: unknown, what: string): IntegrityError | undefined {
  if ((error as { code?: unknown } | null)?.code !== 'EANSWERTOOLARGE') return undefined;
  return new IntegrityError(
    `could not ${what}: ${(error as Error).message}, more than such an answer can hold`,
    'check the endpoint: the answer was not from the Google API as documented',
  );
}
