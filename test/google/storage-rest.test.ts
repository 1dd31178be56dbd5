// The thin Cloud Storage reader against the GCS test server: the JSON API paths it uses, what a
// failure looks like to mapStorageError and the retry policy, and the credential it sends.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AnswerTooLargeError } from '../../src/google/rest.ts';
import { mapStorageError } from '../../src/google/storage.ts';
import { createGcsReader, GcsApiError } from '../../src/google/storage-rest.ts';
import { retryAfterMs } from '../../src/retry.ts';
import { type GcsServer, startGcsServer } from '../servers/gcs.ts';

let gcs: GcsServer;
beforeAll(async () => {
  gcs = await startGcsServer();
});
afterAll(async () => gcs?.close());
beforeEach(() => gcs.reset());

describe('createGcsReader', () => {
  it('reads metadata and pinned media under /storage/v1, names itself, and sends no credential to an emulator', async () => {
    const { generation } = gcs.putObject('vault', 'dir/a b.env', 'A=1\n', { owner: 'team' });
    const reader = createGcsReader(gcs.url);
    const metadata = await reader.getMetadata('vault', 'dir/a b.env');
    expect(metadata).toMatchObject({ generation, size: '4', metadata: { owner: 'team' } });
    expect((await reader.download('vault', 'dir/a b.env', generation, 4)).toString()).toBe('A=1\n');
    expect(gcs.requests.map((r) => [r.path, r.query])).toEqual([
      ['/storage/v1/b/vault/o/dir%2Fa%20b.env', {}],
      ['/storage/v1/b/vault/o/dir%2Fa%20b.env', { alt: 'media', generation }],
    ]);
    for (const r of gcs.requests) {
      expect(r.headers['user-agent']).toMatch(/^secret-fetch\/\d+\.\d+\.\d+$/);
      expect(r.headers.authorization).toBeUndefined();
    }
  });

  it('sends the headers of the credential it is given', async () => {
    gcs.putObject('vault', 'a', 'x');
    const credential = { getRequestHeaders: async () => new Headers({ Authorization: 'Bearer test-token' }) };
    await createGcsReader(gcs.url, credential as never).getMetadata('vault', 'a');
    expect(gcs.requests[0]?.headers.authorization).toBe('Bearer test-token');
  });

  it('fails with the HTTP status as code, which mapStorageError reads, and keeps Retry-After', async () => {
    const reader = createGcsReader(gcs.url);
    const missing = await reader.getMetadata('vault', 'nope').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(GcsApiError);
    expect(mapStorageError(missing, 'gs://vault/nope', 'storage.objects.get')?.exitCode).toBe(66);
    gcs.putObject('vault', 'busy', 'x');
    gcs.failNext({ path: /busy/ }, [{ status: 429, headers: { 'retry-after': '2' } }]);
    const busy = await reader.getMetadata('vault', 'busy').catch((e: unknown) => e);
    expect(busy).toMatchObject({ code: 429 });
    expect(retryAfterMs(busy)).toBe(2000);
  });

  it('stops reading a download longer than the metadata said, which mapStorageError calls an integrity failure', async () => {
    const { generation } = gcs.putObject('vault', 'long', 'x'.repeat(100_000));
    const error = await createGcsReader(gcs.url)
      .download('vault', 'long', generation, 10)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AnswerTooLargeError);
    expect(mapStorageError(error, 'gs://vault/long', 'storage.objects.get')?.exitCode).toBe(76);
  });

  it('lifts a reset connection to its socket code, which the retry policy retries', async () => {
    gcs.putObject('vault', 'r', 'x');
    gcs.failNext({ path: /\/o\/r$/ }, ['reset']);
    const reset = await createGcsReader(gcs.url)
      .getMetadata('vault', 'r')
      .catch((e: unknown) => e);
    expect((reset as { code?: string }).code).toBe('ECONNRESET');
  });

  it('reads an object in one GET, with the generation, stored length and CRC32C of its headers', async () => {
    const { generation } = gcs.putObject('vault', 'one', 'A=1\n');
    const seen: unknown[] = [];
    const read = await createGcsReader(gcs.url).readMedia('vault', 'one', undefined, (media) => seen.push(media));
    expect(read?.data.toString()).toBe('A=1\n');
    expect(read?.headers).toMatchObject({ generation, size: 4 });
    expect(seen).toEqual([read?.headers]);
    expect(gcs.requests.map((r) => r.query)).toEqual([{ alt: 'media' }]);
  });

  it('answers undefined, without reading the body, when the headers that pin it are missing', async () => {
    gcs.putObject('vault', 'bare', 'x');
    gcs.failNext({ query: { alt: 'media' } }, [{ status: 200, body: 'y'.repeat(100_000) }]);
    const check = () => {
      throw new Error('not called');
    };
    expect(await createGcsReader(gcs.url).readMedia('vault', 'bare', undefined, check)).toBeUndefined();
  });

  it('refuses by the headers alone what `check` refuses, and keeps the status of an error answer', async () => {
    gcs.putObject('vault', 'big', 'x'.repeat(1000));
    const refusal = new Error('too big');
    const reader = createGcsReader(gcs.url);
    await expect(
      reader.readMedia('vault', 'big', undefined, () => {
        throw refusal;
      }),
    ).rejects.toBe(refusal);
    const missing = await reader.readMedia('vault', 'nope', undefined, () => {}).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 404 });
  });
});
