// An in-memory Cloud Storage JSON API server for tests, speaking the real REST wire format so the
// real @google-cloud/storage client can drive it (via STORAGE_EMULATOR_HOST or apiEndpoint).
//
// What @google-cloud/storage 8.4 sends (observed against this server):
// - STORAGE_EMULATOR_HOST=http://127.0.0.1:P is used as the base URL as is (no /storage/v1):
//     metadata  GET  /b/B/o/O                       (O percent-encoded: "a/b c" -> a%2Fb%20c)
//     media     GET  /b/B/o/O?alt=media[&generation=G]  (Accept-Encoding: gzip, Cache-Control: no-store)
//     delete    DELETE /b/B/o/O                     (sent by the client itself when it rejects an upload's hashes)
//     IAM       GET  /b/B/iam/testPermissions?permissions=P[&permissions=P2]  (bucket.iam.testPermissions)
//     patch     PATCH  /b/B/o/O[?generation=G][&ifGenerationMatch=G][&ifMetagenerationMatch=M]  (File#setMetadata;
//               JSON body, e.g. {"metadata": {"k": "v"}}: custom keys merge, a null value deletes its key; the
//               metageneration goes up by one; a precondition that does not hold gets 412 conditionNotMet)
//   with `apiEndpoint: 'http://127.0.0.1:P'` instead, the same paths carry a /storage/v1 prefix.
// - Uploads always go to /upload/storage/v1/b/B/o:
//     multipart  POST ?uploadType=multipart&name=N[&ifGenerationMatch=..]  multipart/related body:
//                a JSON part (the resource, `{}` unless metadata was given) and the media part
//     resumable  POST ?name=N&uploadType=resumable (JSON resource body) -> 200 + Location: session URI;
//                then PUT <session URI> with Content-Range `bytes 0-*/*` (one streamed request; the server
//                must finalize when that request ends) or, with chunkSize, `bytes A-B/T|*` chunks answered
//                by 308 + `Range: bytes=0-N` until the last one; `bytes */*` asks for the status.
// - After an upload the client compares the resource's crc32c/md5Hash with its own and, on a mismatch,
//   DELETEs the object and fails with code FILE_NO_UPLOAD.
// - A download is validated against `x-goog-hash` ONLY if the response also carries
//   `x-goog-stored-content-encoding: identity` (or gzip while the response is gzipped).

import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { crc32cBase64 } from './crc32c.ts';
import {
  type FaultMatch,
  FaultQueue,
  type FaultResponse,
  faultFromJson,
  type ListenOptions,
  type LoggedRequest,
  listen,
  pathForms,
  queryObject,
  readBody,
  readJson,
  runSideEffect,
  type SendOptions,
  safeDecode,
  send,
  sendJson,
  serveFault,
} from './http.ts';

export type { FaultMatch, FaultResponse, LoggedRequest } from './http.ts';

export interface GcsServerOptions extends ListenOptions {
  /** Create a bucket on first upload to it (default true). When false, uploads to unknown buckets get 404. */
  autoCreateBuckets?: boolean;
  /** The identity named in 403 messages. */
  principal?: string;
}

export interface StoredObject {
  bucket: string;
  name: string;
  generation: string;
  metageneration: string;
  data: Buffer;
  contentType: string;
  /** Cache-Control given at upload, if any. */
  cacheControl?: string;
  metadata: Record<string, string>;
  md5Hash: string;
  crc32c: string;
  timeCreated: string;
  updated: string;
}

