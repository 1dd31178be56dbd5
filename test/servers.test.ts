// The GCS and KMS test servers, driven by the real Google client libraries over loopback, and the
// metadata server (driven by google-auth-library in test/integration/metadata.test.ts).
//
// How the clients surface server errors (the main code depends on these):
// - @google-cloud/storage 8.4: an ApiError whose `code` is the HTTP status as a NUMBER (403, 404, 412, 503)
//   and whose message is the body's error.message - except for downloads (download/createReadStream),
//   whose message is the raw response body text (JSON). A resumable upload's 412 is a GaxiosError, code 412.
//   Bytes not matching x-goog-hash: code 'CONTENT_DOWNLOAD_MISMATCH'. GETs are retried on 408/429/5xx and
//   on resets before the response (code 'ECONNRESET' once retries run out); a connection dropped mid-body
//   is not retried (code 'ECONNRESET', message 'aborted'). Each DOWNLOAD retry after a 429/5xx response
//   leaks an unhandled ERR_STREAM_UNABLE_TO_PIPE rejection (fatal by default). `timeout` is ignored.
// - @google-cloud/kms 6.3 REST fallback (google-gax 6.17): a GoogleError whose `code` is the gRPC status,
//   from the body's error.status name (else mapped from the HTTP status), `httpStatusCode` the HTTP one:
//   400 -> 3 INVALID_ARGUMENT, 403 -> 7 PERMISSION_DENIED, 404 -> 5 NOT_FOUND, 412 -> 9 FAILED_PRECONDITION,
//   429 -> 8 RESOURCE_EXHAUSTED, 500 -> 13 INTERNAL, 503 -> 14 UNAVAILABLE, 504 -> 4 DEADLINE_EXCEEDED;
//   a connection reset -> 14; a call past its `timeout` -> 4. Encrypt/Decrypt retry 14 and 4 by default
//   (100 ms, x1.3, for up to 600 s: a KMS that keeps answering 503 is retried for 60 s before failing with 4).
// - @google-cloud/secret-manager 7.2 REST fallback: the same GoogleError codes. AccessSecretVersion retries 8
//   and 14 by default; with `maxRetries: 0` alone a 429/503 becomes 4 "Exceeded maximum number of retries" (the
//   status is lost), with `retry: {retryCodes: []}` it surfaces as 8/14 with httpStatusCode. The payload's
//   dataCrc32c reaches the caller as a decimal string; version states as names ('ENABLED').

