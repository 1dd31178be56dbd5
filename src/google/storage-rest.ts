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
  /**
   * The object's bytes in one GET, with what its response headers say about them (generation,
   * stored length, CRC32C). `check` sees those before the body is read and may refuse it by
   * throwing; the body is read up to the stored length. Undefined when the answer lacks any of
   * them (an emulator, a stored encoding other than identity): its body is not read, and the
   * caller reads the metadata first instead.
   */
  readMedia(
    bucket: string,
    object: string,
    generation: string | undefined,
    check: (media: MediaHeaders) => void,
  ): Promise<{ readonly headers: MediaHeaders; readonly data: Buffer } | undefined>;
}

/** What a media response's headers say about its body. */
export interface MediaHeaders {
  readonly generation: string;
  readonly metageneration: string;
  /** x-goog-stored-content-length: the object's size. */
  readonly size: number;
  /** The CRC32C of x-goog-hash. */
  readonly crc32c: number;
}

/** The integrity headers of a media response, or undefined if any is missing or malformed. */
export function mediaHeaders(headers: ResponseHeaders): MediaHeaders | undefined {
  const one = (name: string): string | undefined => {
    const value = headers[name];
    return typeof value === 'string' ? value : undefined;
  };
  const generation = one('x-goog-generation') ?? '';
  const length = one('x-goog-stored-content-length') ?? '';
  const hashes = headers['x-goog-hash'];
  const crc = (Array.isArray(hashes) ? hashes.join(',') : (hashes ?? ''))
    .split(',')
    .map((part) => /^\s*crc32c=([A-Za-z0-9+/]{6}==)\s*$/.exec(part)?.[1])
    .find((value) => value !== undefined);
  // The hash and length are the stored object's: they describe this body only if it is served as stored.
  const asStored =
    one('x-goog-stored-content-encoding') === 'identity' && (one('content-encoding') ?? 'identity') === 'identity';
  if (!asStored || !/^[1-9][0-9]*$/.test(generation) || !/^[0-9]{1,15}$/.test(length) || crc === undefined) {
    return undefined;
  }
  return {
    generation,
    metageneration: one('x-goog-metageneration') ?? '',
    size: Number(length),
    crc32c: Buffer.from(crc, 'base64').readUInt32BE(0),
  };
}

/** A media answer without the headers that pin and check it: its body is left unread. */
class NoMediaHeaders extends Error {}

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
    if (response.status !== 200) throw apiError(response);
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
    async readMedia(bucket, object, generation, check) {
      let media: MediaHeaders | undefined;
      try {
        const url = objectUrl(bucket, object, { alt: 'media', generation });
        const response = await restRequest(url, {
          method: 'GET',
          headers: { ...(await headersFor(url)), 'user-agent': USER_AGENT },
          ca,
          onResponse: (status, headers) => {
            if (status !== 200) return undefined;
            media = mediaHeaders(headers);
            if (media === undefined) throw new NoMediaHeaders();
            check(media);
            // The body is read up to the stored length the headers give, and no further.
            return media.size;
          },
        });
        if (response.status !== 200) throw apiError(response);
        return { headers: media as MediaHeaders, data: response.body };
      } catch (error) {
        if (error instanceof NoMediaHeaders) return undefined;
        throw error;
      }
    },
  };
}

/** The error for an answer that is not 200, with the message of its Google error body when it has one. */
function apiError(response: RestResponse): GcsApiError {
  let message = `Cloud Storage answered HTTP ${response.status}`;
  try {
    const error = (JSON.parse(response.body.toString('utf8')) as { error?: { message?: unknown } } | null)?.error;
    if (typeof error?.message === 'string' && error.message !== '') message = error.message;
  } catch {
    // Not JSON: a proxy's page.
  }
  return new GcsApiError(message, response.status, response.headers);
}
