// berglas:// sources and secret-fetch envelopes on gs://, through the built binary against the
// Cloud Storage and KMS test servers. Every fixture comes from the independent writers in
// test/fixtures/envelopes.ts (node:crypto and the real KMS client), never from the reader.

import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { crc32c } from '../../src/google/crc32c.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { berglasBody, secretFetchEnvelope, writeBerglasObject } from '../fixtures/envelopes.ts';
import { startTestServers } from '../servers/start.ts';
import {
  BASE_ENV,
  BINARY,
  expectFailure,
  expectNoCanary,
  filesIn,
  KEY,
  OTHER_KEY,
  ROOT,
  runBinary,
  tmpfsDir,
} from './harness.ts';

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;

const MISSING_KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/missing';
const DENIED_KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/denied';
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const DOTENV = `API_TOKEN=${CANARY}\nDATABASE_URL=postgresql://app:${CANARY}@db/app\n`;

let out: { dir: string; cleanup: () => void };
let id: string;

beforeAll(async () => {
  servers = await startTestServers();
  for (const key of [KEY, OTHER_KEY, DENIED_KEY]) servers.kms.createKey(key);
});
afterAll(async () => servers?.close());
beforeEach(() => {
  out = tmpfsDir();
  id = `t-${randomBytes(4).toString('hex')}`;
  servers.gcs.reset();
  servers.kms.reset();
  servers.kms.denyKey(DENIED_KEY);
});
afterEach(() => out.cleanup());

const env = () => ({ ...servers.env });
const sha = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
// The JSON API path of a request, without the /storage/v1 prefix the binary's reader sends.
const decoded = (path: string) => decodeURIComponent(path).replace(/^\/storage\/v1(?=\/b\/)/, '');
/** The object name a test writes, unique to it. */
const named = (name: string) => `${id}/${name}`;
const kmsDecrypts = () => servers.kms.requests.filter((r) => r.path.endsWith(':decrypt'));
const downloads = () => servers.gcs.requests.filter((r) => r.query.alt === 'media');

