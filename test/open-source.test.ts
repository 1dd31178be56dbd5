// planSource decides, before any I/O, how a source is read and decrypted; openSource follows the
// plan. Both in-process, with fake clients (FetchContext.clients), so the order of the calls and
// what is wiped can be seen.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MasterKeySource } from '../src/decrypt/master-key.ts';
import { UsageError } from '../src/errors.ts';
import type { Clients } from '../src/google/clients.ts';
import { crc32c } from '../src/google/crc32c.ts';
import type { Logger } from '../src/log.ts';
import { openSource, planSource } from '../src/open-source.ts';
import { createRetry, Deadline } from '../src/retry.ts';
import type { FetchContext } from '../src/sources/index.ts';

const KEY = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
const MASTER: MasterKeySource = { kind: 'file', path: '/run/keys/master.key' };
const quiet: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

describe('planSource', () => {
  it.each([
    ['gs://vault/app.env.enc', { kmsKey: KEY }, { kind: 'kms', key: KEY }, 'dotenv'],
    ['berglas://vault/app.env', { kmsKey: KEY }, { kind: 'self', kmsKey: KEY }, 'dotenv'],
    ['berglas://vault/app.yml.enc', {}, { kind: 'self', kmsKey: undefined }, 'yaml'],
    ['c.yml.enc', { masterKey: MASTER }, { kind: 'flask-vault', masterKey: MASTER }, 'yaml'],
    ['blob.enc', {}, { kind: 'none' }, 'raw'],
    ['app.env.enc', { format: 'raw' }, { kind: 'none' }, 'raw'],
    ['sm://my-project/db', {}, { kind: 'none' }, 'raw'],
    ['settings.cfg', { format: 'yaml' }, { kind: 'none' }, 'yaml'],
  ] as const)('%s %o: decrypt %o, format %s', (uri, given, decrypt, format) => {
    const plan = planSource({ uri, ...given });
    expect(plan).toMatchObject({ uri, decrypt, format });
    expect(Object.isFrozen(plan)).toBe(true);
  });

  it.each([
    ['app.env.enc', {}, /^app\.env\.enc is encrypted \(\.enc\) but no key is given$/],
    ['a.env', { format: 'xml' }, /^--format xml is not known$/],
    ['gs://vault/a.env', { kmsKey: 'k' }, /^--kms-key k is not a key name$/],
    ['ftp://b/a.env', {}, /the scheme ftp:\/\/ is not supported/],
  ])('refuses %s %o before any I/O', (uri, given, message) => {
    const error = (() => {
      try {
        planSource({ uri, ...given });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).message).toMatch(message);
  });
});

describe('openSource', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sf-open-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const PLAINTEXT = Buffer.from('A=1\n');
  const CIPHERTEXT = Buffer.from('ciphertext as stored');

  /** Clients whose every call is recorded; the object is served in one GET at generation 7. */
  function fakeClients(events: string[], seen: { ciphertext?: Buffer }): Clients {
    const gcs = {
      readMedia: async (bucket: string, object: string) => {
        events.push(`download ${bucket}/${object}`);
        const data = Buffer.from(CIPHERTEXT);
        const headers = { generation: '7', metageneration: '1', size: data.length, crc32c: crc32c(data) };
        return { headers, data };
      },
    };
    const kms = {
      decrypt: async (request: { name: string; ciphertext: Uint8Array }) => {
        events.push(`decrypt with ${request.name}`);
        seen.ciphertext = request.ciphertext as Buffer;
        return [{ plaintext: Buffer.from(PLAINTEXT), plaintextCrc32c: { value: crc32c(PLAINTEXT) } }];
      },
    };
    return {
      gcs: async () => gcs,
      kms: async () => {
        events.push('kms client');
        return kms;
      },
      preconnect: (service: string) => events.push(`preconnect ${service}`),
    } as unknown as Clients;
  }

  const context = (clients: Clients, extra: Partial<FetchContext> = {}): FetchContext => ({
    clients,
    retry: createRetry({ log: quiet, deadline: new Deadline(5_000) }),
    log: quiet,
    maxBytes: 1024,
    ...extra,
  });

  it('kms: connects to KMS before the download, decrypts with the planned key, wipes the ciphertext', async () => {
    const events: string[] = [];
    const seen: { ciphertext?: Buffer } = {};
    const opened = await openSource(
      planSource({ uri: 'gs://vault/app.env.enc', kmsKey: KEY }),
      context(fakeClients(events, seen)),
    );
    expect(events).toEqual(['preconnect kms', 'download vault/app.env.enc', 'kms client', `decrypt with ${KEY}`]);
    expect(opened.secret.text('x')).toBe('A=1\n');
    expect(opened).toMatchObject({ version: '7', keyName: KEY });
    expect(seen.ciphertext?.every((byte) => byte === 0)).toBe(true);
  });

  it('none: the bytes as stored, and no KMS at all', async () => {
    const events: string[] = [];
    const opened = await openSource(planSource({ uri: 'gs://vault/app.env' }), context(fakeClients(events, {})));
    expect(events).toEqual(['download vault/app.env']);
    expect(opened.secret.reveal().equals(CIPHERTEXT)).toBe(true);
    expect(opened).toMatchObject({ version: '7', keyName: undefined });
  });

  it('self (berglas): connects to KMS ahead too, since the reader unwraps its data key there', async () => {
    const events: string[] = [];
    const plan = planSource({ uri: 'berglas://vault/app.env' });
    // The fake serves no metadata: the reader fails after the preconnect, which is what is looked at.
    await openSource(plan, context(fakeClients(events, {}))).catch(() => {});
    expect(events[0]).toBe('preconnect kms');
  });

  it('reads `at` (a pinned version) with the plan of the source', async () => {
    const events: string[] = [];
    const plan = planSource({ uri: 'gs://vault/app.env' });
    await openSource(plan, context(fakeClients(events, {})), { ...plan.ref, object: 'other.env' } as never);
    expect(events).toEqual(['download vault/other.env']);
  });

  it('fails closed when --verify-key is set and the reader did not check it', async () => {
    const file = join(dir, 'a.env');
    writeFileSync(file, 'A=1\n');
    const verifyKey = {} as FetchContext['verifyKey'];
    await expect(openSource(planSource({ uri: file }), context(fakeClients([], {}), { verifyKey }))).rejects.toThrow(
      /the file:\/\/ reader ignored --verify-key/,
    );
  });
});