export interface GcsServer {
  /** e.g. "http://127.0.0.1:PORT" - the value for STORAGE_EMULATOR_HOST. */
  readonly url: string;
  readonly port: number;
  /** Every API request received, in order (control requests excluded). Clear with `requests.length = 0`. */
  readonly requests: LoggedRequest[];
  createBucket(bucket: string): void;
  /** Store a new generation of the object (older generations stay readable by generation). */
  putObject(
    bucket: string,
    name: string,
    data: Buffer | Uint8Array | string,
    metadata?: Record<string, string>,
    options?: { contentType?: string },
  ): { generation: string };
  /** The live object, or the given generation of it. */
  getObject(bucket: string, name: string, generation?: string): StoredObject | undefined;
  /** Delete the live version (older generations stay readable by generation). */
  deleteObject(bucket: string, name: string): boolean;
  /**
   * Merge custom metadata into the live object (or the given generation) as a PATCH would, raising its
   * metageneration; a null value deletes the key.
   */
  patchMetadata(
    bucket: string,
    name: string,
    metadata: Record<string, string | null>,
    generation?: string,
  ): StoredObject;
  /** Every request touching this object gets 403 (bucket-level testPermissions still grants). */
  denyObject(bucket: string, name: string): void;
  allowObject(bucket: string, name: string): void;
  /**
   * The principal holds no role on this bucket: testPermissions grants nothing and every object
   * request in it gets 403 (as under uniform bucket-level access with no binding).
   */
  denyBucket(bucket: string): void;
  allowBucket(bucket: string): void;
  /** An object ACL lets the principal read this object even in a denied bucket (fine-grained access). */
  grantObjectAcl(bucket: string, name: string): void;
  /** The next matching requests (one per response, in order) get these responses instead. */
  failNext(match: FaultMatch, responses: readonly FaultResponse[]): void;
  /** Faulted responses not yet served. */
  readonly pendingFaults: number;
  /** The next media download has one byte flipped but carries the original hash headers. */
  corruptNextMedia(): void;
  /** Drop the connections of requests held by 'stall' faults. */
  releaseStalled(): void;
  /** Forget faults, denials and the request log (objects stay). */
  reset(): void;
  close(): Promise<void>;
}

interface ObjectEntry {
  /** Every generation ever written, oldest first. */
  versions: StoredObject[];
  live: StoredObject | undefined;
}

interface UploadSession {
  bucket: string;
  name: string;
  contentType: string;
  metadata: Record<string, string>;
  query: Record<string, string>;
  hashes: SuppliedHashes;
  chunks: Buffer[];
  received: number;
  result?: Record<string, unknown>;
}

interface SuppliedHashes {
  crc32c?: string;
  md5Hash?: string;
}

