// A thin Cloud KMS v1 REST client over node:http(s) (src/google/rest.ts), for the five calls secret-fetch makes. The
// official client (google-gax in REST mode, its protobuf definitions and the IAM and locations
// mixins) cost about 60 ms of every gs:// + KMS run to load (README, "Start-up cost").
// Credentials stay google-auth-library's (its request headers); retries stay ours (retry.ts). Errors
// carry the gRPC status code google-gax reported, so the callers' mappings did not change.
//
// The wire format is proto3 JSON: bytes as standard base64, Int64Value wrappers (the CRC32C
// fields) as decimal strings, enums by name; the name travels in the URL, not the body.

import { type ClientAuth, defaultAuth } from './credentials.ts';
import { DEFAULT_ENDPOINTS } from './endpoints.ts';
import {
  authHeaders,
  GoogleApiError,
  googleApiError,
  grpcCodeOfHttpStatus,
  type ResponseHeaders,
  restRequest,
} from './rest.ts';

const DEFAULT_ENDPOINT = DEFAULT_ENDPOINTS.kms;

/** An Int64Value as callers give it; KMS's answers carry decimal strings. */
export interface Int64Value {
  readonly value: number | string;
}

export interface KmsCallOptions {
  /** Aborts the request (the caller's deadline). */
  readonly signal?: AbortSignal;
}

export interface KmsClient {
  decrypt(
    request: {
      readonly name: string;
      readonly ciphertext: Uint8Array;
      readonly ciphertextCrc32c?: Int64Value;
      readonly additionalAuthenticatedData?: Uint8Array;
      readonly additionalAuthenticatedDataCrc32c?: Int64Value;
    },
    options?: KmsCallOptions,
  ): Promise<[DecryptResponse]>;
  encrypt(
    request: {
      readonly name: string;
      readonly plaintext: Uint8Array;
      readonly plaintextCrc32c?: Int64Value;
      readonly additionalAuthenticatedData?: Uint8Array;
      readonly additionalAuthenticatedDataCrc32c?: Int64Value;
    },
    options?: KmsCallOptions,
  ): Promise<[EncryptResponse]>;
  // asymmetricSign and getPublicKey serve secret-fetch sign (src/signing/kms-sign.ts).
  asymmetricSign(
    request: {
      readonly name: string;
      readonly digest: { readonly sha256: Uint8Array };
      readonly digestCrc32c?: Int64Value;
    },
    options?: KmsCallOptions,
  ): Promise<[AsymmetricSignResponse]>;
  getPublicKey(request: { readonly name: string }, options?: KmsCallOptions): Promise<[PublicKeyResponse]>;
  /** The IAMPolicy mixin, for secret-fetch doctor: may the key be used, without decrypting anything. */
  testIamPermissions(
    request: { readonly resource: string; readonly permissions: readonly string[] },
    options?: KmsCallOptions,
  ): Promise<[TestIamPermissionsResponse]>;
}

// The answers, as far as the callers read them. Bytes stay base64 strings (toBuffer decodes them).
export interface DecryptResponse {
  readonly plaintext?: string;
  readonly plaintextCrc32c?: Int64Value;
  readonly usedPrimary?: boolean;
  readonly protectionLevel?: string;
}
export interface EncryptResponse {
  readonly name?: string;
  readonly ciphertext?: string;
  readonly ciphertextCrc32c?: Int64Value;
  readonly verifiedPlaintextCrc32c?: boolean;
  readonly verifiedAdditionalAuthenticatedDataCrc32c?: boolean;
  readonly protectionLevel?: string;
}
export interface AsymmetricSignResponse {
  readonly name?: string;
  readonly signature?: string;
  readonly signatureCrc32c?: Int64Value;
  readonly verifiedDigestCrc32c?: boolean;
  readonly protectionLevel?: string;
}
export interface PublicKeyResponse {
  readonly name?: string;
  readonly pem?: string;
  readonly pemCrc32c?: Int64Value;
  /** By name (EC_SIGN_P256_SHA256); a number only if a server ignores the default. */
  readonly algorithm?: string | number;
  readonly protectionLevel?: string;
}
export interface TestIamPermissionsResponse {
  readonly permissions?: string[];
}

/** A failed Cloud KMS call, with the gRPC status code google-gax would have reported for it. */
export class KmsApiError extends GoogleApiError {
  constructor(message: string, code: number, response: { status: number; headers: ResponseHeaders }) {
    super(message, code, response);
    this.name = 'KmsApiError';
  }
}

export { grpcCodeOfHttpStatus };

/** The error for a response that is not 200 OK: from its Google error body when it has one. */
export function kmsApiError(status: number, headers: ResponseHeaders, text: string): KmsApiError {
  return googleApiError(
    'Cloud KMS',
    status,
    headers,
    text,
    (message, code, response) => new KmsApiError(message, code, response),
  );
}

export function createKmsClient(
  endpoint: string | undefined,
  auth: ClientAuth = defaultAuth(endpoint),
  ca?: readonly string[],
): KmsClient {
  const base = `${new URL(endpoint ?? DEFAULT_ENDPOINT).origin}/v1/`;
  const headersFor = authHeaders(auth);

  async function call<T>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    options: KmsCallOptions = {},
  ): Promise<[T]> {
    const url = base + path;
    const headers = await headersFor(url);
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await restRequest(url, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: options.signal,
      ca,
    });
    const text = response.body.toString('utf8');
    if (response.status !== 200) throw kmsApiError(response.status, response.headers, text);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new KmsApiError('Cloud KMS answered 200 with a body that is not JSON', 2, response);
    }
    return [fromWire(parsed) as T];
  }

  return {
    decrypt: ({ name, ...request }, options) => call('POST', `${resource(name)}:decrypt`, toWire(request), options),
    encrypt: ({ name, ...request }, options) => call('POST', `${resource(name)}:encrypt`, toWire(request), options),
    asymmetricSign: ({ name, ...request }, options) =>
      call('POST', `${resource(name)}:asymmetricSign`, toWire(request), options),
    getPublicKey: ({ name }, options) => call('GET', `${resource(name)}/publicKey`, undefined, options),
    testIamPermissions: ({ resource: name, permissions }, options) =>
      call('POST', `${resource(name)}:testIamPermissions`, { permissions }, options),
  };
}

/** A resource name as a URL path: its slashes stay, anything else is escaped. */
function resource(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

/** A request in proto3 JSON: bytes as base64, an Int64Value ({value}) as a decimal string. */
function toWire(value: unknown): unknown {
  if (value instanceof Uint8Array)
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (Array.isArray(value)) return value.map(toWire);
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  if (entries.length === 1 && entries[0]?.[0] === 'value') return String(entries[0][1]);
  return Object.fromEntries(entries.map(([k, v]) => [k, toWire(v)]));
}

/** An answer as the callers read it: each CRC32C (an Int64Value, a decimal string on the wire) as {value}. */
function fromWire(body: unknown): unknown {
  if (typeof body !== 'object' || body === null) return {};
  return Object.fromEntries(
    Object.entries(body).map(([k, v]) =>
      k.endsWith('Crc32c') && (typeof v === 'string' || typeof v === 'number') ? [k, { value: String(v) }] : [k, v],
    ),
  );
}
