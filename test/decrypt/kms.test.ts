// Cloud KMS through the real client (REST) against the KMS test server: additional authenticated
// data travels with its CRC32C, Encrypt is checked end to end, and a data key wrapped by KMS opens
// an envelope sealed with it.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ENVELOPE_KEY_AAD, isEnvelope, sealEnvelope } from '../../src/decrypt/envelope.ts';
import { decryptSecret, unwrapWithKms } from '../../src/decrypt/index.ts';
import { createKmsClient, decryptWithKms, encryptWithKms, type KmsClient } from '../../src/decrypt/kms.ts';
import { EXIT, IntegrityError, NotFoundError, type SecretFetchError } from '../../src/errors.ts';
import { crc32c } from '../../src/google/crc32c.ts';
import type { Logger } from '../../src/log.ts';
import { createRetry, Deadline } from '../../src/retry.ts';
import { type KmsServer, startKmsServer } from '../servers/kms.ts';

const KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
const silent: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const retry = createRetry({ log: silent, deadline: new Deadline(30_000) });

let server: KmsServer;
let client: KmsClient;
beforeAll(async () => {
  server = await startKmsServer();
  server.createKey(KEY);
  client = await createKmsClient(server.url);
});
afterAll(async () => server?.close());
beforeEach(() => server.reset());

async function failure(promise: Promise<unknown>): Promise<SecretFetchError> {
  try {
    await promise;
  } catch (error) {
    return error as SecretFetchError;
  }
  throw new Error('expected a rejection');
}

const lastBody = () => server.requests.at(-1)?.body as Record<string, unknown>;

describe('decryptWithKms with additional authenticated data', () => {
  it('sends the AAD and its CRC32C, and decrypts', async () => {
    const aad = Buffer.from('apps/db-password');
    const ciphertext = server.encrypt(KEY, 'the data key', aad);
    const secret = await decryptWithKms(
      client,
      { keyName: KEY, ciphertext, additionalAuthenticatedData: aad, what: 'x' },
      retry,
    );
    expect(secret.reveal().toString()).toBe('the data key');
    expect(lastBody()).toMatchObject({
      additionalAuthenticatedData: aad.toString('base64'),
      additionalAuthenticatedDataCrc32c: String(crc32c(aad)),
    });
  });

  it('sends no AAD field without one', async () => {
    await decryptWithKms(client, { keyName: KEY, ciphertext: server.encrypt(KEY, 'v'), what: 'x' }, retry);
    expect(Object.keys(lastBody()).sort()).toEqual(['ciphertext', 'ciphertextCrc32c']);
  });

  it('reports another AAD as a mismatch, with the caller’s explanation', async () => {
    const ciphertext = server.encrypt(KEY, 'k', Buffer.from('apps/a'));
    const error = await failure(
      decryptWithKms(
        client,
        {
          keyName: KEY,
          ciphertext,
          additionalAuthenticatedData: Buffer.from('apps/b'),
          what: 'the data key of berglas://vault/apps/b',
          mismatch: 'was the object copied or renamed?',
        },
        retry,
      ),
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.line).toBe(
      `cannot decrypt the data key of berglas://vault/apps/b with ${KEY}: the ciphertext does not match this key (was the object copied or renamed?)`,
    );
  });

  it('names where a missing key came from', async () => {
    const missing = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/missing';
    const error = await failure(
      decryptWithKms(
        client,
        { keyName: missing, ciphertext: Buffer.from('x'), what: 'x', keyFrom: 'the berglas-kms-key metadata' },
        retry,
      ),
    );
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.hint).toBe('check the berglas-kms-key metadata: project, location, key ring and key');
  });
});