class HttpError extends Error {
  status: number;
  body: unknown;
  constructor(status: number, body: unknown) {
    super(`HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

const REASONS: Record<number, [reason: string, message: string]> = {
  400: ['invalid', 'Invalid argument.'],
  401: ['required', 'Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object.'],
  403: ['forbidden', 'Access denied.'],
  404: ['notFound', 'Not Found'],
  408: ['requestTimeout', 'Request timed out.'],
  412: ['conditionNotMet', 'At least one of the pre-conditions you specified did not hold.'],
  416: ['requestedRangeNotSatisfiable', 'The requested range cannot be satisfied.'],
  429: ['rateLimitExceeded', 'The rate of change requests to the object is too high.'],
  500: ['backendError', 'We encountered an internal error. Please try again.'],
  502: ['badGateway', 'Bad Gateway'],
  503: ['backendError', 'We encountered an internal error. Please try again.'],
  504: ['gatewayTimeout', 'Gateway Timeout'],
};

/** A Cloud Storage JSON API error body. */
export function gcsErrorBody(code: number, message?: string, reason?: string, extra: Record<string, string> = {}) {
  const [defaultReason, defaultMessage] = REASONS[code] ?? ['unknown', `HTTP ${code}`];
  const msg = message ?? defaultMessage;
  return {
    error: {
      code,
      message: msg,
      errors: [{ message: msg, domain: 'global', reason: reason ?? defaultReason, ...extra }],
    },
  };
}

function fail(code: number, message?: string, reason?: string, extra?: Record<string, string>): never {
  throw new HttpError(code, gcsErrorBody(code, message, reason, extra));
}

const md5Base64 = (data: Buffer) => createHash('md5').update(data).digest('base64');

export async function startGcsServer(opts: GcsServerOptions = {}): Promise<GcsServer> {
  const autoCreateBuckets = opts.autoCreateBuckets ?? true;
  const principal = opts.principal ?? 'secret-fetch-test@test-project.iam.gserviceaccount.com';
  const buckets = new Map<string, { timeCreated: string; objects: Map<string, ObjectEntry> }>();
  const denied = new Set<string>();
  const deniedBuckets = new Set<string>();
  const aclGrants = new Set<string>();
  const sessions = new Map<string, UploadSession>();
  const faults = new FaultQueue();
  const requests: LoggedRequest[] = [];
  let corruptMedia = 0;
  let lastGeneration = 0;

  const key = (bucket: string, name: string) => `${bucket}\u0000${name}`;

  function createBucket(bucket: string) {
    if (!buckets.has(bucket)) buckets.set(bucket, { timeCreated: new Date().toISOString(), objects: new Map() });
  }

  // Generations are microsecond timestamps as in real GCS, strictly increasing.
  function nextGeneration(): string {
    lastGeneration = Math.max(lastGeneration + 1, Date.now() * 1000);
    return String(lastGeneration);
  }

  function store(
    bucket: string,
    name: string,
    data: Buffer,
    contentType: string,
    metadata: Record<string, string>,
    cacheControl?: string,
  ) {
    createBucket(bucket);
    const objects = buckets.get(bucket)?.objects as Map<string, ObjectEntry>;
    let entry = objects.get(name);
    if (!entry) {
      entry = { versions: [], live: undefined };
      objects.set(name, entry);
    }
    const now = new Date().toISOString();
    const obj: StoredObject = {
      bucket,
      name,
      generation: nextGeneration(),
      metageneration: '1',
      data: Buffer.from(data),
      contentType,
      metadata: { ...metadata },
      md5Hash: md5Base64(data),
      crc32c: crc32cBase64(data),
      timeCreated: now,
      updated: now,
      ...(cacheControl === undefined ? {} : { cacheControl }),
    };
    entry.versions.push(obj);
    entry.live = obj;
    return obj;
  }

  function applyPatch(obj: StoredObject, patch: ResourcePatch): StoredObject {
    for (const [k, v] of Object.entries(patch.metadata ?? {})) {
      if (v === null) delete obj.metadata[k];
      else obj.metadata[k] = v;
    }
    if (patch.contentType !== undefined) obj.contentType = patch.contentType;
    obj.metageneration = String(Number(obj.metageneration) + 1);
    obj.updated = new Date().toISOString();
    return obj;
  }

  function entryOf(bucket: string, name: string): ObjectEntry | undefined {
    return buckets.get(bucket)?.objects.get(name);
  }

  function getObject(bucket: string, name: string, generation?: string): StoredObject | undefined {
    const entry = entryOf(bucket, name);
    if (!entry) return undefined;
    if (generation === undefined) return entry.live;
    return entry.versions.find((v) => v.generation === generation);
  }

  const listening = await listen(handle, opts);
  const base = listening.url;

  function resource(o: StoredObject): Record<string, unknown> {
    const b = encodeURIComponent(o.bucket);
    const n = encodeURIComponent(o.name);
    const r: Record<string, unknown> = {
      kind: 'storage#object',
      id: `${o.bucket}/${o.name}/${o.generation}`,
      selfLink: `${base}/storage/v1/b/${b}/o/${n}`,
      mediaLink: `${base}/download/storage/v1/b/${b}/o/${n}?generation=${o.generation}&alt=media`,
      name: o.name,
      bucket: o.bucket,
      generation: o.generation,
      metageneration: o.metageneration,
      contentType: o.contentType,
      storageClass: 'STANDARD',
      size: String(o.data.length),
      md5Hash: o.md5Hash,
      crc32c: o.crc32c,
      etag: etag(o),
      timeCreated: o.timeCreated,
      updated: o.updated,
      timeStorageClassUpdated: o.timeCreated,
      timeFinalized: o.timeCreated,
    };
    if (Object.keys(o.metadata).length > 0) r.metadata = { ...o.metadata };
    if (o.cacheControl !== undefined) r.cacheControl = o.cacheControl;
    return r;
  }

  const etag = (o: StoredObject) =>
    createHash('sha256')
      .update(`${o.bucket}/${o.name}/${o.generation}/${o.metageneration}`)
      .digest('base64')
      .slice(0, 16);

  function checkDenied(bucket: string, name: string, permission: string) {
    const bucketDenies =
      deniedBuckets.has(bucket) && !(permission === 'storage.objects.get' && aclGrants.has(key(bucket, name)));
    if (denied.has(key(bucket, name)) || bucketDenies) {
      fail(
        403,
        `${principal} does not have ${permission} access to the Google Cloud Storage object. Permission '${permission}' denied on resource (or it may not exist).`,
        'forbidden',
      );
    }
  }

  function requireBucket(bucket: string, create: boolean) {
    if (!buckets.has(bucket)) {
      if (create && autoCreateBuckets) createBucket(bucket);
      else fail(404, 'The specified bucket does not exist.', 'notFound');
    }
  }

  function checkPreconditions(obj: StoredObject | undefined, q: Record<string, string>) {
    const notMet = () => fail(412, undefined, 'conditionNotMet', { locationType: 'header', location: 'If-Match' });
    const g = q.ifGenerationMatch;
    if (g !== undefined && (g === '0' ? obj !== undefined : obj?.generation !== g)) notMet();
    const gn = q.ifGenerationNotMatch;
    if (gn !== undefined && (gn === '0' ? obj === undefined : obj?.generation === gn)) notMet();
    const m = q.ifMetagenerationMatch;
    if (m !== undefined && obj?.metageneration !== m) notMet();
    const mn = q.ifMetagenerationNotMatch;
    if (mn !== undefined && (obj === undefined || obj.metageneration === mn)) notMet();
  }

  function selectForRead(bucket: string, name: string, q: Record<string, string>): StoredObject {
    checkDenied(bucket, name, 'storage.objects.get');
    requireBucket(bucket, false);
    const g = q.generation;
    if (g !== undefined && !/^\d+$/.test(g)) fail(400, `Invalid value for generation: ${g}`, 'invalid');
    const obj = getObject(bucket, name, g);
    if (!obj) fail(404, `No such object: ${bucket}/${name}`, 'notFound');
    checkPreconditions(obj, q);
    return obj;
  }

  function commit(
    bucket: string,
    name: string,
    data: Buffer,
    contentType: string,
    metadata: Record<string, string>,
    q: Record<string, string>,
    hashes: SuppliedHashes,
    cacheControl?: string,
  ): Record<string, unknown> {
    checkDenied(bucket, name, 'storage.objects.create');
    requireBucket(bucket, true);
    checkPreconditions(entryOf(bucket, name)?.live, q);
    const crc = crc32cBase64(data);
    if (hashes.crc32c !== undefined && hashes.crc32c !== crc) {
      fail(400, `Provided CRC32C "${hashes.crc32c}" doesn't match calculated CRC32C "${crc}".`, 'invalid');
    }
    const md5 = md5Base64(data);
    if (hashes.md5Hash !== undefined && hashes.md5Hash !== md5) {
      fail(400, `Provided MD5 hash "${hashes.md5Hash}" doesn't match calculated MD5 hash "${md5}".`, 'invalid');
    }
    return resource(store(bucket, name, data, contentType, metadata, cacheControl));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', base);
    const method = req.method ?? 'GET';
    const rawPath = url.pathname;
    const query = queryObject(url);

    if (rawPath.startsWith('/_emulator/')) return control(req, res, rawPath, query);

    requests.push({ method, path: rawPath, query, headers: req.headers });

    const fault = await runSideEffect(
      faults.take(method, pathForms(rawPath, ['/storage/v1', '/upload/storage/v1', '/download/storage/v1']), query),
    );
    if (fault !== undefined && fault !== 'truncate' && fault !== 'pass') {
      return serveFault(req, res, fault, (status) => gcsErrorBody(status), listening.stalled);
    }
    const sendOpts: SendOptions = { truncate: fault === 'truncate' };

    try {
      await route(req, res, method, rawPath, query, sendOpts);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      if (!req.readableEnded) await readBody(req);
      sendJson(res, err.status, err.body, {}, sendOpts);
    }
  }

