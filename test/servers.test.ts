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

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { KeyManagementServiceClient } from '@google-cloud/kms';
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
    // STORAGE_EMULATOR_HOST is read when the Storage object is built; the main code uses it the same way.
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

describe('start.ts', () => {
  it('runs as a script, prints the env and exits on SIGTERM', async () => {
    const child = spawn(process.execPath, ['test/servers/start.ts'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: string) => {
        out += chunk;
        if (out.split('\n').length > 2) resolve();
      });
    });
    const env = Object.fromEntries(
      out
        .trim()
        .split('\n')
        .map((l) => l.split('=', 2) as [string, string]),
    );
    expect(Object.keys(env)).toEqual(['STORAGE_EMULATOR_HOST', 'SECRET_FETCH_KMS_ENDPOINT']);
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
