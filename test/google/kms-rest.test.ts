// The thin Cloud KMS REST client against the KMS test server (which the official client drives in
// its own tests): what goes on the wire for each call, how answers reach the callers, and how
// every kind of failure becomes the gRPC code the callers' mappings switch on.

import { createServer } from 'node:net';
import { OAuth2Client } from 'google-auth-library';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mapKmsError } from '../../src/decrypt/kms.ts';
import { UnavailableError } from '../../src/errors.ts';
import { crc32c } from '../../src/google/crc32c.ts';
import {
  createKmsClient,
  grpcCodeOfHttpStatus,
  type KmsApiError,
  type KmsClient,
  kmsApiError,
} from '../../src/google/kms-rest.ts';
import type { Logger } from '../../src/log.ts';
import { createRetry, Deadline, retryAfterMs } from '../../src/retry.ts';
import { type KmsServer, startKmsServer } from '../servers/kms.ts';

const KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
const SIGNER = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/signer';
const silent: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

let server: KmsServer;
let client: KmsClient;
let version: string;
beforeAll(async () => {
  server = await startKmsServer();
  server.createKey(KEY);
  version = server.createSigningKey(SIGNER);
  client = createKmsClient(server.url);
});
afterAll(async () => server?.close());
beforeEach(() => server.reset());

async function rejection(promise: Promise<unknown>): Promise<KmsApiError & { cause?: unknown }> {
  try {
    await promise;
  } catch (error) {
    return error as KmsApiError;
  }
  throw new Error('expected a rejection');
}

const last = () => server.requests.at(-1) as KmsServer['requests'][number];

describe('requests, as Cloud KMS v1 REST takes them', () => {
  it('decrypt: POST {name}:decrypt, bytes as base64 and CRC32Cs as decimal strings, the name only in the path', async () => {
    const aad = Buffer.from('aad');
    const ciphertext = server.encrypt(KEY, 'secret', aad);
    const [response] = await client.decrypt({
      name: KEY,
      ciphertext,
      ciphertextCrc32c: { value: crc32c(ciphertext) },
      additionalAuthenticatedData: aad,
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    });
    expect(last()).toMatchObject({ method: 'POST', path: `/v1/${KEY}:decrypt`, query: {} });
    expect(last().headers['content-type']).toBe('application/json');
    expect(last().headers.authorization).toBeUndefined();
    expect(last().body).toEqual({
      ciphertext: ciphertext.toString('base64'),
      ciphertextCrc32c: String(crc32c(ciphertext)),
      additionalAuthenticatedData: aad.toString('base64'),
      additionalAuthenticatedDataCrc32c: String(crc32c(aad)),
    });
    expect(Buffer.from(response.plaintext as string, 'base64').toString()).toBe('secret');
    expect(response.plaintextCrc32c).toEqual({ value: String(crc32c(Buffer.from('secret'))) });
    expect(response.protectionLevel).toBe('SOFTWARE');
  });

  it('encrypt: POST {name}:encrypt, answered with the key version and the CRC32C verifications', async () => {
    const plaintext = Buffer.from('k');
    const [response] = await client.encrypt({ name: KEY, plaintext, plaintextCrc32c: { value: crc32c(plaintext) } });
    expect(last()).toMatchObject({ method: 'POST', path: `/v1/${KEY}:encrypt` });
    expect(last().body).toEqual({ plaintext: 'aw==', plaintextCrc32c: String(crc32c(plaintext)) });
    expect(response).toMatchObject({
      name: `${KEY}/cryptoKeyVersions/1`,
      verifiedPlaintextCrc32c: true,
      verifiedAdditionalAuthenticatedDataCrc32c: false,
    });
    expect(response.ciphertextCrc32c).toEqual({
      value: String(crc32c(Buffer.from(response.ciphertext as string, 'base64'))),
    });
  });

  it('asymmetricSign: POST {version}:asymmetricSign with the digest nested as sha256', async () => {
    const digest = Buffer.alloc(32, 7);
    const [response] = await client.asymmetricSign({
      name: version,
      digest: { sha256: digest },
      digestCrc32c: { value: crc32c(digest) },
    });
    expect(last()).toMatchObject({ method: 'POST', path: `/v1/${version}:asymmetricSign` });
    expect(last().body).toEqual({
      digest: { sha256: digest.toString('base64') },
      digestCrc32c: String(crc32c(digest)),
    });
    expect(response).toMatchObject({ name: version, verifiedDigestCrc32c: true });
    expect(response.signatureCrc32c?.value).toBe(String(crc32c(Buffer.from(response.signature as string, 'base64'))));
  });

  it('getPublicKey: GET {version}/publicKey, with no body, the algorithm by name', async () => {
    const [response] = await client.getPublicKey({ name: version });
    expect(last()).toMatchObject({ method: 'GET', path: `/v1/${version}/publicKey`, body: undefined });
    expect(last().headers['content-type']).toBeUndefined();
    expect(response).toMatchObject({
      name: version,
      algorithm: 'EC_SIGN_P256_SHA256',
      pem: server.publicKeyPem(version),
    });
    expect(response.pemCrc32c).toEqual({ value: String(crc32c(Buffer.from(server.publicKeyPem(version)))) });
  });

  it('testIamPermissions: POST {resource}:testIamPermissions with the permissions', async () => {
    const permissions = ['cloudkms.cryptoKeyVersions.useToDecrypt'];
    expect((await client.testIamPermissions({ resource: KEY, permissions }))[0]).toEqual({ permissions });
    expect(last()).toMatchObject({ method: 'POST', path: `/v1/${KEY}:testIamPermissions`, body: { permissions } });
    server.denyKey(KEY);
    expect((await client.testIamPermissions({ resource: KEY, permissions }))[0]).toEqual({});
  });

  it('sends the headers of the credential it is given', async () => {
    const credential = new OAuth2Client();
    credential.setCredentials({ access_token: 'the-token', expiry_date: Date.now() + 3_600_000 });
    const authed = createKmsClient(server.url, credential);
    await authed.getPublicKey({ name: version });
    expect(last().headers.authorization).toBe('Bearer the-token');
  });
});

