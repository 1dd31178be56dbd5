// What the thin REST clients (Cloud KMS, the Cloud Storage reader) share: one request over
// node:http(s), and request headers from the run's credential.
//
// Not fetch: undici parses HTTP with a WebAssembly build of llhttp, which V8 then optimises in
// background threads, and a process that exits (rather than exec'ing) waits for those threads:
// ~50 ms on every init-container run, measured. node:http's parser is native and loads nothing.

import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { AuthClient } from 'google-auth-library';
import { currentAttemptSignal } from '../retry.ts';
import { CLOUD_PLATFORM_SCOPE, type ClientAuth } from './credentials.ts';
import { GRPC, GRPC_NAMES, type GrpcName } from './grpc.ts';

/** Response headers as node:http gives them (lower-case names); retryAfterMs reads these too. */
export type ResponseHeaders = IncomingHttpHeaders;

export interface RestResponse {
  readonly status: number;
  readonly headers: ResponseHeaders;
  readonly body: Buffer;
}

export interface RestRequest {
  readonly method: 'GET' | 'POST';
  readonly headers: Record<string, string>;
  readonly body?: string;
  /** Aborts the request (the caller's deadline). */
  readonly signal?: AbortSignal | undefined;
  /** Stop reading a 200 answer longer than this many bytes (it rejects with AnswerTooLargeError). */
  readonly maxBytes?: number;
  /** PEM certificates trusted besides the system roots (--ca-file). */
  readonly ca?: readonly string[] | undefined;
  /**
   * Sees the status and headers before any of the body is read; what it throws rejects the
   * request, whose body is then never read (a refusal by the headers alone). A number it returns
   * is the success body's limit in place of maxBytes (a length the headers give).
   */
  readonly onResponse?: (status: number, headers: ResponseHeaders) => number | undefined;
}

/**
 * What a successful answer may hold unless the caller allows more (RestRequest.maxBytes): the JSON
 * answers these clients read are a few KiB, a 64 KiB secret as base64 at the most.
 */
export const ANSWER_MAX_BYTES = 1024 * 1024;
/** An error answer is read for its message only: the rest is never read. */
export const ERROR_ANSWER_MAX_BYTES = 64 * 1024;

/**
 * A successful answer longer than its limit: the rest of it was never read into memory. Its code
 * makes it an integrity failure (76) wherever the caller's classifier says nothing more (retry.ts).
 */
export class AnswerTooLargeError extends Error {
  readonly code = 'EANSWERTOOLARGE';
  readonly maxBytes: number;

  constructor(maxBytes: number, host = 'the service') {
    super(`${host} answered with more than ${maxBytes} bytes`);
    this.name = 'AnswerTooLargeError';
    this.maxBytes = maxBytes;
  }
}

/**
 * One request; resolves with the whole answer, whatever its status. A refused, reset or cut-short
 * connection rejects with node's error, whose `code` (ECONNRESET, ECONNREFUSED, ...) the retry
 * policy recognises.
 */