import { spawn } from 'node:child_process';
import { createHash, verify } from 'node:crypto';
import { once } from 'node:events';
import { KeyManagementServiceClient } from '@google-cloud/kms';
import { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { type File, Storage } from '@google-cloud/storage';
import { GoogleAuth, PassThroughClient } from 'google-auth-library';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { crc32c, crc32cBase64 } from './servers/crc32c.ts';
import { type MetadataServer, startMetadataServer, TOKEN_PATH } from './servers/metadata.ts';
import { startTestServers, type TestServers } from './servers/start.ts';

let servers: TestServers;
beforeAll(async () => {
  servers = await startTestServers();
});
afterAll(async () => {
  await servers?.close();
});
beforeEach(() => {
  servers.gcs.reset();
  servers.kms.reset();
  servers.secretManager.reset();
});

const md5 = (data: Buffer) => createHash('md5').update(data).digest('base64');

/**
 * Run fn with the process's 'unhandledRejection' listeners (vitest's included) swapped for a collector,
 * so a test can assert on rejections a client library leaks.
 */
async function catchUnhandledRejections<T>(fn: () => Promise<T>): Promise<{ result: T; unhandled: unknown[] }> {
  const saved = process.listeners('unhandledRejection');
  process.removeAllListeners('unhandledRejection');
  const unhandled: unknown[] = [];
  const collect = (reason: unknown) => {
    unhandled.push(reason);
  };
  process.on('unhandledRejection', collect);
  try {
    const result = await fn();
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { result, unhandled };
  } finally {
    process.off('unhandledRejection', collect);
    for (const listener of saved) process.on('unhandledRejection', listener);
  }
}

/** The rejection of a promise (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: unknown; httpStatusCode?: number }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: unknown };
  }
  throw new Error('expected a rejection');
}

describe('crc32c', () => {
  it('matches the known vector', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array())).toBe(0);
    expect(crc32cBase64(Buffer.from('123456789'))).toBe(Buffer.from([0xe3, 0x06, 0x92, 0x83]).toString('base64'));
  });
});

describe('GCS server with @google-cloud/storage', () => {
  const BUCKET = 'secrets-bucket';
  let storage: Storage;
  /** Retries after ~10 ms instead of 1-2 s. Only for reads: File.save() rejects a maxRetryDelay under 1 s. */
  let retrying: Storage;
  const fast = { maxRetryDelay: 0.01, maxRetries: 3 };

  beforeAll(() => {
    // STORAGE_EMULATOR_HOST is read when the Storage object is built (the main code passes apiEndpoint
    // and sets the library's base URL itself: see createStorageClient).
    const saved = process.env.STORAGE_EMULATOR_HOST;
    process.env.STORAGE_EMULATOR_HOST = servers.gcs.url;
    storage = new Storage({ projectId: 'test-project' });
    retrying = new Storage({ projectId: 'test-project', retryOptions: fast });
    if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
    else process.env.STORAGE_EMULATOR_HOST = saved;
  });

  const file = (name: string, generation?: string): File =>
    storage.bucket(BUCKET).file(name, generation === undefined ? {} : { generation: Number(generation) });

  it('accepts a multipart upload and serves it back', async () => {
    const data = Buffer.from('multipart secret');
    await file('dir/multi part').save(data, {
      resumable: false,
      metadata: { contentType: 'text/plain', metadata: { owner: 'tests' } },
    });
    const stored = servers.gcs.getObject(BUCKET, 'dir/multi part');
    expect(stored?.data.toString()).toBe('multipart secret');
    expect(stored?.contentType).toBe('text/plain');
    expect(stored?.metadata).toEqual({ owner: 'tests' });
    const upload = servers.gcs.requests.find((r) => r.method === 'POST');
    expect(upload).toMatchObject({
      path: `/upload/storage/v1/b/${BUCKET}/o`,
      query: { uploadType: 'multipart', name: 'dir/multi part' },
    });
    expect(upload?.headers['content-type']).toMatch(/^multipart\/related; boundary=/);
    const [downloaded] = await file('dir/multi part').download();
    expect(downloaded.toString()).toBe('multipart secret');
  });

  it('accepts a resumable upload (one streamed PUT)', async () => {
    const data = Buffer.alloc(100_000, 7);
    await file('resumable').save(data, { resumable: true });
    expect(servers.gcs.getObject(BUCKET, 'resumable')?.data.equals(data)).toBe(true);
    const [start, put] = servers.gcs.requests;
    expect(start).toMatchObject({ method: 'POST', query: { uploadType: 'resumable', name: 'resumable' } });
    expect(put).toMatchObject({ method: 'PUT', path: `/upload/storage/v1/b/${BUCKET}/o` });
    expect(put?.query.upload_id).toBeTruthy();
    expect(put?.headers['content-range']).toBe('bytes 0-*/*');
  });

  it('accepts a chunked resumable upload (308 + Range between chunks)', async () => {
    const data = Buffer.alloc(600 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    await file('chunked').save(data, { resumable: true, chunkSize: 256 * 1024 });
    expect(servers.gcs.getObject(BUCKET, 'chunked')?.data.equals(data)).toBe(true);
    const ranges = servers.gcs.requests.filter((r) => r.method === 'PUT').map((r) => r.headers['content-range']);
    expect(ranges).toEqual(['bytes 0-262143/*', 'bytes 262144-524287/*', 'bytes 524288-614399/614400']);
  });

  it('returns the object resource from getMetadata', async () => {
    const data = Buffer.from('metadata please');
    const { generation } = servers.gcs.putObject(
      BUCKET,
      'a/b',
      data,
      { purpose: 'test' },
      { contentType: 'text/plain' },
    );
    const [meta] = await file('a/b').getMetadata();
    expect(meta).toMatchObject({
      kind: 'storage#object',
      id: `${BUCKET}/a/b/${generation}`,
      name: 'a/b',
      bucket: BUCKET,
      generation,
      metageneration: '1',
      contentType: 'text/plain',
      size: String(data.length),
      crc32c: crc32cBase64(data),
      md5Hash: md5(data),
      metadata: { purpose: 'test' },
    });
    expect(servers.gcs.requests.at(-1)).toMatchObject({ method: 'GET', path: `/b/${BUCKET}/o/a%2Fb`, query: {} });
  });

  it('keeps old generations and serves the pinned one', async () => {
    const g1 = servers.gcs.putObject(BUCKET, 'versioned', Buffer.from('one')).generation;
    const g2 = servers.gcs.putObject(BUCKET, 'versioned', Buffer.from('two')).generation;
    expect(BigInt(g2)).toBeGreaterThan(BigInt(g1));
    const [old] = await file('versioned', g1).download();
    expect(old.toString()).toBe('one');
    expect(servers.gcs.requests.at(-1)).toMatchObject({
      method: 'GET',
      path: `/b/${BUCKET}/o/versioned`,
      query: { alt: 'media', generation: g1 },
    });
    const [latest] = await file('versioned').download();
    expect(latest.toString()).toBe('two');
    const [meta] = await file('versioned', g1).getMetadata();
    expect(meta.generation).toBe(g1);
  });

  it('sends the hash headers the client validates downloads against', async () => {
    const data = Buffer.from('hash me');
    const { generation } = servers.gcs.putObject(BUCKET, 'hashed', data);
    const res = await fetch(`${servers.gcs.url}/b/${BUCKET}/o/hashed?alt=media`);
    expect(res.headers.get('x-goog-hash')).toBe(`crc32c=${crc32cBase64(data)},md5=${md5(data)}`);
    expect(res.headers.get('x-goog-generation')).toBe(generation);
    expect(res.headers.get('x-goog-stored-content-length')).toBe(String(data.length));
    expect(res.headers.get('x-goog-stored-content-encoding')).toBe('identity');
    expect(Buffer.from(await res.arrayBuffer()).equals(data)).toBe(true);
  });

  it('corruptNextMedia is caught by the client checksum validation', async () => {
    servers.gcs.putObject(BUCKET, 'fragile', Buffer.from('some secret bytes'));
    servers.gcs.corruptNextMedia();
    const err = await rejection(file('fragile').download());
    expect(err.code).toBe('CONTENT_DOWNLOAD_MISMATCH');
    // Only one download was corrupted.
    const [ok] = await file('fragile').download();
    expect(ok.toString()).toBe('some secret bytes');
    // MD5 validation catches it too.
    servers.gcs.corruptNextMedia();
    expect((await rejection(file('fragile').download({ validation: 'md5' }))).code).toBe('CONTENT_DOWNLOAD_MISMATCH');
  });

  it('serves byte ranges', async () => {
    servers.gcs.putObject(BUCKET, 'ranged', Buffer.from('0123456789'));
    const [part] = await file('ranged').download({ start: 2, end: 5 });
    expect(part.toString()).toBe('2345');
  });

  it('answers 404 for a missing object or generation', async () => {
    const meta = await rejection(file('nope').getMetadata());
    expect(meta.code).toBe(404);
    expect(meta.message).toBe(`No such object: ${BUCKET}/nope`);
    const media = await rejection(file('nope').download());
    expect(media.code).toBe(404);
    // Downloads carry the raw body as the message.
    expect(JSON.parse(media.message)).toMatchObject({ error: { code: 404, errors: [{ reason: 'notFound' }] } });

    servers.gcs.putObject(BUCKET, 'one-gen', Buffer.from('x'));
    expect((await rejection(file('one-gen', '12345').download())).code).toBe(404);
    expect((await rejection(file('one-gen', '12345').getMetadata())).code).toBe(404);
    expect((await rejection(storage.bucket('no-such-bucket').file('x').getMetadata())).message).toBe(
      'The specified bucket does not exist.',
    );
  });

  it('answers 403 for a denied object', async () => {
    servers.gcs.putObject(BUCKET, 'private', Buffer.from('x'));
    servers.gcs.denyObject(BUCKET, 'private');
    const meta = await rejection(file('private').getMetadata());
    expect(meta.code).toBe(403);
    expect(meta.message).toMatch(/does not have storage\.objects\.get access to the Google Cloud Storage object/);
    expect((await rejection(file('private').download())).code).toBe(403);
  });

  it('answers 412 when ifGenerationMatch does not hold', async () => {
    const { generation } = servers.gcs.putObject(BUCKET, 'exists', Buffer.from('x'));
    const multipart = await rejection(
      file('exists').save('y', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }),
    );
    expect(multipart.code).toBe(412);
    expect(servers.gcs.requests.at(-1)?.query).toMatchObject({ uploadType: 'multipart', ifGenerationMatch: '0' });
    const resumable = await rejection(
      file('exists').save('y', { resumable: true, preconditionOpts: { ifGenerationMatch: 0 } }),
    );
    expect(resumable.code).toBe(412);
    expect(servers.gcs.getObject(BUCKET, 'exists')?.generation).toBe(generation);
    // A matching precondition succeeds.
    await file('exists').save('z', { resumable: false, preconditionOpts: { ifGenerationMatch: Number(generation) } });
    expect(servers.gcs.getObject(BUCKET, 'exists')?.data.toString()).toBe('z');
    // 0 on a fresh name succeeds.
    await file('fresh').save('new', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    expect(servers.gcs.getObject(BUCKET, 'fresh')?.data.toString()).toBe('new');
  });

  it('patches custom metadata with File#setMetadata: keys merge, null deletes, metageneration goes up', async () => {
    const { generation } = servers.gcs.putObject(BUCKET, 'patch/me', Buffer.from('x'), { keep: 'k', drop: 'd' });
    const [meta] = await file('patch/me').setMetadata({ metadata: { added: 'a', drop: null } });
    expect(meta).toMatchObject({ generation, metageneration: '2', metadata: { keep: 'k', added: 'a' } });
    expect(meta.metadata).not.toHaveProperty('drop');
    expect(servers.gcs.requests.at(-1)).toMatchObject({ method: 'PATCH', path: `/b/${BUCKET}/o/patch%2Fme` });
    expect(servers.gcs.getObject(BUCKET, 'patch/me')?.metadata).toEqual({ keep: 'k', added: 'a' });
    // The data and its generation are untouched.
    expect(servers.gcs.getObject(BUCKET, 'patch/me')).toMatchObject({ generation, data: Buffer.from('x') });
  });

  it('patches a pinned generation and checks ifGenerationMatch / ifMetagenerationMatch (412)', async () => {
    const g1 = servers.gcs.putObject(BUCKET, 'patch/pinned', Buffer.from('one')).generation;
    const g2 = servers.gcs.putObject(BUCKET, 'patch/pinned', Buffer.from('two')).generation;
    const stale = await rejection(
      file('patch/pinned').setMetadata({ metadata: { s: '1' } }, { ifGenerationMatch: g1, ifMetagenerationMatch: 1 }),
    );
    expect(stale.code).toBe(412);
    expect(servers.gcs.requests.at(-1)?.query).toMatchObject({ ifGenerationMatch: g1, ifMetagenerationMatch: '1' });
    const wrongMeta = await rejection(
      file('patch/pinned').setMetadata({ metadata: { s: '1' } }, { ifGenerationMatch: g2, ifMetagenerationMatch: 2 }),
    );
    expect(wrongMeta.code).toBe(412);
    expect(servers.gcs.getObject(BUCKET, 'patch/pinned')?.metadata).toEqual({});
    // The old generation itself, pinned, with its own preconditions.
    const [old] = await file('patch/pinned', g1).setMetadata(
      { metadata: { s: '1' } },
      { ifGenerationMatch: g1, ifMetagenerationMatch: 1 },
    );
    expect(old).toMatchObject({ generation: g1, metageneration: '2', metadata: { s: '1' } });
    expect(servers.gcs.requests.at(-1)?.query).toMatchObject({ generation: g1 });
    expect(servers.gcs.getObject(BUCKET, 'patch/pinned')?.metadata).toEqual({});
    const [live] = await file('patch/pinned').setMetadata(
      { metadata: { s: '2' } },
      { ifGenerationMatch: g2, ifMetagenerationMatch: 1 },
    );
    expect(live).toMatchObject({ generation: g2, metageneration: '2', metadata: { s: '2' } });
  });

  it('answers a PATCH with 404 for a missing object and 403 for a denied one', async () => {
    expect((await rejection(file('patch/missing').setMetadata({ metadata: { a: 'b' } }))).code).toBe(404);
    servers.gcs.putObject(BUCKET, 'patch/denied', Buffer.from('x'));
    servers.gcs.denyObject(BUCKET, 'patch/denied');
    const denied = await rejection(file('patch/denied').setMetadata({ metadata: { a: 'b' } }));
    expect(denied.code).toBe(403);
    expect(denied.message).toContain('storage.objects.update');
  });

  it('failNext {run}: a side effect lands before the real answer (a write between read and patch)', async () => {
    const { generation } = servers.gcs.putObject(BUCKET, 'patch/race', Buffer.from('one'));
    servers.gcs.failNext({ method: 'PATCH' }, [
      { run: () => void servers.gcs.putObject(BUCKET, 'patch/race', Buffer.from('two')) },
    ]);
    const err = await rejection(
      file('patch/race').setMetadata({ metadata: { a: 'b' } }, { ifGenerationMatch: generation }),
    );
    expect(err.code).toBe(412);
    expect(servers.gcs.getObject(BUCKET, 'patch/race')?.data.toString()).toBe('two');
    expect(servers.gcs.pendingFaults).toBe(0);
  });

  it('a download is retried after a 503, leaking an unhandled ERR_STREAM_UNABLE_TO_PIPE per retry', async () => {
    servers.gcs.putObject(BUCKET, 'flaky', Buffer.from('eventually'));
    servers.gcs.failNext({ method: 'GET', path: `/b/${BUCKET}/o/flaky`, query: { alt: 'media' } }, [{ status: 503 }]);
    const { result, unhandled } = await catchUnhandledRejections(() =>
      retrying.bucket(BUCKET).file('flaky').download(),
    );
    expect(result[0].toString()).toBe('eventually');
    expect(servers.gcs.requests.filter((r) => r.query.alt === 'media')).toHaveLength(2);
    expect(servers.gcs.pendingFaults).toBe(0);
    // teeny-request pipes the retried-away 503 response into its already destroyed stream: without an
    // 'unhandledRejection' handler this kills the process (exit 1) even though the download succeeds.
    expect(unhandled.map((e) => (e as { code?: string }).code)).toEqual(['ERR_STREAM_UNABLE_TO_PIPE']);
  });

  it('a download gives up after maxRetries 503s with code 503 and the raw body as message', async () => {
    servers.gcs.putObject(BUCKET, 'down', Buffer.from('x'));
    servers.gcs.failNext({ path: /down/ }, Array(4).fill({ status: 503 }));
    const { result: err, unhandled } = await catchUnhandledRejections(() =>
      rejection(retrying.bucket(BUCKET).file('down').download()),
    );
    expect(err.code).toBe(503);
    expect(JSON.parse(err.message)).toMatchObject({ error: { code: 503, errors: [{ reason: 'backendError' }] } });
    expect(servers.gcs.requests).toHaveLength(4);
    expect(unhandled).toHaveLength(3);
  });

  it('getMetadata is retried after a 503 without leaking anything', async () => {
    servers.gcs.putObject(BUCKET, 'meta-flaky', Buffer.from('x'));
    servers.gcs.failNext({ path: `/b/${BUCKET}/o/meta-flaky` }, [{ status: 503 }, 'reset']);
    const { result, unhandled } = await catchUnhandledRejections(() =>
      retrying.bucket(BUCKET).file('meta-flaky').getMetadata(),
    );
    expect(result[0].size).toBe('1');
    expect(servers.gcs.requests).toHaveLength(3);
    expect(unhandled).toEqual([]);
  });

  it('a download is retried after a connection reset', async () => {
    servers.gcs.putObject(BUCKET, 'resetty', Buffer.from('eventually'));
    servers.gcs.failNext({ path: /resetty/ }, ['reset']);
    const { result, unhandled } = await catchUnhandledRejections(() =>
      retrying.bucket(BUCKET).file('resetty').download(),
    );
    expect(result[0].toString()).toBe('eventually');
    expect(servers.gcs.requests.filter((r) => r.query.alt === 'media')).toHaveLength(2);
    expect(unhandled).toEqual([]);
  });

  it('a download that keeps being reset fails with ECONNRESET', async () => {
    servers.gcs.putObject(BUCKET, 'dead', Buffer.from('x'));
    servers.gcs.failNext({ path: /dead/ }, Array(4).fill('reset'));
    const err = await rejection(retrying.bucket(BUCKET).file('dead').download());
    expect(err.code).toBe('ECONNRESET');
    expect(servers.gcs.requests).toHaveLength(4);
  });

  it('a download whose connection drops mid-body fails with ECONNRESET and is not retried', async () => {
    servers.gcs.putObject(BUCKET, 'cut', Buffer.alloc(64 * 1024, 1));
    servers.gcs.failNext({ path: /cut/ }, ['truncate']);
    const err = await rejection(retrying.bucket(BUCKET).file('cut').download());
    expect(err.code).toBe('ECONNRESET');
    expect(err.message).toBe('aborted');
    expect(servers.gcs.requests.filter((r) => r.query.alt === 'media')).toHaveLength(1);
  });

  it('a stalled request hangs: the storage `timeout` option has no effect (node-fetch 3 ignores it)', async () => {
    const withTimeout = new Storage({
      projectId: 'test-project',
      apiEndpoint: servers.gcs.url,
      timeout: 50,
      retryOptions: fast,
    });
    servers.gcs.putObject(BUCKET, 'slow', Buffer.from('x'));
    servers.gcs.failNext({ path: /slow/ }, ['stall']);
    const pending = withTimeout.bucket(BUCKET).file('slow').getMetadata();
    const state = await Promise.race([
      pending.then(
        () => 'resolved',
        () => 'rejected',
      ),
      new Promise((resolve) => setTimeout(resolve, 300, 'pending')),
    ]);
    expect(state).toBe('pending');
    // Dropping the stalled connection looks like a reset to the client, which retries and succeeds.
    servers.gcs.releaseStalled();
    const [meta] = await pending;
    expect(meta.size).toBe('1');
  });

  it('serves the /storage/v1 routes used with apiEndpoint', async () => {
    const viaEndpoint = new Storage({ projectId: 'test-project', apiEndpoint: servers.gcs.url });
    await viaEndpoint.bucket(BUCKET).file('endpoint').save('hello', { resumable: false });
    const [meta] = await viaEndpoint.bucket(BUCKET).file('endpoint').getMetadata();
    expect(meta.size).toBe('5');
    const [data] = await viaEndpoint.bucket(BUCKET).file('endpoint').download();
    expect(data.toString()).toBe('hello');
    expect(servers.gcs.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      `POST /upload/storage/v1/b/${BUCKET}/o`,
      `GET /storage/v1/b/${BUCKET}/o/endpoint`,
      `GET /storage/v1/b/${BUCKET}/o/endpoint`,
    ]);
  });
});