describe('failures, as the gRPC codes google-gax reported', () => {
  it('takes the code from the error body’s status, and keeps its message', async () => {
    const message = 'The checksum in field ciphertext_crc32c did not match the data in field ciphertext.';
    server.failNext({ method: 'POST' }, [
      { status: 400, body: { error: { code: 400, message, status: 'INVALID_ARGUMENT' } } },
    ]);
    const error = await rejection(client.decrypt({ name: KEY, ciphertext: Buffer.from('x') }));
    expect(error).toMatchObject({ code: 3, status: 'INVALID_ARGUMENT', message });
    expect(mapKmsError(error, 'x', KEY)?.message).toBe("cannot decrypt x: KMS rejected the request's CRC32C");
  });

  it.each([
    [400, 3],
    [401, 16],
    [403, 7],
    [404, 5],
    [412, 9],
    [429, 8],
    [500, 13],
    [503, 14],
    [504, 4],
  ])('HTTP %i with the server’s error body is code %i', async (status, code) => {
    server.failNext({ method: 'POST' }, [{ status }]);
    expect(await rejection(client.decrypt({ name: KEY, ciphertext: Buffer.from('x') }))).toMatchObject({ code });
  });

  it('what the real server answers: a missing key, a denied key, a signing key asked to decrypt', async () => {
    const decrypt = (name: string) => rejection(client.decrypt({ name, ciphertext: Buffer.from('x') }));
    expect(await decrypt(`${KEY}-missing`)).toMatchObject({ code: 5, status: 'NOT_FOUND' });
    expect(await decrypt(SIGNER)).toMatchObject({ code: 9, status: 'FAILED_PRECONDITION' });
    server.denyKey(KEY);
    expect(await decrypt(KEY)).toMatchObject({ code: 7, status: 'PERMISSION_DENIED' });
  });

  it('an answer without a Google error body: by HTTP status', async () => {
    server.failNext({ method: 'POST' }, [
      { status: 502, body: '<html>Bad Gateway</html>', headers: { 'content-type': 'text/html' } },
      { status: 429, body: 'slow down' },
      { status: 503, body: '' },
    ]);
    const decrypt = () => rejection(client.decrypt({ name: KEY, ciphertext: Buffer.from('x') }));
    expect(await decrypt()).toMatchObject({ code: 13, message: 'Cloud KMS answered HTTP 502' });
    expect(await decrypt()).toMatchObject({ code: 8, status: 'RESOURCE_EXHAUSTED' });
    expect(await decrypt()).toMatchObject({ code: 14, status: 'UNAVAILABLE' });
  });

  it('maps HTTP statuses as google-gax does', () => {
    expect([400, 401, 403, 404, 409, 418, 429, 499, 500, 501, 502, 503, 504, 302].map(grpcCodeOfHttpStatus)).toEqual([
      3, 16, 7, 5, 10, 9, 8, 1, 13, 12, 13, 14, 4, 2,
    ]);
    const unknown = { error: { code: 400, message: 'm', status: 'NOT_A_STATUS' } };
    expect(kmsApiError(400, {}, JSON.stringify(unknown)).code).toBe(3);
  });

  it('a 200 whose body is not JSON is UNKNOWN, which the callers retry', async () => {
    server.failNext({ method: 'POST' }, [{ status: 200, body: 'not json' }]);
    const error = await rejection(client.decrypt({ name: KEY, ciphertext: Buffer.from('x') }));
    expect(error.code).toBe(2);
    expect(mapKmsError(error, 'x', KEY)).toBeInstanceOf(UnavailableError);
  });

  it('carries the response, so Retry-After is honoured', async () => {
    server.failNext({ method: 'POST' }, [{ status: 429, headers: { 'Retry-After': '2' } }]);
    expect(retryAfterMs(await rejection(client.decrypt({ name: KEY, ciphertext: Buffer.from('x') })))).toBe(2_000);
  });
});