describe('encryptWithKms', () => {
  it('encrypts with AAD, verified by CRC32C both ways, and decrypts back', async () => {
    const aad = Buffer.from('context');
    const ciphertext = await encryptWithKms(
      client,
      { keyName: KEY, plaintext: Buffer.from('k'), additionalAuthenticatedData: aad, what: 'x' },
      retry,
    );
    expect(lastBody()).toMatchObject({
      plaintextCrc32c: String(crc32c(Buffer.from('k'))),
      additionalAuthenticatedDataCrc32c: String(crc32c(aad)),
    });
    const back = await decryptWithKms(
      client,
      { keyName: KEY, ciphertext, additionalAuthenticatedData: aad, what: 'x' },
      retry,
    );
    expect(back.reveal().toString()).toBe('k');
  });

  it('refuses a response whose ciphertext CRC32C does not match', async () => {
    server.failNext({ method: 'POST' }, [
      { status: 200, body: { name: KEY, ciphertext: 'AAAA', ciphertextCrc32c: '1', verifiedPlaintextCrc32c: true } },
    ]);
    const error = await failure(
      encryptWithKms(client, { keyName: KEY, plaintext: Buffer.from('k'), what: 'x' }, retry),
    );
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.message).toMatch(/was not verified end to end by CRC32C/);
  });

  it('refuses a response that did not verify the plaintext CRC32C', async () => {
    const ciphertext = server.encrypt(KEY, 'k');
    server.failNext({ method: 'POST' }, [
      {
        status: 200,
        body: { name: KEY, ciphertext: ciphertext.toString('base64'), ciphertextCrc32c: String(crc32c(ciphertext)) },
      },
    ]);
    const error = await failure(
      encryptWithKms(client, { keyName: KEY, plaintext: Buffer.from('k'), what: 'x' }, retry),
    );
    expect(error.exitCode).toBe(EXIT.integrity);
  });

  it('maps a plaintext over 64 KiB to one line', async () => {
    const error = await failure(
      encryptWithKms(client, { keyName: KEY, plaintext: Buffer.alloc(65_537), what: 'gs://vault/big' }, retry),
    );
    expect(error.line).toBe(
      `KMS refused to encrypt gs://vault/big with ${KEY} (is it a symmetric ENCRYPT_DECRYPT key, and the plaintext at most 64 KiB?)`,
    );
  });
});

describe('envelopes through KMS', () => {
  it('seals with Encrypt and opens with Decrypt, binding the data key to the envelope header', async () => {
    const plaintext = Buffer.alloc(200_000, 'a');
    const envelope = await sealEnvelope(plaintext, (key, aad) =>
      encryptWithKms(
        client,
        { keyName: KEY, plaintext: key, additionalAuthenticatedData: aad, what: 'a data key' },
        retry,
      ),
    );
    expect(isEnvelope(envelope)).toBe(true);
    server.requests.length = 0;
    const secret = await decryptSecret(client, { keyName: KEY, data: envelope, what: 'gs://vault/big' }, retry);
    expect(secret.reveal().equals(plaintext)).toBe(true);
    expect(server.requests).toHaveLength(1);
    expect(lastBody().additionalAuthenticatedData).toBe(ENVELOPE_KEY_AAD.toString('base64'));
  });

  it('decrypts anything without the magic as one KMS ciphertext', async () => {
    const secret = await decryptSecret(
      client,
      { keyName: KEY, data: server.encrypt(KEY, 'small'), what: 'gs://vault/small' },
      retry,
    );
    expect(secret.reveal().toString()).toBe('small');
    expect(lastBody().additionalAuthenticatedData).toBeUndefined();
  });

  it('unwrapWithKms names the data key in its messages', async () => {
    const unwrap = unwrapWithKms(client, { keyName: KEY, what: 'the data key of gs://vault/big' }, retry);
    const error = await failure(unwrap(server.encrypt(KEY, 'k', Buffer.from('a')), Buffer.from('b')));
    expect(error.message).toBe(
      `cannot decrypt the data key of gs://vault/big with ${KEY}: the ciphertext does not match this key`,
    );
  });
});