describe('KMS server with @google-cloud/kms (REST fallback)', () => {
  const KEY = 'projects/test-project/locations/global/keyRings/ring/cryptoKeys/key';
  const OTHER = 'projects/test-project/locations/global/keyRings/ring/cryptoKeys/other';
  let client: KeyManagementServiceClient;

  beforeAll(() => {
    servers.kms.createKey(KEY);
    servers.kms.createKey(OTHER);
    client = new KeyManagementServiceClient({
      fallback: true,
      apiEndpoint: '127.0.0.1',
      port: servers.kms.port,
      protocol: 'http',
      auth: new GoogleAuth({ authClient: new PassThroughClient() }),
    });
  });
  afterAll(async () => {
    await client?.close();
  });

  async function encrypt(plaintext: Buffer, aad?: Buffer) {
    const [res] = await client.encrypt({
      name: KEY,
      plaintext,
      plaintextCrc32c: { value: crc32c(plaintext) },
      ...(aad ? { additionalAuthenticatedData: aad, additionalAuthenticatedDataCrc32c: { value: crc32c(aad) } } : {}),
    });
    return res;
  }

  it('round-trips encrypt and decrypt with checksums', async () => {
    const plaintext = Buffer.from('DATABASE_PASSWORD=hunter2');
    const aad = Buffer.from('context');
    const enc = await encrypt(plaintext, aad);
    expect(enc.name).toBe(`${KEY}/cryptoKeyVersions/1`);
    expect(enc.verifiedPlaintextCrc32c).toBe(true);
    expect(enc.verifiedAdditionalAuthenticatedDataCrc32c).toBe(true);
    expect(enc.protectionLevel).toBe('SOFTWARE');
    const ciphertext = Buffer.from(enc.ciphertext as Uint8Array);
    // Int64Value comes back as {value: '<decimal string>'}.
    expect(enc.ciphertextCrc32c).toEqual({ value: String(crc32c(ciphertext)) });

    const [dec] = await client.decrypt({
      name: KEY,
      ciphertext,
      ciphertextCrc32c: { value: crc32c(ciphertext) },
      additionalAuthenticatedData: aad,
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    });
    expect(Buffer.from(dec.plaintext as Uint8Array).toString()).toBe('DATABASE_PASSWORD=hunter2');
    expect(dec.plaintextCrc32c).toEqual({ value: String(crc32c(plaintext)) });
    expect(dec.usedPrimary).toBe(true);

    // On the wire: base64 bytes and Int64Values as bare decimal strings.
    const [encReq, decReq] = servers.kms.requests;
    expect(encReq).toMatchObject({
      method: 'POST',
      path: `/v1/${KEY}:encrypt`,
      body: {
        plaintext: plaintext.toString('base64'),
        plaintextCrc32c: String(crc32c(plaintext)),
        additionalAuthenticatedData: aad.toString('base64'),
        additionalAuthenticatedDataCrc32c: String(crc32c(aad)),
      },
    });
    expect(encReq?.query.$alt).toBe('json;enum-encoding=int');
    expect(decReq).toMatchObject({
      path: `/v1/${KEY}:decrypt`,
      body: { ciphertext: ciphertext.toString('base64'), ciphertextCrc32c: String(crc32c(ciphertext)) },
    });
  });

  it('decrypts what the server-side helper encrypted, across rotation', async () => {
    const kms = servers.kms;
    const name = 'projects/test-project/locations/global/keyRings/ring/cryptoKeys/rotating';
    kms.createKey(name);
    const old = kms.encrypt(name, 'before rotation');
    expect(kms.rotateKey(name)).toBe(`${name}/cryptoKeyVersions/2`);
    const [dec] = await client.decrypt({ name, ciphertext: old });
    expect(Buffer.from(dec.plaintext as Uint8Array).toString()).toBe('before rotation');
    expect(dec.usedPrimary).toBe(false);
    const [enc] = await client.encrypt({ name, plaintext: Buffer.from('after') });
    expect(enc.name).toBe(`${name}/cryptoKeyVersions/2`);
    expect(enc.verifiedPlaintextCrc32c).toBe(false);
  });

  it('rejects ciphertext from another key, tampered, truncated or with the wrong AAD as INVALID_ARGUMENT (3)', async () => {
    const enc = await encrypt(Buffer.from('secret'), Buffer.from('aad'));
    const ciphertext = Buffer.from(enc.ciphertext as Uint8Array);
    const tampered = Buffer.from(ciphertext);
    tampered[20] = (tampered[20] as number) ^ 0x80;
    const cases = [
      client.decrypt({ name: OTHER, ciphertext, additionalAuthenticatedData: Buffer.from('aad') }),
      client.decrypt({ name: KEY, ciphertext: tampered, additionalAuthenticatedData: Buffer.from('aad') }),
      client.decrypt({
        name: KEY,
        ciphertext: ciphertext.subarray(0, 20),
        additionalAuthenticatedData: Buffer.from('aad'),
      }),
      client.decrypt({ name: KEY, ciphertext, additionalAuthenticatedData: Buffer.from('bad') }),
      client.decrypt({ name: KEY, ciphertext }),
    ];
    for (const p of cases) {
      const err = await rejection(p);
      expect(err.code).toBe(3);
      expect(err.httpStatusCode).toBe(400);
      expect(err.message).toBe('Decryption failed: the ciphertext is invalid.');
    }
  });

  it('answers NOT_FOUND (5) for an unknown key', async () => {
    const name = 'projects/test-project/locations/global/keyRings/ring/cryptoKeys/missing';
    const err = await rejection(client.decrypt({ name, ciphertext: Buffer.from('xxxx') }));
    expect(err.code).toBe(5);
    expect(err.message).toBe(`CryptoKey ${name} not found.`);
  });

  it('answers PERMISSION_DENIED (7) for a denied key', async () => {
    const enc = await encrypt(Buffer.from('secret'));
    servers.kms.denyKey(KEY);
    const err = await rejection(client.decrypt({ name: KEY, ciphertext: enc.ciphertext as Uint8Array }));
    expect(err.code).toBe(7);
    expect(err.message).toBe(
      `Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied on resource '${KEY}' (or it may not exist).`,
    );
  });

  it('checks the CRC32C fields it is sent', async () => {
    const enc = await encrypt(Buffer.from('secret'));
    const ciphertext = Buffer.from(enc.ciphertext as Uint8Array);
    const bad = await rejection(
      client.decrypt({ name: KEY, ciphertext, ciphertextCrc32c: { value: (crc32c(ciphertext) + 1) % 2 ** 32 } }),
    );
    expect(bad.code).toBe(3);
    expect(bad.message).toBe('The checksum in field ciphertext_crc32c did not match the data in field ciphertext.');
    const badPlain = await rejection(
      client.encrypt({ name: KEY, plaintext: Buffer.from('x'), plaintextCrc32c: { value: 1 } }),
    );
    expect(badPlain.code).toBe(3);
    expect(badPlain.message).toBe('The checksum in field plaintext_crc32c did not match the data in field plaintext.');
  });

  it('corruptNextPlaintextCrc returns a wrong plaintextCrc32c once', async () => {
    const plaintext = Buffer.from('check me');
    const enc = await encrypt(plaintext);
    servers.kms.corruptNextPlaintextCrc();
    const [bad] = await client.decrypt({ name: KEY, ciphertext: enc.ciphertext as Uint8Array });
    expect(Buffer.from(bad.plaintext as Uint8Array).equals(plaintext)).toBe(true);
    expect(bad.plaintextCrc32c?.value).not.toBe(String(crc32c(plaintext)));
    const [good] = await client.decrypt({ name: KEY, ciphertext: enc.ciphertext as Uint8Array });
    expect(good.plaintextCrc32c?.value).toBe(String(crc32c(plaintext)));
  });

  it('limits plaintext to 64 KiB', async () => {
    await encrypt(Buffer.alloc(65536, 1));
    const err = await rejection(client.encrypt({ name: KEY, plaintext: Buffer.alloc(65537, 1) }));
    expect(err.code).toBe(3);
  });

  it('failNext: a 503 is retried by the client (UNAVAILABLE), and surfaces as 14 without retries', async () => {
    const enc = await encrypt(Buffer.from('retry me'));
    servers.kms.requests.length = 0;
    servers.kms.failNext({ path: /:decrypt$/ }, [{ status: 503 }]);
    const [dec] = await client.decrypt({ name: KEY, ciphertext: enc.ciphertext as Uint8Array });
    expect(Buffer.from(dec.plaintext as Uint8Array).toString()).toBe('retry me');
    expect(servers.kms.requests).toHaveLength(2);

    servers.kms.failNext({ method: 'POST', path: `/v1/${KEY}:decrypt` }, [{ status: 503 }]);
    const err = await rejection(
      client.decrypt({ name: KEY, ciphertext: enc.ciphertext as Uint8Array }, { retry: { retryCodes: [] } }),
    );
    expect(err.code).toBe(14);
    expect(err.httpStatusCode).toBe(503);
  });

  it('failNext: a connection reset is retried by the client', async () => {
    const enc = await encrypt(Buffer.from('reset me'));
    servers.kms.requests.length = 0;
    servers.kms.failNext({ path: /:decrypt$/ }, ['reset']);
    const [dec] = await client.decrypt({ name: KEY, ciphertext: enc.ciphertext as Uint8Array });
    expect(Buffer.from(dec.plaintext as Uint8Array).toString()).toBe('reset me');
    expect(servers.kms.requests).toHaveLength(2);

    servers.kms.failNext({ path: /:decrypt$/ }, ['reset']);
    const err = await rejection(
      client.decrypt({ name: KEY, ciphertext: enc.ciphertext as Uint8Array }, { retry: { retryCodes: [] } }),
    );
    expect(err.code).toBe(14);
    expect(err.httpStatusCode).toBeUndefined();
  });

  it('failNext: a stalled request ends at the call timeout with DEADLINE_EXCEEDED (4)', async () => {
    const enc = await encrypt(Buffer.from('slow'));
    servers.kms.failNext({ path: /:decrypt$/ }, ['stall']);
    const started = Date.now();
    const err = await rejection(
      client.decrypt(
        { name: KEY, ciphertext: enc.ciphertext as Uint8Array },
        { timeout: 200, retry: { retryCodes: [] } },
      ),
    );
    expect(err.code).toBe(4);
    expect(Date.now() - started).toBeLessThan(2000);
    servers.kms.releaseStalled();
  });

  describe('signing keys (EC_SIGN_P256_SHA256)', () => {
    const SIGNER = 'projects/test-project/locations/global/keyRings/ring/cryptoKeys/signer';
    let version: string;
    beforeAll(() => {
      version = servers.kms.createSigningKey(SIGNER);
    });
    const digestOf = (text: string) => createHash('sha256').update(text).digest();

    it('signs a SHA-256 digest: a DER signature that node:crypto verifies with the public key', async () => {
      const digest = digestOf('the message');
      const [res] = await client.asymmetricSign({
        name: version,
        digest: { sha256: digest },
        digestCrc32c: { value: crc32c(digest) },
      });
      const signature = Buffer.from(res.signature as Uint8Array);
      expect(res).toMatchObject({ name: version, verifiedDigestCrc32c: true, protectionLevel: 'SOFTWARE' });
      expect(res.signatureCrc32c?.value).toBe(String(crc32c(signature)));
      expect(signature[0]).toBe(0x30); // a DER SEQUENCE
      const [key] = await client.getPublicKey({ name: version });
      expect(key).toMatchObject({ name: version, algorithm: 'EC_SIGN_P256_SHA256' });
      expect(key.pemCrc32c?.value).toBe(String(crc32c(Buffer.from(key.pem as string))));
      expect(key.pem).toBe(servers.kms.publicKeyPem(version));
      expect(verify('sha256', Buffer.from('the message'), key.pem as string, signature)).toBe(true);
      expect(verify('sha256', Buffer.from('another message'), key.pem as string, signature)).toBe(false);
      expect(servers.kms.requests.map((r) => [r.method, r.path])).toEqual([
        ['POST', `/v1/${version}:asymmetricSign`],
        ['GET', `/v1/${version}/publicKey`],
      ]);
    });

    it('reports verifiedDigestCrc32c false without a digestCrc32c, and rejects a wrong one (3)', async () => {
      const digest = digestOf('x');
      const [unchecked] = await client.asymmetricSign({ name: version, digest: { sha256: digest } });
      expect(unchecked.verifiedDigestCrc32c).toBe(false);
      const bad = await rejection(
        client.asymmetricSign({ name: version, digest: { sha256: digest }, digestCrc32c: { value: 1 } }),
      );
      expect(bad.code).toBe(3);
      expect(bad.message).toBe('The checksum in field digest_crc32c did not match the data in field digest.');
    });

    it('refuses a digest that is not 32 bytes of SHA-256, and data instead of a digest (3)', async () => {
      const short = await rejection(client.asymmetricSign({ name: version, digest: { sha256: Buffer.alloc(31) } }));
      expect(short.code).toBe(3);
      const sha384 = await rejection(client.asymmetricSign({ name: version, digest: { sha384: Buffer.alloc(48) } }));
      expect(sha384.code).toBe(3);
      const data = await rejection(client.asymmetricSign({ name: version, data: Buffer.from('x') }));
      expect(data.code).toBe(3);
    });

    it('needs a version name, and the key purpose that fits the call (FAILED_PRECONDITION, 9)', async () => {
      // The client itself refuses a name its path template does not match: nothing is sent.
      servers.kms.requests.length = 0;
      const noVersion = await rejection(client.getPublicKey({ name: SIGNER }));
      expect(noVersion.code).toBeUndefined();
      expect(servers.kms.requests).toHaveLength(0);
      const symmetric = await rejection(client.getPublicKey({ name: `${KEY}/cryptoKeyVersions/1` }));
      expect(symmetric.code).toBe(9);
      const signSymmetric = await rejection(
        client.asymmetricSign({ name: `${KEY}/cryptoKeyVersions/1`, digest: { sha256: digestOf('x') } }),
      );
      expect(signSymmetric.code).toBe(9);
      const decrypt = await rejection(client.decrypt({ name: SIGNER, ciphertext: Buffer.from('xxxx') }));
      expect(decrypt.code).toBe(9);
    });

    it('answers NOT_FOUND (5) for a missing version or key and PERMISSION_DENIED (7) for a denied key', async () => {
      const missingVersion = await rejection(client.getPublicKey({ name: `${SIGNER}/cryptoKeyVersions/9` }));
      expect(missingVersion.code).toBe(5);
      const missingKey = 'projects/test-project/locations/global/keyRings/ring/cryptoKeys/nope/cryptoKeyVersions/1';
      expect((await rejection(client.getPublicKey({ name: missingKey }))).code).toBe(5);
      servers.kms.denyKey(SIGNER);
      const sign = await rejection(client.asymmetricSign({ name: version, digest: { sha256: digestOf('x') } }));
      expect(sign.code).toBe(7);
      expect(sign.message).toContain("'cloudkms.cryptoKeyVersions.useToSign' denied");
      const view = await rejection(client.getPublicKey({ name: version }));
      expect(view.code).toBe(7);
      expect(view.message).toContain("'cloudkms.cryptoKeyVersions.viewPublicKey' denied");
    });

    it('signs with each version its own key after a rotation', async () => {
      const v2 = servers.kms.rotateKey(SIGNER);
      expect(v2).toBe(`${SIGNER}/cryptoKeyVersions/2`);
      const [res] = await client.asymmetricSign({ name: v2, digest: { sha256: digestOf('m') } });
      const signature = Buffer.from(res.signature as Uint8Array);
      expect(verify('sha256', Buffer.from('m'), servers.kms.publicKeyPem(v2), signature)).toBe(true);
      expect(verify('sha256', Buffer.from('m'), servers.kms.publicKeyPem(version), signature)).toBe(false);
    });
  });

  it('failNext: other statuses map to gRPC codes', async () => {
    const statuses = [400, 403, 404, 412, 429, 500, 504];
    const expected = [3, 7, 5, 9, 8, 13, 4];
    for (const [i, status] of statuses.entries()) {
      servers.kms.failNext({ path: /:decrypt$/ }, [{ status }]);
      const err = await rejection(
        client.decrypt({ name: KEY, ciphertext: Buffer.from('x') }, { retry: { retryCodes: [] } }),
      );
      expect([status, err.code]).toEqual([status, expected[i]]);
    }
  });
});