describe('network failures, with the socket’s code for the retry policy', () => {
  it('a reset connection', async () => {
    server.failNext({ method: 'POST' }, ['reset']);
    const error = await rejection(client.decrypt({ name: KEY, ciphertext: Buffer.from('x') }));
    expect(error.code).toBe('ECONNRESET');
  });

  it('a body cut short', async () => {
    server.failNext({ method: 'POST' }, ['truncate']);
    const ciphertext = server.encrypt(KEY, 'x'.repeat(4000));
    const error = await rejection(client.decrypt({ name: KEY, ciphertext }));
    expect(typeof error.code).toBe('string');
  });

  it('a refused connection', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const nowhere = createKmsClient(`http://127.0.0.1:${port}`);
    expect((await rejection(nowhere.getPublicKey({ name: version }))).code).toBe('ECONNREFUSED');
  });

  it('the retry policy retries them, and a 503, until KMS answers', async () => {
    server.failNext({ method: 'POST' }, ['reset', { status: 503 }]);
    const warnings: string[] = [];
    const retry = createRetry({
      log: { ...silent, warn: (line) => warnings.push(line) },
      deadline: new Deadline(10_000),
      random: () => 0,
    });
    const ciphertext = server.encrypt(KEY, 'v');
    const [response] = await retry(
      'decrypt',
      () => client.decrypt({ name: KEY, ciphertext }),
      (error) => mapKmsError(error, 'x', KEY),
    );
    expect(Buffer.from(response.plaintext as string, 'base64').toString()).toBe('v');
    expect(warnings).toHaveLength(2);
  });

  it('a stalled server is left by the caller’s signal', async () => {
    server.failNext({ method: 'GET' }, ['stall']);
    const error = await rejection(client.getPublicKey({ name: version }, { signal: AbortSignal.timeout(100) }));
    expect((error as unknown as Error).name).toMatch(/^(TimeoutError|AbortError)$/);
    server.releaseStalled();
  });
});