export async function restRequest(url: string, init: RestRequest): Promise<RestResponse> {
  const target = new URL(url);
  // Loaded on the first request, not with the module: node:https brings TLS, which the local
  // path (which reaches this module through the main script's shared imports) never needs.
  const https = target.protocol === 'https:';
  const { request: send } = https ? await import('node:https') : await import('node:http');
  // Certificates are always checked, whatever the environment says (NODE_TLS_REJECT_UNAUTHORIZED);
  // the one way to trust more is --ca-file, added to the system roots.
  const trust = https ? { rejectUnauthorized: true, ...(init.ca ? { ca: await trustedRoots(init.ca) } : {}) } : {};
  // An attempt abandoned at its limit (retry.ts) takes its request, and the connection, down with it.
  const attempt = currentAttemptSignal();
  const signal = init.signal && attempt ? AbortSignal.any([init.signal, attempt]) : (init.signal ?? attempt);
  // A connection opened ahead (preconnect), checked as this request would check its own.
  const warm = takeWarm(target.origin);
  const via = warm === undefined ? {} : { createConnection: () => warm };
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.body !== undefined) headers['content-length'] = String(Buffer.byteLength(init.body));
    // The answer may be a secret: every chunk is zeroed once copied out or given up on (an
    // abandoned attempt's late bytes too), not left for the garbage collector.
    const chunks: Buffer[] = [];
    const wipe = () => {
      for (const held of chunks) held.fill(0);
      chunks.length = 0;
    };
    const fail = (error: unknown) => {
      wipe();
      reject(error);
    };
    const req = send(target, { method: init.method, headers, signal, ...trust, ...via }, (res) => {
      const status = res.statusCode ?? 0;
      const give = () => {
        const body = Buffer.concat(chunks);
        wipe();
        resolve({ status, headers: res.headers, body });
      };
      let received = 0;
      let cut = false;
      let given: number | undefined;
      try {
        given = init.onResponse?.(status, res.headers);
      } catch (error) {
        req.destroy();
        reject(error);
        return;
      }
      const success = status >= 200 && status < 300;
      const limit = success ? (given ?? init.maxBytes ?? ANSWER_MAX_BYTES) : ERROR_ANSWER_MAX_BYTES;
      // Every answer is capped as it streams, so an endless or huge body never grows in memory.
      res.on('data', (chunk: Buffer) => {
        if (cut) return;
        received += chunk.length;
        if (received <= limit) {
          chunks.push(chunk);
          return;
        }
        cut = true;
        req.destroy();
        if (success) {
          chunk.fill(0);
          fail(new AnswerTooLargeError(limit, target.host));
          return;
        }
        // An error answer keeps its status (the retry policy's business) and its first bytes.
        chunks.push(chunk.subarray(0, chunk.length - (received - limit)));
        give();
      });
      res.on('error', fail);
      res.on('aborted', () =>
        fail(Object.assign(new Error('the connection closed mid-answer'), { code: 'ECONNRESET' })),
      );
      res.on('end', () => {
        if (!res.complete) {
          fail(Object.assign(new Error('the connection closed mid-answer'), { code: 'ECONNRESET' }));
          return;
        }
        give();
      });
    });
    req.on('error', fail);
    req.end(init.body);
  });
}

/** Connections opened ahead of their first request, one per origin, until a request takes it. */
const warming = new Map<string, Socket>();

/**
 * Opens the TCP (and TLS) connection to `url`'s origin now, so its handshakes overlap whatever
 * the run does before its first request there (Cloud KMS while Cloud Storage answers). The
 * certificate is checked exactly as restRequest checks it; a connection that fails, closes or is
 * never used costs nothing: the request then opens its own, and reports its own error.
 */
export async function preconnect(url: string, ca?: readonly string[]): Promise<void> {
  const target = new URL(url);
  if (warming.has(target.origin)) return;
  const https = target.protocol === 'https:';
  const port = Number(target.port) || (https ? 443 : 80);
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  const { isIP, connect: connectTcp } = await import('node:net');
  let socket: Socket;
  if (https) {
    const { connect } = await import('node:tls');
    socket = connect({
      host,
      port,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      rejectUnauthorized: true,
      ALPNProtocols: ['http/1.1'],
      ...(ca ? { ca: await trustedRoots(ca) } : {}),
    });
  } else {
    socket = connectTcp({ host, port });
  }
  if (warming.has(target.origin)) {
    socket.destroy();
    return;
  }
  warming.set(target.origin, socket);
  // Not the caller's business: the request that would have used it reports its own failure.
  const forget = () => {
    if (warming.get(target.origin) === socket) warming.delete(target.origin);
  };
  socket.on('error', forget);
  socket.on('close', forget);
  // An unused connection never holds the process open (an init container exits at once).
  socket.unref();
}

/** The connection opened ahead to `origin`, if it is still usable; each is handed out once. */
function takeWarm(origin: string): Socket | undefined {
  const socket = warming.get(origin);
  if (socket === undefined) return undefined;
  warming.delete(origin);
  if (socket.destroyed) return undefined;
  socket.ref();
  return socket;
}

let roots: { extra: readonly string[]; all: string[] } | undefined;

/** The system roots plus `extra`, built once per run. */
async function trustedRoots(extra: readonly string[]): Promise<string[]> {
  if (roots?.extra !== extra) {
    const { rootCertificates } = await import('node:tls');
    roots = { extra, all: [...rootCertificates, ...extra] };
  }
  return roots.all;
}