describe('Secret Manager server with @google-cloud/secret-manager (REST fallback)', () => {
  let client: SecretManagerServiceClient;
  const PROJECT = 'test-project';
  let n = 0;
  /** A fresh secret per test: "projects/test-project/secrets/sN". */
  const fresh = () => `projects/${PROJECT}/secrets/s${++n}`;
  const NONE = { maxRetries: 0, retry: { retryCodes: [] } };
  const access = (name: string, options = {}) => client.accessSecretVersion({ name }, options).then(([r]) => r);
  const numbered = (secret: string, version: number | string) =>
    `projects/${servers.secretManager.projectNumber(PROJECT)}/secrets/${secret.split('/').pop()}/versions/${version}`;

  beforeAll(() => {
    client = new SecretManagerServiceClient({
      fallback: true,
      apiEndpoint: '127.0.0.1',
      port: servers.secretManager.port,
      protocol: 'http',
      auth: new GoogleAuth({ authClient: new PassThroughClient() }),
    });
  });
  afterAll(async () => {
    await client?.close();
  });

  it('creates a secret, adds versions and serves latest, a number or an alias, with dataCrc32c', async () => {
    const secretId = `s${++n}`;
    const [secret] = await client.createSecret({
      parent: `projects/${PROJECT}`,
      secretId,
      secret: { replication: { automatic: {} } },
    });
    const number = servers.secretManager.projectNumber(PROJECT);
    expect(number).toMatch(/^[0-9]{12}$/);
    expect(secret.name).toBe(`projects/${number}/secrets/${secretId}`);
    const name = `projects/${PROJECT}/secrets/${secretId}`;
    const one = Buffer.from('DB_PASSWORD=one\n');
    const two = Buffer.from([0, 1, 2, 255]);
    const [v1] = await client.addSecretVersion({
      parent: name,
      payload: { data: one, dataCrc32c: crc32c(one) },
    });
    expect(v1).toMatchObject({
      name: `${secret.name}/versions/1`,
      state: 'ENABLED',
      clientSpecifiedPayloadChecksum: true,
    });
    const [v2] = await client.addSecretVersion({ parent: name, payload: { data: two } });
    expect(v2).toMatchObject({ name: `${secret.name}/versions/2`, clientSpecifiedPayloadChecksum: false });
    servers.secretManager.setAlias(name, 'prod', '1');

    const latest = await access(`${name}/versions/latest`);
    expect(latest.name).toBe(`${secret.name}/versions/2`);
    expect(Buffer.from(latest.payload?.data as Uint8Array).equals(two)).toBe(true);
    // The int64 comes back as a decimal string, computed by the server when the writer sent none.
    expect(latest.payload?.dataCrc32c).toBe(String(crc32c(two)));
    const first = await access(`${name}/versions/1`);
    expect(Buffer.from(first.payload?.data as Uint8Array).toString()).toBe('DB_PASSWORD=one\n');
    expect(first.payload?.dataCrc32c).toBe(String(crc32c(one)));
    expect((await access(`${name}/versions/prod`)).name).toBe(`${secret.name}/versions/1`);
    // The project number is accepted in place of the ID.
    expect((await access(`projects/${number}/secrets/${secretId}/versions/2`)).name).toBe(`${secret.name}/versions/2`);
    const [described] = await client.getSecret({ name });
    expect(described.versionAliases).toEqual({ prod: '1' });

    // On the wire: base64 bytes, the CRC as a decimal string, names with unencoded slashes.
    const sent = servers.secretManager.requests.filter((r) => r.path.endsWith(':addVersion'));
    expect(sent[0]?.body).toEqual({ payload: { data: one.toString('base64'), dataCrc32c: String(crc32c(one)) } });
    expect(servers.secretManager.requests.find((r) => r.path.endsWith(':access'))).toMatchObject({
      method: 'GET',
      path: `/v1/${name}/versions/latest:access`,
      query: { $alt: 'json;enum-encoding=int' },
    });
  });

  it('answers version metadata without the payload, states as names', async () => {
    const name = fresh();
    servers.secretManager.createSecret(name);
    servers.secretManager.addVersion(name, 'one');
    servers.secretManager.addVersion(name, 'two', { state: 'DISABLED' });
    const [latest] = await client.getSecretVersion({ name: `${name}/versions/latest` });
    expect(latest).toMatchObject({ name: numbered(name, 2), state: 'DISABLED' });
    expect(JSON.stringify(servers.secretManager.requests.at(-1))).not.toContain(Buffer.from('two').toString('base64'));
    servers.secretManager.setVersionState(name, '1', 'DESTROYED');
    const [destroyed] = await client.getSecretVersion({ name: `${name}/versions/1` });
    expect(destroyed.state).toBe('DESTROYED');
    expect(destroyed.destroyTime?.seconds).toBeDefined();
  });

  it('refuses a disabled or destroyed version with FAILED_PRECONDITION (9); latest does not skip it', async () => {
    const name = fresh();
    servers.secretManager.createSecret(name);
    servers.secretManager.addVersion(name, 'old');
    servers.secretManager.addVersion(name, 'new');
    servers.secretManager.setVersionState(name, '2', 'DISABLED');
    const disabled = await rejection(access(`${name}/versions/latest`, NONE));
    expect([disabled.code, disabled.httpStatusCode]).toEqual([9, 400]);
    expect(disabled.message).toBe(`Secret Version [${numbered(name, 2)}] is in DISABLED state.`);
    servers.secretManager.setVersionState(name, '2', 'DESTROYED');
    const destroyed = await rejection(access(`${name}/versions/2`, NONE));
    expect(destroyed.code).toBe(9);
    expect(destroyed.message).toBe(`Secret Version [${numbered(name, 2)}] is in DESTROYED state.`);
    expect(() => servers.secretManager.setVersionState(name, '2', 'ENABLED')).toThrow(/stays destroyed/);
    expect((await access(`${name}/versions/1`)).payload?.data).toEqual(Buffer.from('old'));
  });

  it('answers NOT_FOUND (5) for a missing secret, version or alias, and for latest with no versions', async () => {
    const name = fresh();
    const secret = numbered(name, 1).replace(/\/versions\/1$/, '');
    const missing = await rejection(access(`${name}/versions/latest`, NONE));
    expect([missing.code, missing.message]).toEqual([5, `Secret [${secret}] not found or has no versions.`]);
    servers.secretManager.createSecret(name);
    expect((await rejection(access(`${name}/versions/latest`, NONE))).code).toBe(5);
    servers.secretManager.addVersion(name, 'x');
    const version = await rejection(access(`${name}/versions/2`, NONE));
    expect([version.code, version.message]).toEqual([5, `Secret Version [${secret}/versions/2] not found.`]);
    expect((await rejection(access(`${name}/versions/prod`, NONE))).code).toBe(5);
    expect((await rejection(client.getSecretVersion({ name: `${name}/versions/9` }, NONE))).code).toBe(5);
  });

  it('answers PERMISSION_DENIED (7) per permission, and testIamPermissions lists what is granted', async () => {
    const name = fresh();
    servers.secretManager.createSecret(name);
    servers.secretManager.addVersion(name, 'x');
    const ask = ['secretmanager.versions.access', 'secretmanager.versions.get', 'secretmanager.versions.add'];
    const [all] = await client.testIamPermissions({ resource: name, permissions: [...ask, 'storage.objects.get'] });
    expect(all.permissions).toEqual(ask);

    servers.secretManager.grant(name, ['secretmanager.versions.access']);
    expect((await access(`${name}/versions/latest`)).payload?.data).toEqual(Buffer.from('x'));
    const get = await rejection(client.getSecretVersion({ name: `${name}/versions/latest` }, NONE));
    expect([get.code, get.httpStatusCode]).toEqual([7, 403]);
    expect(get.message).toBe(
      `Permission 'secretmanager.versions.get' denied for resource '${name}/versions/latest' (or it may not exist).`,
    );
    const [some] = await client.testIamPermissions({ resource: name, permissions: ask });
    expect(some.permissions).toEqual(['secretmanager.versions.access']);

    servers.secretManager.denySecret(name);
    const denied = await rejection(access(`${name}/versions/latest`, NONE));
    expect(denied.code).toBe(7);
    expect(denied.message).toMatch(/^Permission 'secretmanager.versions.access' denied for resource/);
    // A denied secret that does not exist is denied, not missing, as on the real service.
    servers.secretManager.denySecret(`${name}-missing`);
    expect((await rejection(access(`${name}-missing/versions/latest`, NONE))).code).toBe(7);
    const [none] = await client.testIamPermissions({ resource: name, permissions: ask });
    expect(none.permissions).toEqual([]);
  });

  it('checks the dataCrc32c it is sent, limits payloads to 64 KiB and refuses a second create (6)', async () => {
    const name = fresh();
    servers.secretManager.createSecret(name);
    const data = Buffer.from('payload');
    const bad = await rejection(
      client.addSecretVersion({ parent: name, payload: { data, dataCrc32c: (crc32c(data) + 1) % 2 ** 32 } }),
    );
    expect(bad.code).toBe(3);
    await client.addSecretVersion({ parent: name, payload: { data: Buffer.alloc(65536, 1) } });
    expect(
      (await rejection(client.addSecretVersion({ parent: name, payload: { data: Buffer.alloc(65537) } }))).code,
    ).toBe(3);
    const [, secretId] = name.split('/secrets/') as [string, string];
    const again = await rejection(
      client.createSecret({ parent: `projects/${PROJECT}`, secretId, secret: { replication: { automatic: {} } } }),
    );
    expect(again.code).toBe(6);
    expect((await rejection(client.addSecretVersion({ parent: `${name}-missing`, payload: { data } }))).code).toBe(5);
  });

  it('corruptNextCrc sends a wrong dataCrc32c once, with the right data', async () => {
    const name = fresh();
    servers.secretManager.createSecret(name);
    servers.secretManager.addVersion(name, 'check me');
    servers.secretManager.corruptNextCrc();
    const bad = await access(`${name}/versions/latest`);
    expect(Buffer.from(bad.payload?.data as Uint8Array).toString()).toBe('check me');
    expect(bad.payload?.dataCrc32c).not.toBe(String(crc32c(Buffer.from('check me'))));
    const good = await access(`${name}/versions/latest`);
    expect(good.payload?.dataCrc32c).toBe(String(crc32c(Buffer.from('check me'))));
  });

  it('failNext: 429 and 503 keep their codes only without retry codes; maxRetries 0 alone turns them into 4', async () => {
    const name = fresh();
    servers.secretManager.createSecret(name);
    servers.secretManager.addVersion(name, 'x');
    servers.secretManager.failNext({ path: /:access$/ }, [
      { status: 429, headers: { 'Retry-After': '3' } },
      { status: 503 },
    ]);
    const quota = await rejection(access(`${name}/versions/latest`, NONE));
    expect([quota.code, quota.httpStatusCode]).toEqual([8, 429]);
    const down = await rejection(access(`${name}/versions/latest`, NONE));
    expect([down.code, down.httpStatusCode]).toEqual([14, 503]);

    servers.secretManager.failNext({ path: /:access$/ }, [{ status: 503 }]);
    const hidden = await rejection(access(`${name}/versions/latest`, { maxRetries: 0 }));
    expect(hidden.code).toBe(4);
    expect(hidden.message).toMatch(/^Exceeded maximum number of retries/);
    expect(servers.secretManager.pendingFaults).toBe(0);

    // The library's own policy retries a 503 on access.
    servers.secretManager.requests.length = 0;
    servers.secretManager.failNext({ path: /:access$/ }, [{ status: 503 }]);
    expect((await access(`${name}/versions/latest`)).payload?.data).toEqual(Buffer.from('x'));
    expect(servers.secretManager.requests).toHaveLength(2);
  });

  it('failNext: a reset is UNAVAILABLE (14), a stall ends at the call timeout (4), other statuses map', async () => {
    const name = fresh();
    servers.secretManager.createSecret(name);
    servers.secretManager.addVersion(name, 'x');
    servers.secretManager.failNext({ path: /:access$/ }, ['reset']);
    expect((await rejection(access(`${name}/versions/latest`, NONE))).code).toBe(14);
    servers.secretManager.failNext({ method: 'GET', path: `/v1/${name}/versions/latest:access` }, ['stall']);
    const stalled = await rejection(access(`${name}/versions/latest`, { ...NONE, timeout: 200 }));
    expect(stalled.code).toBe(4);
    servers.secretManager.releaseStalled();
    const statuses = [400, 401, 403, 404, 500, 504];
    const expected = [3, 16, 7, 5, 13, 4];
    for (const [i, status] of statuses.entries()) {
      servers.secretManager.failNext({ path: /:access$/ }, [{ status }]);
      const err = await rejection(access(`${name}/versions/latest`, NONE));
      expect([status, err.code]).toEqual([status, expected[i]]);
    }
  });

  it('sends Retry-After and the Google error body with a faulted status', async () => {
    servers.secretManager.failNext({ path: /:access$/ }, [{ status: 429, headers: { 'Retry-After': '3' } }]);
    const res = await fetch(`${servers.secretManager.url}/v1/projects/${PROJECT}/secrets/any/versions/latest:access`);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('3');
    expect(await res.json()).toMatchObject({ error: { code: 429, status: 'RESOURCE_EXHAUSTED' } });
  });
});

