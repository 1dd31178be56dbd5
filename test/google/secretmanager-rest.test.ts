// The thin Secret Manager reader against the Secret Manager test server: the REST paths it uses,
// the answers as the sm:// source reads them, and failures as mapSecretManagerError and the retry
// policy see them.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSecretManagerReader } from '../../src/google/secretmanager-rest.ts';
import { retryAfterMs } from '../../src/retry.ts';
import { type SecretManagerServer, startSecretManagerServer } from '../servers/secretmanager.ts';

let sm: SecretManagerServer;
beforeAll(async () => {
  sm = await startSecretManagerServer();
  sm.createSecret('projects/demo-project/secrets/db');
  sm.addVersion('projects/demo-project/secrets/db', 'pw-1');
});
afterAll(async () => sm?.close());
beforeEach(() => sm.reset());

const name = 'projects/demo-project/secrets/db/versions/latest';

describe('createSecretManagerReader', () => {
  it('accesses a version and reads its metadata under /v1, with no credential for an emulator', async () => {
    const reader = createSecretManagerReader(sm.url);
    const [access] = await reader.accessSecretVersion({ name });
    expect(Buffer.from(access.payload?.data ?? '', 'base64').toString()).toBe('pw-1');
    expect(String(access.payload?.dataCrc32c)).toMatch(/^\d+$/);
    expect(access.name).toMatch(/\/secrets\/db\/versions\/1$/);
    const [version] = await reader.getSecretVersion({ name });
    expect(version).toMatchObject({ state: 'ENABLED' });
    expect(sm.requests.map((r) => [r.method, r.path])).toEqual([
      ['GET', `/v1/${name}:access`],
      ['GET', `/v1/${name}`],
    ]);
    expect(sm.requests.every((r) => r.headers.authorization === undefined)).toBe(true);
  });

  it('fails with the gRPC code google-gax reported, the HTTP status, and the Retry-After', async () => {
    const reader = createSecretManagerReader(sm.url);
    const missing = await reader
      .accessSecretVersion({ name: 'projects/demo-project/secrets/nope/versions/latest' })
      .catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 5, status: 'NOT_FOUND', httpStatusCode: 404 });
    sm.failNext({ path: /:access$/ }, [{ status: 429, headers: { 'Retry-After': '3' } }]);
    const busy = await reader.accessSecretVersion({ name }).catch((e: unknown) => e);
    expect(busy).toMatchObject({ code: 8, httpStatusCode: 429 });
    expect(retryAfterMs(busy)).toBe(3000);
    sm.failNext({ path: /:access$/ }, ['reset']);
    expect(await reader.accessSecretVersion({ name }).catch((e: unknown) => e)).toMatchObject({ code: 'ECONNRESET' });
  });
});