/** Request headers from the credential: none for an emulator, the loaded one, or ADC found on first use. */
export function authHeaders(auth: ClientAuth): (url: string) => Promise<Record<string, string>> {
  if (auth === 'none') return async () => ({});
  if (auth !== 'adc') return async (url) => plainHeaders(await auth.getRequestHeaders(url));
  let found: Promise<AuthClient> | undefined;
  return async (url) => {
    found ??= import('google-auth-library').then(async ({ GoogleAuth, JWT }) => {
      const client = await new GoogleAuth({ scopes: [CLOUD_PLATFORM_SCOPE] }).getClient();
      // A service-account key signs its own JWT for each request (as Google's Go clients do),
      // instead of first exchanging one for an access token at oauth2.googleapis.com: one
      // connection (TCP, TLS) and one request fewer before the first call.
      if (client instanceof JWT) client.useJWTAccessWithScope = true;
      return client;
    });
    const lookup = found;
    // A failed lookup is not kept: the retry policy's next attempt looks again.
    lookup.catch(() => {
      if (found === lookup) found = undefined;
    });
    return plainHeaders(await (await lookup).getRequestHeaders(url));
  };
}

/** google-auth-library gives a Headers object (or, in older shapes, a plain one). */
function plainHeaders(headers: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers === null || typeof headers !== 'object') return out;
  const each = (headers as { forEach?: unknown }).forEach;
  if (typeof each === 'function') {
    (headers as { forEach(f: (value: string, name: string) => void): void }).forEach((value, name) => {
      out[name.toLowerCase()] = value;
    });
  } else {
    for (const [name, value] of Object.entries(headers)) if (typeof value === 'string') out[name.toLowerCase()] = value;
  }
  return out;
}

/** A failed call to a Google API, with the gRPC status code google-gax would have reported for it. */
export class GoogleApiError extends Error {
  /** The gRPC status code (3 INVALID_ARGUMENT, 14 UNAVAILABLE, ...): what the callers switch on. */
  readonly code: number;
  /** Its name, from the error body, or derived from the HTTP status. */
  readonly status: string;
  readonly httpStatusCode: number;
  /** The HTTP response, whose Retry-After the retry policy honours (retryAfterMs reads it here). */
  readonly response: { readonly status: number; readonly headers: ResponseHeaders };

  constructor(message: string, code: number, response: { status: number; headers: ResponseHeaders }) {
    super(message);
    this.name = 'GoogleApiError';
    this.code = code;
    this.status = GRPC_NAMES[code] ?? 'UNKNOWN';
    this.httpStatusCode = response.status;
    this.response = response;
  }
}

/** The gRPC code for an HTTP status that came without a Google error body (as google-gax maps it). */
export function grpcCodeOfHttpStatus(status: number): number {
  const known: Record<number, number> = {
    400: GRPC.INVALID_ARGUMENT,
    401: GRPC.UNAUTHENTICATED,
    403: GRPC.PERMISSION_DENIED,
    404: GRPC.NOT_FOUND,
    409: GRPC.ABORTED,
    429: GRPC.RESOURCE_EXHAUSTED,
    499: GRPC.CANCELLED,
    501: GRPC.UNIMPLEMENTED,
    503: GRPC.UNAVAILABLE,
    504: GRPC.DEADLINE_EXCEEDED,
  };
  if (known[status] !== undefined) return known[status];
  if (status >= 400 && status < 500) return GRPC.FAILED_PRECONDITION;
  if (status >= 500) return GRPC.INTERNAL;
  return GRPC.UNKNOWN; // a redirect or another answer a JSON API never gives
}

/** The error for a response that is not 200 OK: from its Google error body when it has one. */
export function googleApiError<E extends GoogleApiError>(
  service: string,
  status: number,
  headers: ResponseHeaders,
  text: string,
  make: (message: string, code: number, response: { status: number; headers: ResponseHeaders }) => E,
): E {
  let error: { code?: unknown; message?: unknown; status?: unknown } | undefined;
  try {
    error = (JSON.parse(text) as { error?: typeof error } | null)?.error;
  } catch {
    // Not JSON: a proxy's page, or a truncated body.
  }
  const named = typeof error?.status === 'string' ? GRPC_NAMES.indexOf(error.status as GrpcName) : -1;
  const code = named > 0 ? named : grpcCodeOfHttpStatus(status);
  const message =
    typeof error?.message === 'string' && error.message !== '' ? error.message : `${service} answered HTTP ${status}`;
  return make(message, code, { status, headers });
}