describe('berglas:// sources', () => {
  it('reads a berglas secret into --out and --env: key from the metadata, object name as AAD', async () => {
    const object = named('app.env');
    const generation = await writeBerglasObject(servers, 'vault', object, Buffer.from(DOTENV), KEY);
    servers.gcs.requests.length = 0;
    servers.kms.requests.length = 0;
    const file = join(out.dir, 'app.env');
    const result = await runBinary(
      ['--source', `berglas://vault/${object}`, '--out', file, '--env', '--', 'sh', '-c', 'echo "$API_TOKEN"'],
      { env: env() },
    );
    expect(result.stderr).toBe('');
    expect(result).toMatchObject({ code: 0, stdout: `${CANARY}\n` });
    expect(readFileSync(file, 'utf8')).toBe(DOTENV);
    expect(lstatSync(file).mode & 0o777).toBe(0o400);

    // The metadata, then the body at exactly that generation.
    const reads = servers.gcs.requests.filter((r) => r.method === 'GET');
    expect(reads.map((r) => [decoded(r.path), r.query.alt, r.query.generation])).toEqual([
      [`/b/vault/o/${object}`, undefined, undefined],
      [`/b/vault/o/${object}`, 'media', generation],
    ]);
    // One Decrypt, of the data key, on the metadata's key, bound to the object name.
    const [decrypt] = kmsDecrypts();
    expect(kmsDecrypts()).toHaveLength(1);
    expect(decoded(decrypt?.path ?? '')).toBe(`/v1/${KEY}:decrypt`);
    expect(decrypt?.body).toMatchObject({
      additionalAuthenticatedData: Buffer.from(object).toString('base64'),
      additionalAuthenticatedDataCrc32c: String(crc32c(Buffer.from(object))),
    });
  });

  it('detects the format from the object name; a name without extension needs --format', async () => {
    const object = named('db-credentials');
    await writeBerglasObject(servers, 'vault', object, Buffer.from(DOTENV), KEY);
    const args = ['--source', `berglas://vault/${object}`, '--env'];
    const raw = await runBinary([...args, '--', 'true'], { env: env() });
    expectFailure(
      raw,
      EXIT.usage,
      new RegExp(`--env needs entries, but berglas://vault/${object} is read as raw \\(name the format with --format`),
    );
    const dotenv = await runBinary([...args, '--format', 'dotenv', '--', 'sh', '-c', 'echo "$DATABASE_URL"'], {
      env: env(),
    });
    expect(dotenv.stderr).toBe('');
    expect(dotenv.stdout).toBe(`postgresql://app:${CANARY}@db/app\n`);
  });

  it('writes a binary secret as it is', async () => {
    const object = named('tls.key');
    const secret = randomBytes(3000);
    await writeBerglasObject(servers, 'vault', object, secret, KEY);
    const file = join(out.dir, 'tls.key');
    const result = await runBinary(['--source', `berglas://vault/${object}`, '--out', file], { env: env() });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(readFileSync(file).equals(secret)).toBe(true);
  });

  it('reads a pinned generation, with the key its own metadata names', async () => {
    const object = named('versioned.env');
    const first = await writeBerglasObject(servers, 'vault', object, Buffer.from('V=one\n'), KEY);
    await writeBerglasObject(servers, 'vault', object, Buffer.from('V=two\n'), OTHER_KEY);
    const read = (uri: string) => runBinary(['--source', uri, '--env', '--', 'sh', '-c', 'echo $V'], { env: env() });
    expect((await read(`berglas://vault/${object}`)).stdout).toBe('two\n');
    servers.kms.requests.length = 0;
    const pinned = await read(`berglas://vault/${object}#${first}`);
    expect(pinned).toMatchObject({ code: 0, stdout: 'one\n', stderr: '' });
    expect(decoded(kmsDecrypts()[0]?.path ?? '')).toBe(`/v1/${KEY}:decrypt`);
  });

  it('accepts a --kms-key that matches the metadata, and a key version in the metadata', async () => {
    const object = named('pinned-key.env');
    await writeBerglasObject(servers, 'vault', object, Buffer.from(DOTENV), KEY, {
      metadata: { 'berglas-kms-key': `${KEY}/cryptoKeyVersions/1` },
    });
    const result = await runBinary(
      ['--source', `berglas://vault/${object}`, '--kms-key', KEY, '--env', '--', 'sh', '-c', 'echo "$API_TOKEN"'],
      { env: env() },
    );
    expect(result).toMatchObject({ code: 0, stdout: `${CANARY}\n`, stderr: '' });
    expect(decoded(kmsDecrypts()[0]?.path ?? '')).toBe(`/v1/${KEY}:decrypt`);
  });

  it('mixes with a gs:// source under one --kms-key', async () => {
    const object = named('mixed.env');
    await writeBerglasObject(servers, 'vault', object, Buffer.from('FROM_BERGLAS=b\n'), KEY);
    const ciphertext = await encryptWithKms(servers.kms.url, KEY, Buffer.from('FROM_GS=g\n'));
    await uploadObject(servers.gcs.url, 'vault', named('gs.env.enc'), ciphertext);
    const result = await runBinary(
      [
        ...['--source', `berglas://vault/${object}`, '--source', `gs://vault/${named('gs.env.enc')}`],
        ...['--kms-key', KEY, '--env', '--', 'sh', '-c', 'echo "$FROM_BERGLAS $FROM_GS"'],
      ],
      { env: env() },
    );
    expect(result).toMatchObject({ code: 0, stdout: 'b g\n', stderr: '' });
  });
});

interface FailureCase {
  name: string;
  code: number;
  message: RegExp;
  /** Writes the object(s) and returns the source URI and any extra arguments. */
  setup: () => Promise<string[]>;
  /** The failure must be found before the body is downloaded. */
  noDownload?: boolean;
  /** KMS must not be asked. */
  noKms?: boolean;
}

/** A berglas object whose body is replaced with `body` (the key metadata stays). */
async function withBody(name: string, body: Buffer | string): Promise<string[]> {
  await writeBerglasObject(servers, 'vault', named(name), Buffer.alloc(0), KEY, { body: Buffer.from(body) });
  return ['--source', `berglas://vault/${named(name)}`];
}

const goodBody = () => berglasBody(servers, KEY, 'any', Buffer.from(DOTENV));