describe('start.ts', () => {
  it('runs as a script, prints the env and exits on SIGTERM', async () => {
    const child = spawn(process.execPath, ['test/servers/start.ts'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: string) => {
        out += chunk;
        if (out.split('\n').length > 3) resolve();
      });
    });
    const env = Object.fromEntries(
      out
        .trim()
        .split('\n')
        .map((l) => l.split('=', 2) as [string, string]),
    );
    expect(Object.keys(env)).toEqual([
      'STORAGE_EMULATOR_HOST',
      'SECRET_FETCH_KMS_ENDPOINT',
      'SECRET_FETCH_SECRET_MANAGER_ENDPOINT',
    ]);
    // Seed a key over the control API and use it through the real REST endpoint.
    const kmsUrl = env.SECRET_FETCH_KMS_ENDPOINT as string;
    const key = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
    expect(
      (await fetch(`${kmsUrl}/_emulator/keys`, { method: 'POST', body: JSON.stringify({ name: key }) })).status,
    ).toBe(200);
    const enc = await fetch(`${kmsUrl}/v1/${key}:encrypt`, {
      method: 'POST',
      body: JSON.stringify({ plaintext: Buffer.from('hi').toString('base64') }),
    });
    expect(enc.status).toBe(200);
    const gcsUrl = env.STORAGE_EMULATOR_HOST as string;
    const put = await fetch(`${gcsUrl}/_emulator/objects?bucket=b&name=o`, { method: 'POST', body: 'data' });
    expect(put.status).toBe(200);
    expect(await (await fetch(`${gcsUrl}/b/b/o/o?alt=media`)).text()).toBe('data');
    // Seed a secret and a version over the control API, then access it through the real REST endpoint.
    const smUrl = env.SECRET_FETCH_SECRET_MANAGER_ENDPOINT as string;
    const post = (path: string, body: unknown) =>
      fetch(`${smUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
    expect((await post('/_emulator/secrets', { name: 'projects/p-test/secrets/s' })).status).toBe(200);
    const added = await post('/_emulator/versions', { secret: 'projects/p-test/secrets/s', data: 'aGk=' });
    expect(await added.json()).toEqual({ version: '1' });
    const accessed = (await (await fetch(`${smUrl}/v1/projects/p-test/secrets/s/versions/1:access`)).json()) as {
      payload: { data: string; dataCrc32c: string };
    };
    expect(accessed.payload).toEqual({ data: 'aGk=', dataCrc32c: String(crc32c(Buffer.from('hi'))) });
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
  });
});

describe('metadata server', () => {
  let metadata: MetadataServer;
  beforeAll(async () => {
    metadata = await startMetadataServer({ email: 'sa@p.iam.gserviceaccount.com' });
  });
  afterAll(async () => metadata?.close());
  beforeEach(() => metadata.reset());
  const get = (path: string, flavor = true) =>
    fetch(`${metadata.url}${path}`, { headers: flavor ? { 'Metadata-Flavor': 'Google' } : {} });

  it('answers a token and the service account, flavored, and refuses a request without the header', async () => {
    const token = await get(`${TOKEN_PATH}?scopes=https://www.googleapis.com/auth/cloud-platform`);
    expect(token.status).toBe(200);
    expect(token.headers.get('metadata-flavor')).toBe('Google');
    expect(await token.json()).toEqual({ access_token: metadata.token, expires_in: 3599, token_type: 'Bearer' });
    const email = await get('/computeMetadata/v1/instance/service-accounts/default/email');
    expect(await email.text()).toBe('sa@p.iam.gserviceaccount.com');
    expect((await get('/computeMetadata/v1/instance')).status).toBe(200);
    expect((await get(TOKEN_PATH, false)).status).toBe(403);
    expect((await get('/computeMetadata/v1/nope')).status).toBe(404);
    expect(metadata.tokenRequests).toBe(2);
  });

  it('fails the next requests as told: statuses, then resets, by path with or without the prefix', async () => {
    metadata.failNext({ path: '/instance/service-accounts/default/token' }, [{ status: 404 }, { status: 503 }]);
    metadata.failNext({}, ['reset']);
    expect((await get(TOKEN_PATH)).status).toBe(404);
    expect((await get(TOKEN_PATH)).status).toBe(503);
    await expect(get(TOKEN_PATH)).rejects.toThrow();
    expect((await get(TOKEN_PATH)).status).toBe(200);
    expect(metadata.pendingFaults).toBe(0);
  });
});
