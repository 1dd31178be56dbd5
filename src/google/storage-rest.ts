// The read side of the Cloud Storage JSON API (object metadata, then its media at one generation)
// as a thin client over node:http(s) (src/google/rest.ts). Every gs:// and berglas:// start reads through it: loading
// @google-cloud/storage cost the start path more than the two requests themselves (README,
// "Start-up cost"). The library still serves the operator subcommands that write (push, edit,
// sign) and doctor. Credentials stay google-auth-library's; retries stay ours (retry.ts).

import pkg from '../../package.json' with { type: 'json' };
import { type ClientAuth, defaultAuth } from './credentials.ts';
import { DEFAULT_ENDPOINTS } from './endpoints.ts';
import { authHeaders, type ResponseHeaders, type RestResponse, restRequest } from './rest.ts';

const DEFAULT_ENDPOINT = DEFAULT_ENDPOINTS.storage;
/** Names the caller in Cloud Storage's request logs (and tells the tests' server who asked). */
const USER_AGENT = `secret-fetch/${pkg.version}`;

/** The object resource fields the reader uses (JSON API names). */
export interface ObjectResource {
  readonly generation?: string;
  readonly metageneration?: string;
  readonly size?: string;
  readonly crc32c?: string;
  readonly metadata?: Record<string, unknown> | null;
}

export interface GcsReader {
  /** The object's resource: the live generation, or the one given. */
  getMetadata(bucket: string, object: string, generation?: string): Promise<ObjectResource>;
  /**
   * The object's bytes at exactly that generation; an answer longer than `size` (what the pinned
   * metadata said) is cut off unread and rejects with AnswerTooLargeError.
   */
  download(bucket: string, object: string, generation: string, size: number): Promise<Buffer>;
}

/** An answer that is not 200, with its HTTP status as `code` (what mapStorageError switches on). */
export class GcsApiError extends Error {
  readonly code: number;
  /** Whose Retry-After the retry policy honours (retryAfterMs reads it here). */
  readonly response: { readonly status: number; readonly headers: ResponseHeaders };

  constructor(message: string, status: number, headers: ResponseHeaders) {
    super(message);
    this.name = 'GcsApiError';
    this.code = status;
    this.response = { status, headers };
  }
}

export function createGcsReader(
  endpoint: string | undefined,
  auth: ClientAuth = defaultAuth(endpoint),
  ca?: readonly string[],
): GcsReader {
  // Real Cloud Storage, a private endpoint and the emulators all serve the JSON API under /storage/v1.
  const base = `${new URL(endpoint ?? DEFAULT_ENDPOINT).origin}/storage/v1`;
  const headersFor = authHeaders(auth);
  const objectUrl = (bucket: string, object: string, query: Record<string, string | undefined>) => {
    const params = new URLSearchParams(
      Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined),
    );
    const search = params.size > 0 ? `?${params}` : '';
    return `${base}/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(object)}${search}`;
  };

  async function get(url: string, maxBytes?: number): Promise<RestResponse> {
    const headers = await headersFor(url);
    headers['user-agent'] = USER_AGENT;
    const response = await restRequest(url, {
      method: 'GET',
      headers,
      ca,
      ...(maxBytes === undefined ? {} : { maxBytes }),
    });
    if (response.status !== 200) {
      let message = `Cloud Storage answered HTTP ${response.status}`;
      try {
        const error = (JSON.parse(response.body.toString('utf8')) as { error?: { message?: unknown } } | null)?.error;
        if (typeof error?.message === 'string' && error.message !== '') message = error.message;
      } catch {
        // Not JSON: a proxy's page.
      }
      throw new GcsApiError(message, response.status, response.headers);
    }
    return response;
  }

  return {
    async getMetadata(bucket, object, generation) {
      const response = await get(objectUrl(bucket, object, { generation }));
      let resource: unknown;
      try {
        resource = JSON.parse(response.body.toString('utf8'));
      } catch {
        resource = undefined;
      }
      // Retried like any answer a healthy service does not give.
      if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
        throw new GcsApiError(
          'Cloud Storage answered 200 with a body that is not a JSON object',
          502,
          response.headers,
        );
      }
      return resource as ObjectResource;
    },
    async download(bucket, object, generation, size) {
      return (await get(objectUrl(bucket, object, { alt: 'media', generation }), size)).body;
    },
  };
}
