// The read side of Secret Manager v1 REST (AccessSecretVersion, GetSecretVersion) as a thin client
// over node:http(s) (src/google/rest.ts): every sm:// source and reference reads through it, as
// gs:// reads through storage-rest.ts, so a start never loads google-gax. The official client still
// serves what operators run (push, edit, doctor). Credentials stay google-auth-library's; retries
// stay ours; errors carry the gRPC status code google-gax reported, so mapSecretManagerError holds.

import { type ClientAuth, defaultAuth } from './credentials.ts';
import { DEFAULT_ENDPOINTS } from './endpoints.ts';
import { authHeaders, GoogleApiError, googleApiError, restRequest } from './rest.ts';

const DEFAULT_ENDPOINT = DEFAULT_ENDPOINTS.secretManager;

/** The answers as the reader uses them (proto3 JSON: bytes as base64, int64 as a decimal string). */
export interface AccessResponse {
  readonly name?: string;
  readonly payload?: { readonly data?: string; readonly dataCrc32c?: string | number };
}
export interface VersionResponse {
  readonly name?: string;
  readonly state?: string;
}

export interface SecretManagerReader {
  accessSecretVersion(request: { readonly name: string }, options?: unknown): Promise<[AccessResponse]>;
  getSecretVersion(request: { readonly name: string }, options?: unknown): Promise<[VersionResponse]>;
}

export function createSecretManagerReader(
  endpoint: string | undefined,
  auth: ClientAuth = defaultAuth(endpoint),
  ca?: readonly string[],
): SecretManagerReader {
  const base = `${new URL(endpoint ?? DEFAULT_ENDPOINT).origin}/v1/`;
  const headersFor = authHeaders(auth);

  async function get<T>(path: string): Promise<[T]> {
    const url = base + path;
    const response = await restRequest(url, { method: 'GET', headers: await headersFor(url), ca });
    const text = response.body.toString('utf8');
    if (response.status !== 200) {
      throw googleApiError(
        'Secret Manager',
        response.status,
        response.headers,
        text,
        (m, c, r) => new GoogleApiError(m, c, r),
      );
    }
    try {
      return [JSON.parse(text) as T];
    } catch {
      throw new GoogleApiError('Secret Manager answered 200 with a body that is not JSON', 2, response);
    }
  }

  return {
    accessSecretVersion: ({ name }) => get(`${resource(name)}:access`),
    getSecretVersion: ({ name }) => get(resource(name)),
  };
}

/** A resource name as a URL path: its slashes stay, anything else is escaped. */
function resource(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}