  async function route(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    rawPath: string,
    q: Record<string, string>,
    sendOpts: SendOptions,
  ): Promise<void> {
    let path = rawPath;
    let kind: 'json' | 'upload' | 'download' = 'json';
    for (const [prefix, k] of [
      ['/upload/storage/v1', 'upload'],
      ['/download/storage/v1', 'download'],
      ['/storage/v1', 'json'],
      ['/upload', 'upload'],
    ] as const) {
      if (path.startsWith(`${prefix}/`)) {
        path = path.slice(prefix.length);
        kind = k;
        break;
      }
    }

    const iamMatch = /^\/b\/([^/]+)\/iam\/testPermissions$/.exec(path);
    const objectMatch = /^\/b\/([^/]+)\/o\/(.+)$/.exec(path);
    const listMatch = /^\/b\/([^/]+)\/o\/?$/.exec(path);
    const bucketMatch = /^\/b\/([^/]+)\/?$/.exec(path);

    if (kind === 'upload') {
      if (!listMatch) fail(404, 'Not Found', 'notFound');
      const bucket = safeDecode(listMatch[1] as string);
      if (q.upload_id !== undefined && (method === 'PUT' || method === 'POST')) {
        return resumableChunk(req, res, q, sendOpts);
      }
      if (method === 'POST') return uploadStart(req, res, bucket, q, sendOpts);
      fail(405, `Method ${method} not allowed for uploads`, 'methodNotAllowed');
    }

    if (objectMatch) {
      const bucket = safeDecode(objectMatch[1] as string);
      const name = safeDecode(objectMatch[2] as string);
      if (method === 'GET' && (kind === 'download' || q.alt === 'media')) {
        return media(req, res, bucket, name, q, sendOpts);
      }
      if (method === 'GET') {
        await readBody(req);
        return sendJson(res, 200, resource(selectForRead(bucket, name, q)), {}, sendOpts);
      }
      if (method === 'PATCH') {
        const patch = parseResourcePatch(await readBody(req));
        checkDenied(bucket, name, 'storage.objects.update');
        requireBucket(bucket, false);
        const obj = getObject(bucket, name, q.generation);
        if (!obj) fail(404, `No such object: ${bucket}/${name}`, 'notFound');
        checkPreconditions(obj, q);
        return sendJson(res, 200, resource(applyPatch(obj, patch)), {}, sendOpts);
      }
      if (method === 'DELETE') {
        await readBody(req);
        checkDenied(bucket, name, 'storage.objects.delete');
        requireBucket(bucket, false);
        const entry = entryOf(bucket, name);
        const obj =
          q.generation === undefined ? entry?.live : entry?.versions.find((v) => v.generation === q.generation);
        if (!entry || !obj) fail(404, `No such object: ${bucket}/${name}`, 'notFound');
        checkPreconditions(obj, q);
        if (q.generation === undefined || entry.live === obj) entry.live = undefined;
        if (q.generation !== undefined) entry.versions = entry.versions.filter((v) => v !== obj);
        return send(res, 204, undefined, {}, sendOpts);
      }
      fail(405, `Method ${method} is not supported by this test server`, 'methodNotAllowed');
    }

    if (listMatch && method === 'GET') {
      await readBody(req);
      const bucket = safeDecode(listMatch[1] as string);
      requireBucket(bucket, false);
      const prefix = q.prefix ?? '';
      const items: Record<string, unknown>[] = [];
      const objects = buckets.get(bucket)?.objects ?? new Map<string, ObjectEntry>();
      for (const [name, entry] of [...objects].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        if (!name.startsWith(prefix)) continue;
        if (q.versions === 'true') items.push(...entry.versions.map(resource));
        else if (entry.live) items.push(resource(entry.live));
      }
      return sendJson(res, 200, { kind: 'storage#objects', items }, {}, sendOpts);
    }

    if (iamMatch && kind === 'json' && method === 'GET') {
      await readBody(req);
      const bucket = safeDecode(iamMatch[1] as string);
      // Repeated ?permissions= parameters: the query object keeps only the last one.
      const asked = new URL(req.url ?? '/', base).searchParams.getAll('permissions');
      return sendJson(res, 200, testPermissions(bucket, asked), {}, sendOpts);
    }

    if (bucketMatch && method === 'GET') {
      await readBody(req);
      const bucket = safeDecode(bucketMatch[1] as string);
      requireBucket(bucket, false);
      const b = buckets.get(bucket);
      return sendJson(
        res,
        200,
        {
          kind: 'storage#bucket',
          id: bucket,
          name: bucket,
          selfLink: `${base}/storage/v1/b/${encodeURIComponent(bucket)}`,
          location: 'US',
          storageClass: 'STANDARD',
          metageneration: '1',
          versioning: { enabled: true },
          timeCreated: b?.timeCreated,
          updated: b?.timeCreated,
        },
        {},
        sendOpts,
      );
    }

    fail(404, 'Not Found', 'notFound');
  }

