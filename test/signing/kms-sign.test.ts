// Signing through the real KMS client against the KMS test server: the happy path, every check the
// data-integrity guidelines ask for (fed crafted responses), and the error mapping. Also the
// signature PATCH against the GCS test server.

import { createHash, verify } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { KmsClient } from '../../src/decrypt/kms.ts';
import { EXIT, type SecretFetchError } from '../../src/errors.ts';
import { createClients } from '../../src/google/clients.ts';
import { credentialsPlan } from '../../src/google/credentials.ts';
import type { Logger } from '../../src/log.ts';
import { createRetry, Deadline } from '../../src/retry.ts';
import { fetchPublicKey, signDigestWithKms } from '../../src/signing/kms-sign.ts';
import { storeSignature } from '../../src/signing/store-signature.ts';
import { crc32c } from '../servers/crc32c.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';

const SIGNER = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/signer';
const SYMMETRIC = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
const log: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

let servers: TestServers;
let version: string;
let clients: ReturnType<typeof createClients>;
let kms: KmsClient;
const retry = () => createRetry({ log, deadline: new Deadline(20_000), random: () => 0 });

beforeAll(async () => {
  servers = await startTestServers();
  version = servers.kms.createSigningKey(SIGNER);
  servers.kms.createKey(SYMMETRIC);
  const endpoints = { storage: servers.gcs.url, kms: servers.kms.url, secretManager: undefined };
  clients = createClients(endpoints, credentialsPlan({ METADATA_SERVER_DETECTION: 'none' }, endpoints));
  kms = await clients.kms(retry());
});
afterAll(async () => servers?.close());
beforeEach(() => {
  servers.gcs.reset();
  servers.kms.reset();
});

async function rejection(p: Promise<unknown>): Promise<SecretFetchError> {
  try {
    await p;
  } catch (error) {
    return error as SecretFetchError;
  }
  throw new Error('expected a rejection');
}

const digest = createHash('sha256').update('message').digest();
const signResponse = (fields: Record<string, unknown>) => {
  const signature = Buffer.from('3006020101020101', 'hex');
  return {
    status: 200,
    body: {
      signature: signature.toString('base64'),
      signatureCrc32c: String(crc32c(signature)),
      verifiedDigestCrc32c: true,
      name: version,
      ...fields,
    },
  };
};

