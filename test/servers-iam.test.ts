// The IAM testPermissions endpoints of the GCS and KMS test servers (what secret-fetch doctor
// asks), driven by the real Google client libraries over loopback, as in servers.test.ts.

import { KeyManagementServiceClient } from '@google-cloud/kms';
import { Storage } from '@google-cloud/storage';
import { GoogleAuth, PassThroughClient } from 'google-auth-library';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestServers, type TestServers } from './servers/start.ts';

const KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
const DECRYPT = 'cloudkms.cryptoKeyVersions.useToDecrypt';

let servers: TestServers;
let storage: Storage;
// The generated signature wants a protobuf class instance; the client sends this plain object.
let kms: Pick<KeyManagementServiceClient, 'close'> & {
  testIamPermissions(request: {
    resource: string;
    permissions: string[];
  }): Promise<[{ permissions?: string[] | null }]>;
};

beforeAll(async () => {
  servers = await startTestServers();
  servers.gcs.putObject('vault', 'app.env', 'A=1\n');
  servers.kms.createKey(KEY);
  storage = new Storage({ apiEndpoint: servers.gcs.url, projectId: 'test' });
  const url = new URL(servers.kms.url);
  kms = new KeyManagementServiceClient({
    fallback: true,
    apiEndpoint: url.hostname,
    port: Number(url.port),
    protocol: 'http',
    auth: new GoogleAuth({ authClient: new PassThroughClient() }),
  });
});
afterAll(async () => {
  await kms?.close();
  await servers?.close();
});
beforeEach(() => {
  servers.gcs.reset();
  servers.kms.reset();
});

describe('GCS bucket testPermissions', () => {
  it('grants what was asked on a bucket the principal may use', async () => {
    const [held] = await storage.bucket('vault').iam.testPermissions(['storage.objects.get', 'storage.objects.list']);
    expect(held).toEqual({ 'storage.objects.get': true, 'storage.objects.list': true });
    expect(servers.gcs.requests.map((r) => [r.method, r.path])).toEqual([
      ['GET', '/storage/v1/b/vault/iam/testPermissions'],
    ]);
  });

  it('uses the path without /storage/v1 under STORAGE_EMULATOR_HOST', async () => {
    const saved = process.env.STORAGE_EMULATOR_HOST;
    process.env.STORAGE_EMULATOR_HOST = servers.gcs.url;
    try {
      const [held] = await new Storage({ projectId: 'test' })
        .bucket('vault')
        .iam.testPermissions('storage.objects.get');
      expect(held).toEqual({ 'storage.objects.get': true });
    } finally {
      if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = saved;
    }
    expect(servers.gcs.requests.map((r) => r.path)).toEqual(['/b/vault/iam/testPermissions']);
  });

  it('grants nothing on a denied bucket, whose objects then answer 403', async () => {
    servers.gcs.denyBucket('vault');
    const [held] = await storage.bucket('vault').iam.testPermissions(['storage.objects.get']);
    expect(held).toEqual({ 'storage.objects.get': false });
    await expect(storage.bucket('vault').file('app.env').getMetadata()).rejects.toMatchObject({ code: 403 });
    servers.gcs.allowBucket('vault');
    await expect(storage.bucket('vault').file('app.env').getMetadata()).resolves.toBeDefined();
  });

  it('lets an object ACL grant the read a denied bucket does not (fine-grained access)', async () => {
    servers.gcs.putObject('vault', 'other.env', 'B=2\n');
    servers.gcs.denyBucket('vault');
    servers.gcs.grantObjectAcl('vault', 'app.env');
    const [held] = await storage.bucket('vault').iam.testPermissions(['storage.objects.get']);
    expect(held).toEqual({ 'storage.objects.get': false });
    await expect(storage.bucket('vault').file('app.env').getMetadata()).resolves.toBeDefined();
    await expect(storage.bucket('vault').file('other.env').getMetadata()).rejects.toMatchObject({ code: 403 });
  });

  it('still grants on the bucket when only one object is denied', async () => {
    servers.gcs.denyObject('vault', 'app.env');
    const [held] = await storage.bucket('vault').iam.testPermissions(['storage.objects.get']);
    expect(held).toEqual({ 'storage.objects.get': true });
  });

  it('answers 404 for a bucket that does not exist, and 400 for a project-level permission', async () => {
    await expect(storage.bucket('nope').iam.testPermissions(['storage.objects.get'])).rejects.toMatchObject({
      code: 404,
    });
    await expect(storage.bucket('vault').iam.testPermissions(['storage.buckets.list'])).rejects.toMatchObject({
      code: 400,
    });
  });
});

describe('KMS key testIamPermissions', () => {
  it('grants useToDecrypt on a key the principal may use, over POST {key}:testIamPermissions', async () => {
    const [response] = await kms.testIamPermissions({ resource: KEY, permissions: [DECRYPT] });
    expect(response.permissions).toEqual([DECRYPT]);
    expect(servers.kms.requests.map((r) => [r.method, r.path, r.body])).toEqual([
      ['POST', `/v1/${KEY}:testIamPermissions`, { permissions: [DECRYPT] }],
    ]);
  });

  it('grants nothing on a denied key, and nothing on a key that does not exist (not NOT_FOUND)', async () => {
    servers.kms.denyKey(KEY);
    const [denied] = await kms.testIamPermissions({ resource: KEY, permissions: [DECRYPT] });
    expect(denied.permissions ?? []).toEqual([]);
    const [missing] = await kms.testIamPermissions({ resource: `${KEY}-missing`, permissions: [DECRYPT] });
    expect(missing.permissions ?? []).toEqual([]);
  });

  it('refuses a permission of another service with INVALID_ARGUMENT', async () => {
    await expect(kms.testIamPermissions({ resource: KEY, permissions: ['storage.objects.get'] })).rejects.toMatchObject(
      { code: 3 },
    );
  });
});