  // storage.buckets.testIamPermissions needs no permission itself; it answers the subset of the
  // asked permissions the caller holds (the field is left out when empty, as proto3 JSON does).
  function testPermissions(bucket: string, asked: readonly string[]): Record<string, unknown> {
    if (asked.length === 0) fail(400, 'Required parameter: permissions', 'required');
    for (const permission of asked) {
      if (!/^storage\.[a-zA-Z]+\.[a-zA-Z]+$/.test(permission)) {
        fail(400, `Permission '${permission}' is not valid.`, 'invalid');
      }
      if (permission === 'storage.buckets.list' || permission === 'storage.buckets.create') {
        fail(400, `Permission '${permission}' applies to projects, not to buckets.`, 'invalid');
      }
    }
    requireBucket(bucket, false);
    const held = deniedBuckets.has(bucket) ? [] : [...asked];
    return { kind: 'storage#testIamPermissionsResponse', ...(held.length > 0 ? { permissions: held } : {}) };
  }

  async function media(
    req: IncomingMessage,
    res: ServerResponse,
    bucket: string,
    name: string,
    q: Record<string, string>,
    sendOpts: SendOptions,
  ): Promise<void> {
    await readBody(req);
    const obj = selectForRead(bucket, name, q);
    const total = obj.data.length;
    let body = obj.data;
    let status = 200;
    const headers: Record<string, string> = {
      'content-type': obj.contentType,
      'x-goog-hash': `crc32c=${obj.crc32c},md5=${obj.md5Hash}`,
      'x-goog-generation': obj.generation,
      'x-goog-metageneration': obj.metageneration,
      'x-goog-stored-content-length': String(total),
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-storage-class': 'STANDARD',
      etag: `"${etag(obj)}"`,
      'last-modified': new Date(obj.updated).toUTCString(),
      'cache-control': 'no-cache, no-store, max-age=0, must-revalidate',
    };
    const range = req.headers.range;
    if (range !== undefined) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      let start = 0;
      let end = total - 1;
      if (m && m[1] !== '') {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(Number(m[2]), total - 1);
      } else if (m && m[2] !== '') {
        start = Math.max(0, total - Number(m[2]));
      }
      if (!m || (m[1] === '' && m[2] === '') || start >= total || start > end) {
        fail(416, 'The requested range cannot be satisfied.', 'requestedRangeNotSatisfiable');
      }
      status = 206;
      body = obj.data.subarray(start, end + 1);
      headers['content-range'] = `bytes ${start}-${end}/${total}`;
    }
    if (corruptMedia > 0 && body.length > 0) {
      corruptMedia--;
      body = Buffer.from(body);
      const i = Math.floor(body.length / 2);
      body[i] = (body[i] as number) ^ 0x01;
    }
    send(res, status, body, headers, sendOpts);
  }

  async function uploadStart(
    req: IncomingMessage,
    res: ServerResponse,
    bucket: string,
    q: Record<string, string>,
    sendOpts: SendOptions,
  ): Promise<void> {
    const body = await readBody(req);
    const uploadType = q.uploadType ?? 'media';
    if (uploadType === 'multipart') {
      const parts = parseMultipart(body, req.headers['content-type'] ?? '');
      const [metaPart, mediaPart] = parts;
      if (!metaPart || !mediaPart) fail(400, 'Multipart upload needs a metadata part and a media part.', 'invalid');
      const meta = parseResource(metaPart.body);
      const name = q.name ?? meta.name;
      if (!name) fail(400, 'Required', 'required');
      const contentType = meta.contentType ?? mediaPart.headers['content-type'] ?? 'application/octet-stream';
      const result = commit(
        bucket,
        name,
        mediaPart.body,
        contentType,
        meta.metadata,
        q,
        meta.hashes,
        meta.cacheControl,
      );
      return sendJson(res, 200, result, {}, sendOpts);
    }
    if (uploadType === 'media') {
      const name = q.name;
      if (!name) fail(400, 'Required', 'required');
      const contentType = req.headers['content-type'] ?? 'application/octet-stream';
      return sendJson(res, 200, commit(bucket, name, body, contentType, {}, q, {}), {}, sendOpts);
    }
    if (uploadType === 'resumable') {
      const meta = parseResource(body);
      const name = q.name ?? meta.name;
      if (!name) fail(400, 'Required', 'required');
      checkDenied(bucket, name, 'storage.objects.create');
      requireBucket(bucket, true);
      checkPreconditions(entryOf(bucket, name)?.live, q);
      const headerType = req.headers['x-upload-content-type'];
      const id = randomUUID().replaceAll('-', '');
      sessions.set(id, {
        bucket,
        name,
        contentType: meta.contentType ?? (typeof headerType === 'string' ? headerType : 'application/octet-stream'),
        metadata: meta.metadata,
        query: q,
        hashes: meta.hashes,
        chunks: [],
        received: 0,
      });
      const location = `${base}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
      return send(res, 200, undefined, { location, 'x-guploader-uploadid': id }, sendOpts);
    }
    fail(400, `Invalid upload type: ${uploadType}`, 'invalid');
  }

  async function resumableChunk(
    req: IncomingMessage,
    res: ServerResponse,
    q: Record<string, string>,
    sendOpts: SendOptions,
  ): Promise<void> {
    const body = await readBody(req);
    const session = sessions.get(q.upload_id as string);
    if (!session) fail(404, 'No such upload session.', 'notFound');
    if (session.result) return sendJson(res, 200, session.result, {}, sendOpts);

    const incomplete = () => {
      const headers: Record<string, string> = {};
      if (session.received > 0) headers.range = `bytes=0-${session.received - 1}`;
      send(res, 308, undefined, headers, sendOpts);
    };
    const finalize = () => {
      const data = Buffer.concat(session.chunks);
      const hashes = { ...session.hashes, ...parseGoogHash(req.headers['x-goog-hash']) };
      const result = commit(
        session.bucket,
        session.name,
        data,
        session.contentType,
        session.metadata,
        session.query,
        hashes,
      );
      session.result = result;
      sendJson(res, 200, result, {}, sendOpts);
    };

    const contentRange = req.headers['content-range'];
    if (contentRange === undefined) {
      // The whole object in one request.
      session.chunks = [body];
      session.received = body.length;
      return finalize();
    }
    const status = /^bytes \*\/(\d+|\*)$/.exec(contentRange);
    if (status) {
      if (status[1] !== '*' && Number(status[1]) === session.received) return finalize();
      return incomplete();
    }
    const m = /^bytes (\d+)-(\d+|\*)\/(\d+|\*)$/.exec(contentRange);
    if (!m) fail(400, `Invalid Content-Range: ${contentRange}`, 'invalid');
    const start = Number(m[1]);
    if (start > session.received) {
      fail(
        400,
        `Invalid request. According to the Content-Range header, the upload offset is ${start} byte(s), which exceeds already uploaded size of ${session.received} byte(s).`,
        'invalid',
      );
    }
    const fresh = body.subarray(session.received - start);
    session.chunks.push(fresh);
    session.received += fresh.length;
    const total = m[3] === '*' ? undefined : Number(m[3]);
    // `bytes A-*/*` (the client's single streamed request): the request's end is the object's end.
    if ((m[2] === '*' && total === undefined) || total === session.received) return finalize();
    if (total !== undefined && session.received > total)
      fail(400, 'More data than the declared object size.', 'invalid');
    return incomplete();
  }

  async function control(req: IncomingMessage, res: ServerResponse, path: string, q: Record<string, string>) {
    // For servers started as a separate process (start.ts): seed data and inject faults over HTTP.
    if (path === '/_emulator/objects' && req.method === 'POST') {
      const data = await readBody(req);
      const metadata: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (k.startsWith('x-goog-meta-') && typeof v === 'string') metadata[k.slice('x-goog-meta-'.length)] = v;
      }
      const contentType = req.headers['content-type'];
      const options = contentType === undefined ? {} : { contentType };
      return sendJson(res, 200, api.putObject(q.bucket ?? '', q.name ?? '', data, metadata, options));
    }
    const body = await readJson(req);
    if (path === '/_emulator/failNext' && req.method === 'POST') {
      const { match, responses } = faultFromJson(body);
      api.failNext(match, responses);
      return sendJson(res, 200, {});
    }
    if (path === '/_emulator/denyObject' && req.method === 'POST') {
      api.denyObject(q.bucket ?? '', q.name ?? '');
      return sendJson(res, 200, {});
    }
    if (path === '/_emulator/denyBucket' && req.method === 'POST') {
      api.denyBucket(q.bucket ?? '');
      return sendJson(res, 200, {});
    }
    if (path === '/_emulator/corruptNextMedia' && req.method === 'POST') {
      api.corruptNextMedia();
      return sendJson(res, 200, {});
    }
    if (path === '/_emulator/requests' && req.method === 'GET') return sendJson(res, 200, requests);
    return sendJson(res, 404, gcsErrorBody(404));
  }

  const api: GcsServer = {
    url: base,
    port: listening.port,
    requests,
    createBucket,
    putObject(bucket, name, data, metadata = {}, options = {}) {
      const obj = store(bucket, name, Buffer.from(data), options.contentType ?? 'application/octet-stream', metadata);
      return { generation: obj.generation };
    },
    getObject,
    deleteObject(bucket, name) {
      const entry = entryOf(bucket, name);
      if (!entry?.live) return false;
      entry.live = undefined;
      return true;
    },
    patchMetadata(bucket, name, metadata, generation) {
      const obj = getObject(bucket, name, generation);
      if (!obj) throw new Error(`no such object: ${bucket}/${name}${generation ? `#${generation}` : ''}`);
      return applyPatch(obj, { metadata });
    },
    denyObject(bucket, name) {
      denied.add(key(bucket, name));
    },
    allowObject(bucket, name) {
      denied.delete(key(bucket, name));
    },
    denyBucket(bucket) {
      deniedBuckets.add(bucket);
    },
    allowBucket(bucket) {
      deniedBuckets.delete(bucket);
    },
    grantObjectAcl(bucket, name) {
      aclGrants.add(key(bucket, name));
    },
    failNext(match, responses) {
      faults.add(match, responses);
    },
    get pendingFaults() {
      return faults.pending;
    },
    corruptNextMedia() {
      corruptMedia++;
    },
    reset() {
      faults.clear();
      denied.clear();
      deniedBuckets.clear();
      aclGrants.clear();
      corruptMedia = 0;
      requests.length = 0;
    },
    releaseStalled: () => listening.releaseStalled(),
    close: () => listening.close(),
  };
  return api;
}

interface ParsedResource {
  name?: string;
  contentType?: string;
  cacheControl?: string;
  metadata: Record<string, string>;
  hashes: SuppliedHashes;
}

function parseResource(body: Buffer): ParsedResource {
  if (body.length === 0) return { metadata: {}, hashes: {} };
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    fail(400, 'Invalid JSON payload received.', 'parseError');
  }
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const metadata: Record<string, string> = {};
  if (json.metadata && typeof json.metadata === 'object') {
    for (const [k, v] of Object.entries(json.metadata)) if (v !== null && v !== undefined) metadata[k] = String(v);
  }
  const r: ParsedResource = { metadata, hashes: {} };
  const name = str(json.name);
  if (name !== undefined) r.name = name;
  const contentType = str(json.contentType);
  if (contentType !== undefined) r.contentType = contentType;
  const cacheControl = str(json.cacheControl);
  if (cacheControl !== undefined) r.cacheControl = cacheControl;
  const crc = str(json.crc32c);
  if (crc !== undefined) r.hashes.crc32c = crc;
  const md5 = str(json.md5Hash);
  if (md5 !== undefined) r.hashes.md5Hash = md5;
  return r;
}

interface ResourcePatch {
  metadata?: Record<string, string | null>;
  contentType?: string;
}

/** A PATCH body: custom metadata (null deletes a key) and contentType; other fields are ignored. */
function parseResourcePatch(body: Buffer): ResourcePatch {
  let json: unknown;
  try {
    json = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
  } catch {
    fail(400, 'Invalid JSON payload received.', 'parseError');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail(400, 'Invalid JSON payload received.');
  const { metadata, contentType } = json as { metadata?: unknown; contentType?: unknown };
  const patch: ResourcePatch = {};
  if (metadata !== undefined && metadata !== null) {
    if (typeof metadata !== 'object' || Array.isArray(metadata)) fail(400, 'Invalid value for metadata.', 'invalid');
    patch.metadata = {};
    for (const [k, v] of Object.entries(metadata)) {
      if (v !== null && typeof v !== 'string') fail(400, `Invalid value for metadata.${k}.`, 'invalid');
      patch.metadata[k] = v;
    }
  }
  if (typeof contentType === 'string') patch.contentType = contentType;
  return patch;
}

function parseGoogHash(header: string | string[] | undefined): SuppliedHashes {
  const out: SuppliedHashes = {};
  for (const h of [header ?? []].flat()) {
    for (const pair of h.split(',')) {
      const i = pair.indexOf('=');
      const k = pair.slice(0, i).trim();
      const v = pair.slice(i + 1).trim();
      if (k === 'crc32c') out.crc32c = v;
      if (k === 'md5') out.md5Hash = v;
    }
  }
  return out;
}

interface Part {
  headers: Record<string, string>;
  body: Buffer;
}

/** multipart/related (RFC 2046) as the storage client sends it. */
export function parseMultipart(body: Buffer, contentType: string): Part[] {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) fail(400, 'Missing multipart boundary.', 'invalid');
  const buf = Buffer.concat([Buffer.from('\r\n'), body]);
  const delim = Buffer.from(`\r\n--${boundary}`);
  const parts: Part[] = [];
  let pos = buf.indexOf(delim);
  while (pos !== -1) {
    let start = pos + delim.length;
    if (buf.subarray(start, start + 2).toString('latin1') === '--') break;
    const eol = buf.indexOf('\r\n', start);
    if (eol === -1) break;
    start = eol + 2;
    const next = buf.indexOf(delim, start);
    if (next === -1) fail(400, 'Malformed multipart body.', 'invalid');
    const part = buf.subarray(start, next);
    let headerText = '';
    let content: Buffer;
    if (part.subarray(0, 2).toString('latin1') === '\r\n') {
      content = part.subarray(2);
    } else {
      const sep = part.indexOf('\r\n\r\n');
      if (sep === -1) fail(400, 'Malformed multipart part.', 'invalid');
      headerText = part.subarray(0, sep).toString('latin1');
      content = part.subarray(sep + 4);
    }
    const headers: Record<string, string> = {};
    for (const line of headerText.split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    parts.push({ headers, body: content });
    pos = next;
  }
  return parts;
}