describe('fetchPublicKey', () => {
  it('returns the PEM of the key version, checked', async () => {
    const key = await fetchPublicKey(kms, version, retry());
    expect(key.pem).toBe(servers.kms.publicKeyPem(version));
    expect(key.key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it.each([
    ['another name', { name: `${SIGNER}/cryptoKeyVersions/2` }, EXIT.integrity, /answered with the public key of/],
    ['a pemCrc32c that does not match', { pemCrc32c: '1' }, EXIT.integrity, /does not match its pemCrc32c/],
    ['no pemCrc32c', { pemCrc32c: undefined }, EXIT.integrity, /does not match its pemCrc32c/],
    ['another algorithm', { algorithm: 'RSA_SIGN_PSS_2048_SHA256' }, EXIT.usage, /is a RSA_SIGN_PSS_2048_SHA256 key/],
  ])('refuses a response with %s', async (_name, fields, code, message) => {
    const pem = servers.kms.publicKeyPem(version);
    const body = { pem, algorithm: 'EC_SIGN_P256_SHA256', pemCrc32c: String(crc32c(Buffer.from(pem))), name: version };
    servers.kms.failNext({ path: /\/publicKey$/ }, [{ status: 200, body: { ...body, ...fields } }]);
    const error = await rejection(fetchPublicKey(kms, version, retry()));
    expect(error.exitCode).toBe(code);
    expect(error.message).toMatch(message);
  });

  it.each([
    ['a missing key (66)', `${SIGNER}x/cryptoKeyVersions/1`, EXIT.notFound, /does not exist/],
    ['a missing version (66)', `${SIGNER}/cryptoKeyVersions/7`, EXIT.notFound, /does not exist/],
    ['a symmetric key (64)', `${SYMMETRIC}/cryptoKeyVersions/1`, EXIT.usage, /cannot sign: it is not an asymmetric/],
  ])('maps %s', async (_name, name, code, message) => {
    const error = await rejection(fetchPublicKey(kms, name, retry()));
    expect(error.exitCode).toBe(code);
    expect(error.message).toMatch(message);
  });

  it('maps a denied key to 77, naming the role', async () => {
    servers.kms.denyKey(SIGNER);
    const error = await rejection(fetchPublicKey(kms, version, retry()));
    expect(error.exitCode).toBe(EXIT.permission);
    expect(error.line).toBe(
      `permission denied to read the public key of ${version} (grant roles/cloudkms.signerVerifier on the key to the account this runs as)`,
    );
  });
});

describe('signDigestWithKms', () => {
  it('returns a DER signature over the digest, sending the digest CRC32C', async () => {
    const signature = await signDigestWithKms(kms, version, digest, retry());
    expect(verify('sha256', Buffer.from('message'), servers.kms.publicKeyPem(version), signature)).toBe(true);
    const sent = servers.kms.requests.at(-1)?.body as { digest: { sha256: string }; digestCrc32c: string };
    expect(sent.digest.sha256).toBe(digest.toString('base64'));
    expect(sent.digestCrc32c).toBe(String(crc32c(digest)));
  });

  it.each([
    ['another name', { name: `${SIGNER}/cryptoKeyVersions/2` }, /answered for .*cryptoKeyVersions\/2/],
    ['verifiedDigestCrc32c false', { verifiedDigestCrc32c: false }, /did not verify the digest's CRC32C/],
    ['no verifiedDigestCrc32c', { verifiedDigestCrc32c: undefined }, /did not verify the digest's CRC32C/],
    ['a signatureCrc32c that does not match', { signatureCrc32c: '7' }, /does not match its signatureCrc32c/],
    ['no signature', { signature: undefined, signatureCrc32c: '0' }, /does not match its signatureCrc32c/],
  ])('refuses a response with %s (76)', async (_name, fields, message) => {
    servers.kms.failNext({ path: /:asymmetricSign$/ }, [signResponse(fields)]);
    const error = await rejection(signDigestWithKms(kms, version, digest, retry()));
    expect(error.exitCode).toBe(EXIT.integrity);
    expect(error.message).toMatch(message);
  });

  it('retries a 503 once, then signs', async () => {
    servers.kms.failNext({ path: /:asymmetricSign$/ }, [{ status: 503 }]);
    const signature = await signDigestWithKms(kms, version, digest, retry());
    expect(verify('sha256', Buffer.from('message'), servers.kms.publicKeyPem(version), signature)).toBe(true);
    expect(servers.kms.requests.filter((r) => r.path.endsWith(':asymmetricSign'))).toHaveLength(2);
  });

  it('maps a denied key to 77 and a rejected CRC32C to 76', async () => {
    servers.kms.failNext({ path: /:asymmetricSign$/ }, [
      {
        status: 400,
        body: {
          error: {
            code: 400,
            message: 'The checksum in field digest_crc32c did not match the data in field digest.',
            status: 'INVALID_ARGUMENT',
          },
        },
      },
    ]);
    expect((await rejection(signDigestWithKms(kms, version, digest, retry()))).exitCode).toBe(EXIT.integrity);
    servers.kms.denyKey(SIGNER);
    const denied = await rejection(signDigestWithKms(kms, version, digest, retry()));
    expect(denied.exitCode).toBe(EXIT.permission);
    expect(denied.message).toBe(`permission denied to sign with ${version}`);
  });
});

describe('storeSignature', () => {
  const ref = { scheme: 'gs', bucket: 'vault', object: 'app/x.enc' } as const;
  const fields = { 'secret-fetch-signature': 'c2lnbmF0dXJl', 'secret-fetch-signing-key': 'v' };

  it('patches the generation that was read, under its generation and metageneration', async () => {
    const { generation } = servers.gcs.putObject('vault', 'app/x.enc', 'bytes', { owner: 'team' });
    const metageneration = await storeSignature(ref, { generation, metageneration: '1', metadata: {} }, fields, {
      clients,
      retry: retry(),
      log,
    });
    expect(metageneration).toBe('2');
    expect(servers.gcs.getObject('vault', 'app/x.enc')?.metadata).toEqual({ owner: 'team', ...fields });
    expect(servers.gcs.requests.at(-1)).toMatchObject({
      method: 'PATCH',
      query: { ifGenerationMatch: generation, ifMetagenerationMatch: '1' },
    });
  });

  it('stores nothing when the object moved on (412 -> 76)', async () => {
    const { generation } = servers.gcs.putObject('vault', 'app/x.enc', 'bytes');
    servers.gcs.putObject('vault', 'app/x.enc', 'newer bytes');
    const error = await rejection(
      storeSignature(ref, { generation, metageneration: '1', metadata: {} }, fields, { clients, retry: retry(), log }),
    );
    expect(error.exitCode).toBe(EXIT.integrity);
    expect(error.line).toBe(
      `gs://vault/app/x.enc#${generation} changed while it was being signed (a new generation or new metadata since it was read), so the signature was not stored (check who wrote it and what it holds now, then sign it again)`,
    );
    expect(servers.gcs.getObject('vault', 'app/x.enc', generation)?.metadata).toEqual({});
  });

  it('maps a denied PATCH to 77, naming storage.objects.update', async () => {
    const { generation } = servers.gcs.putObject('vault', 'app/denied.enc', 'bytes');
    servers.gcs.denyObject('vault', 'app/denied.enc');
    const error = await rejection(
      storeSignature({ ...ref, object: 'app/denied.enc' }, { generation, metageneration: '1', metadata: {} }, fields, {
        clients,
        retry: retry(),
        log,
      }),
    );
    expect(error.exitCode).toBe(EXIT.permission);
    expect(error.hint).toMatch(/storage\.objects\.update \(roles\/storage\.objectUser\)/);
  });
});