const FAILURES: FailureCase[] = [
  {
    name: 'a missing object',
    code: EXIT.notFound,
    message: /^secret-fetch: error: berglas:\/\/vault\/.*\/nope\.env does not exist \(check the bucket, object name/,
    setup: async () => ['--source', `berglas://vault/${named('nope.env')}`],
  },
  {
    name: 'a missing generation',
    code: EXIT.notFound,
    message: /berglas:\/\/vault\/.*\/a\.env#1 does not exist/,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY);
      return ['--source', `berglas://vault/${named('a.env')}#1`];
    },
  },
  {
    name: 'access denied to the object',
    code: EXIT.permission,
    message: /access denied to berglas:\/\/vault\/.*\/a\.env \(grant storage\.objects\.get/,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY);
      servers.gcs.denyObject('vault', named('a.env'));
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
  {
    name: 'not a berglas object (no berglas-kms-key metadata)',
    code: EXIT.format,
    message:
      /berglas:\/\/vault\/.*\/a\.env is not a berglas secret: its metadata has no berglas-kms-key \(read it with gs:\/\//,
    noDownload: true,
    noKms: true,
    setup: async () => {
      await uploadObject(servers.gcs.url, 'vault', named('a.env'), Buffer.from(DOTENV));
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
  {
    name: 'a berglas-kms-key that is not a key name',
    code: EXIT.format,
    message: /berglas:\/\/vault\/.*\/a\.env: its berglas-kms-key metadata is not a KMS key name \(rewrite the secret/,
    noDownload: true,
    noKms: true,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY, {
        metadata: { 'berglas-kms-key': 'projects/demo/keyRings/apps' },
      });
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
  {
    name: 'a --kms-key other than the metadata names (a replaced object)',
    code: EXIT.integrity,
    message: new RegExp(
      `berglas://vault/.*/a\\.env names the key ${KEY} in its berglas-kms-key metadata, not the --kms-key ${OTHER_KEY} \\(.*someone replaced the object\\)`,
    ),
    noDownload: true,
    noKms: true,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY);
      return ['--source', `berglas://vault/${named('a.env')}`, '--kms-key', OTHER_KEY];
    },
  },
  {
    name: 'the wrong key in the metadata',
    code: EXIT.integrity,
    message: new RegExp(
      `cannot decrypt the data key of berglas://vault/.*/a\\.env with ${OTHER_KEY}: the ciphertext does not match this key \\(berglas binds the data key to the object name`,
    ),
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY, {
        metadata: { 'berglas-kms-key': OTHER_KEY },
      });
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
  {
    name: 'an object copied to another name (the AAD is the old name)',
    code: EXIT.integrity,
    message:
      /cannot decrypt the data key of berglas:\/\/vault\/.*\/copy\.env with .*: the ciphertext does not match this key \(berglas binds the data key to the object name: was the object copied or renamed/,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('original.env'), Buffer.from(DOTENV), KEY);
      const original = servers.gcs.getObject('vault', named('original.env'));
      servers.gcs.putObject('vault', named('copy.env'), original?.data ?? '', original?.metadata);
      return ['--source', `berglas://vault/${named('copy.env')}`];
    },
  },
  {
    name: 'a tampered body (one bit of the data)',
    code: EXIT.integrity,
    message:
      /cannot decrypt berglas:\/\/vault\/.*\/a\.env: the data does not match its data key \(was the object altered after berglas wrote it\?\)/,
    setup: async () => {
      const [key, data] = (await berglasBody(servers, KEY, named('a.env'), Buffer.from(DOTENV)))
        .toString()
        .split(':') as [string, string];
      const sealed = Buffer.from(data, 'base64');
      sealed[20] = (sealed[20] as number) ^ 0x01;
      return withBody('a.env', `${key}:${sealed.toString('base64')}`);
    },
  },
  {
    name: 'a tampered tag',
    code: EXIT.integrity,
    message: /cannot decrypt berglas:\/\/vault\/.*\/a\.env: the data does not match its data key/,
    setup: async () => {
      const [key, data] = (await berglasBody(servers, KEY, named('a.env'), Buffer.from(DOTENV)))
        .toString()
        .split(':') as [string, string];
      const sealed = Buffer.from(data, 'base64');
      sealed[sealed.length - 1] = (sealed[sealed.length - 1] as number) ^ 0x80;
      return withBody('a.env', `${key}:${sealed.toString('base64')}`);
    },
  },
  {
    name: 'a tampered wrapped data key',
    code: EXIT.integrity,
    message:
      /cannot decrypt the data key of berglas:\/\/vault\/.*\/a\.env with .*cryptoKeys\/web: the ciphertext does not match/,
    setup: async () => {
      const [key, data] = (await berglasBody(servers, KEY, named('a.env'), Buffer.from(DOTENV)))
        .toString()
        .split(':') as [string, string];
      const wrapped = Buffer.from(key, 'base64');
      wrapped[30] = (wrapped[30] as number) ^ 0x01;
      return withBody('a.env', `${wrapped.toString('base64')}:${data}`);
    },
  },
  {
    name: 'a body without a colon',
    code: EXIT.integrity,
    message:
      /cannot decrypt berglas:\/\/vault\/.*\/a\.env: it is not a berglas body \(no ':' between the wrapped data key and the data\) \(was the object written by berglas/,
    noKms: true,
    setup: async () => withBody('a.env', (await goodBody()).toString().replace(':', '')),
  },
  {
    name: 'an empty body',
    code: EXIT.integrity,
    message: /it is not a berglas body/,
    noKms: true,
    setup: async () => withBody('a.env', ''),
  },
  {
    name: 'bad base64 in the data key',
    code: EXIT.integrity,
    message: /cannot decrypt berglas:\/\/vault\/.*\/a\.env: its wrapped data key is not valid base64/,
    noKms: true,
    setup: async () => withBody('a.env', `*${(await goodBody()).toString().slice(1)}`),
  },
  {
    name: 'bad base64 in the data',
    code: EXIT.integrity,
    message: /cannot decrypt berglas:\/\/vault\/.*\/a\.env: its data is not valid base64/,
    noKms: true,
    setup: async () => withBody('a.env', `${(await goodBody()).toString().slice(0, -2)}!=`),
  },
  {
    name: 'a short nonce and tag',
    code: EXIT.integrity,
    message: /its data is 20 bytes, shorter than a 12-byte nonce and a 16-byte tag/,
    noKms: true,
    setup: async () =>
      withBody('a.env', `${(await goodBody()).toString().split(':')[0]}:${Buffer.alloc(20).toString('base64')}`),
  },
  {
    name: 'a key that does not exist',
    code: EXIT.notFound,
    message:
      /KMS key .*cryptoKeys\/missing does not exist \(check the berglas-kms-key metadata of berglas:\/\/vault\/.*\/a\.env: project/,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY, {
        body: await goodBody(),
        metadata: { 'berglas-kms-key': MISSING_KEY },
      });
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
  {
    name: 'permission denied on the key',
    code: EXIT.permission,
    message: /permission denied to decrypt with .*cryptoKeys\/denied \(grant roles\/cloudkms\.cryptoKeyDecrypter/,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY, {
        metadata: { 'berglas-kms-key': DENIED_KEY },
      });
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
  {
    name: 'a download whose bytes do not match the CRC32C',
    code: EXIT.integrity,
    message: /berglas:\/\/vault\/.*\/a\.env#\d+: the downloaded bytes do not match the object's (CRC32C|checksum)/,
    noKms: true,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY);
      servers.gcs.corruptNextMedia();
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
  {
    name: 'a data key whose CRC32C KMS reports wrongly',
    code: EXIT.integrity,
    message:
      /decrypting the data key of berglas:\/\/vault\/.*\/a\.env returned a plaintext whose CRC32C does not match/,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY);
      servers.kms.corruptNextPlaintextCrc();
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
  {
    name: 'a request CRC32C that KMS rejects',
    code: EXIT.integrity,
    message: /cannot decrypt the data key of berglas:\/\/vault\/.*\/a\.env: KMS rejected the request's CRC32C/,
    setup: async () => {
      await writeBerglasObject(servers, 'vault', named('a.env'), Buffer.from(DOTENV), KEY);
      const message =
        'The checksum in field additional_authenticated_data_crc32c did not match the data in field additional_authenticated_data.';
      servers.kms.failNext({ method: 'POST' }, [
        { status: 400, body: { error: { code: 400, message, status: 'INVALID_ARGUMENT' } } },
      ]);
      return ['--source', `berglas://vault/${named('a.env')}`];
    },
  },
];

describe('berglas:// failures: the exact code, one line, no file, no command, no canary', () => {
  it.each(FAILURES.map((c) => [c.name, c] as const))('%s', async (_name, test) => {
    const args = await test.setup();
    servers.gcs.requests.length = 0;
    servers.kms.requests.length = 0;
    const marker = join(out.dir, 'command-ran');
    const result = await runBinary(
      [...args, '--out', join(out.dir, 'a.env'), '--env', '--', 'sh', '-c', `touch ${marker}`],
      { env: env() },
    );
    expectFailure(result, test.code, test.message, [CANARY]);
    expect(filesIn(out.dir)).toEqual([]);
    expect(existsSync(marker)).toBe(false);
    if (test.noDownload) expect(downloads()).toEqual([]);
    if (test.noKms) expect(servers.kms.requests).toEqual([]);
  });
});

describe('secret-fetch envelopes on gs:// with --kms-key', () => {
  /** Uploads an envelope of `plaintext` and reads it back through --out. */
  async function roundTrip(plaintext: Buffer, data?: Buffer) {
    const object = named('big.bin');
    await uploadObject(servers.gcs.url, 'vault', object, data ?? (await secretFetchEnvelope(servers, KEY, plaintext)));
    servers.kms.requests.length = 0;
    const file = join(out.dir, 'big.bin');
    const result = await runBinary(['--source', `gs://vault/${object}`, '--kms-key', KEY, '--out', file], {
      env: env(),
    });
    return { result, file };
  }

  it.each([
    ['1 MiB', 1024 * 1024],
    ['exactly 64 KiB, the KMS limit', 65_536],
    ['one byte over 64 KiB', 65_537],
    ['one byte', 1],
  ])('round-trips an envelope of %s through --out, with one KMS call for the data key', async (_name, size) => {
    const plaintext = randomBytes(size);
    const { result, file } = await roundTrip(plaintext);
    expect(result).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(sha(readFileSync(file))).toBe(sha(plaintext));
    expect(kmsDecrypts()).toHaveLength(1);
    expect(kmsDecrypts()[0]?.body).toMatchObject({
      additionalAuthenticatedData: Buffer.from('\x89SFENV\r\n\x01\x00', 'latin1').toString('base64'),
    });
  });

  it('still decrypts a raw KMS ciphertext whole: small, and at the 64 KiB limit', async () => {
    for (const size of [10, 65_536]) {
      const plaintext = randomBytes(size);
      const { result, file } = await roundTrip(plaintext, await encryptWithKms(servers.kms.url, KEY, plaintext));
      expect(result).toMatchObject({ code: 0, stderr: '' });
      expect(readFileSync(file).equals(plaintext)).toBe(true);
      expect(kmsDecrypts()[0]?.body).not.toHaveProperty('additionalAuthenticatedData');
    }
  });

  it('parses a large dotenv envelope into the environment', async () => {
    const lines = Array.from({ length: 2000 }, (_, i) => `VAR_${i}=${CANARY}-${'x'.repeat(40)}`);
    const text = `${lines.join('\n')}\nLAST=${CANARY}\n`;
    expect(text.length).toBeGreaterThan(65_536);
    await uploadObject(
      servers.gcs.url,
      'vault',
      named('big.env.enc'),
      await secretFetchEnvelope(servers, KEY, Buffer.from(text)),
    );
    const result = await runBinary(
      ['--source', `gs://vault/${named('big.env.enc')}`, '--kms-key', KEY, '--env', '--', 'sh', '-c', 'echo "$LAST"'],
      { env: env() },
    );
    expect(result).toMatchObject({ code: 0, stdout: `${CANARY}\n`, stderr: '' });
  });

  it('opens an envelope from a file: source too', async () => {
    const plaintext = randomBytes(100_000);
    const path = join(out.dir, 'mounted.bin');
    writeFileSync(path, await secretFetchEnvelope(servers, KEY, plaintext));
    const file = join(out.dir, 'plain.bin');
    const result = await runBinary(['--source', `file:${path}`, '--kms-key', KEY, '--out', file], { env: env() });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(readFileSync(file).equals(plaintext)).toBe(true);
  });

  const envelopeFailures: [string, (e: Buffer) => Buffer, string, RegExp][] = [
    [
      'a tampered envelope (one bit of the data)',
      (e) => flip(e, e.length - 1000),
      KEY,
      /cannot decrypt gs:\/\/vault\/.*\/big\.bin: the data does not match its data key \(was the object altered or cut short/,
    ],
    [
      'a truncated envelope',
      (e) => e.subarray(0, e.length - 100),
      KEY,
      /cannot decrypt gs:\/\/vault\/.*\/big\.bin: the envelope is truncated \(\d+ bytes of the \d+ its header declares\)/,
    ],
    [
      'an envelope cut inside its header',
      (e) => e.subarray(0, 12),
      KEY,
      /the envelope is truncated \(12 bytes, shorter than its 20-byte header\)/,
    ],
    [
      'a tampered declared length',
      (e) => flip(e, 19),
      KEY,
      /cannot decrypt gs:\/\/vault\/.*\/big\.bin: the envelope (is truncated|has 1 bytes after its end)/,
    ],
    [
      'a version this build does not read',
      (e) => Buffer.concat([e.subarray(0, 8), Buffer.from([2]), e.subarray(9)]),
      KEY,
      /it is a version 2 envelope and this secret-fetch reads version 1 \(upgrade secret-fetch/,
    ],
    [
      'an envelope under another key',
      (e) => e,
      OTHER_KEY,
      /cannot decrypt the data key of gs:\/\/vault\/.*\/big\.bin with .*cryptoKeys\/other: the ciphertext does not match this key/,
    ],
  ];

  it.each(envelopeFailures)('refuses %s', async (_name, damage, key, message) => {
    const canary = Buffer.from(`${CANARY}\n`.repeat(10_000));
    const object = named('big.bin');
    await uploadObject(servers.gcs.url, 'vault', object, damage(await secretFetchEnvelope(servers, KEY, canary)));
    const marker = join(out.dir, 'command-ran');
    const result = await runBinary(
      [
        '--source',
        `gs://vault/${object}`,
        '--kms-key',
        key,
        '--out',
        join(out.dir, 'big.bin'),
        '--',
        'sh',
        '-c',
        `touch ${marker}`,
      ],
      { env: env() },
    );
    expectFailure(result, EXIT.integrity, message, [CANARY]);
    expect(filesIn(out.dir)).toEqual([]);
    expect(existsSync(marker)).toBe(false);
  });
});

function flip(data: Buffer, at: number): Buffer {
  const copy = Buffer.from(data);
  copy[at] = (copy[at] as number) ^ 0x01;
  return copy;
}

describe('berglas:// with --refresh', () => {
  it('polls the generation, rewrites on a new one, and never polls a pinned generation', async () => {
    const rotating = named('rotating.env');
    const pinned = named('pinned.env');
    await writeBerglasObject(servers, 'vault', rotating, Buffer.from('V=one\n'), KEY);
    const pinnedGeneration = await writeBerglasObject(servers, 'vault', pinned, Buffer.from('P=one\n'), KEY);
    const a = join(out.dir, 'a.env');
    const b = join(out.dir, 'b.env');
    const child: ChildProcessByStdio<null, Readable, Readable> = spawn(
      BINARY,
      [
        ...['--source', `berglas://vault/${rotating}`, '--source', `berglas://vault/${pinned}#${pinnedGeneration}`],
        ...['--out', a, '--out', b, '--refresh', '200ms'],
      ],
      { cwd: ROOT, env: { ...BASE_ENV, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      await until(() => existsSync(a) && existsSync(b));
      const generation = await writeBerglasObject(servers, 'vault', rotating, Buffer.from('V=two\n'), KEY);
      await writeBerglasObject(servers, 'vault', pinned, Buffer.from('P=two\n'), KEY);
      await until(() => readFileSync(a, 'utf8') === 'V=two\n');
      expect(readFileSync(b, 'utf8')).toBe('P=one\n');
      const metadataReads = (object: string) =>
        servers.gcs.requests.filter(
          (r) =>
            String(r.headers['user-agent']).startsWith('secret-fetch/') && // not the fixtures' uploads
            r.query.alt !== 'media' &&
            decoded(r.path) === `/b/vault/o/${object}`,
        );
      // The rotating object: read at start, polled, then read again at the new generation.
      expect(metadataReads(rotating).map((r) => r.query.generation)).toContain(generation);
      // Each poll reads the sources in order, so the poll that saw the change would have read the
      // pinned one before the new file was written: it was read once, at start.
      expect(metadataReads(pinned).map((r) => r.query.generation)).toEqual([pinnedGeneration]);
      child.kill('SIGTERM');
      expect(await done).toBe(0);
      expect(stderr).toContain(`berglas://vault/${rotating} (now generation ${generation}) changed: rewrote ${a}`);
      expectNoCanary({ code: 0, signal: null, stdout: '', stderr, pid: 0 }, ['V=', 'P=']);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

/** Waits for a condition the binary brings about (bounded, so a broken build fails, not hangs). */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('the condition never became true');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
