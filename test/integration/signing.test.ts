// Signed secrets through the built binary: `secret-fetch sign` against the KMS and GCS test
// servers, then fetches with --verify-key that must refuse every object the signature does not
// cover (replaced, replayed, copied, tampered, unsigned, another signer) before anything decrypts.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { writeBerglasObject } from '../fixtures/envelopes.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { expectFailure, expectNoCanary, filesIn, KEY, type Result, runBinary, tmpfsDir } from './harness.ts';

const SIGNER = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/signer';
const OTHER_SIGNER = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/other-signer';
const DENIED_SIGNER = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/denied-signer';
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const PYFILE = `SECRET_KEY = "${CANARY}"\nPORT = 8080\n`;

let servers: TestServers;
let version: string;
let otherVersion: string;
let deniedVersion: string;
let out: { dir: string; cleanup: () => void };
/** Where the public keys live, for the whole file. */
let keys: { dir: string; cleanup: () => void };
/** The signer's PEM, as `sign --print-public-key` wrote it. */
let pem: string;
let otherPem: string;

const env = () => ({ ...servers.env });
const sign = (uri: string, keyVersion = version, extra: string[] = []) =>
  runBinary(['sign', uri, '--signing-key', keyVersion, ...extra], { env: env() });

/** A KMS-encrypted pyfile holding the canary, uploaded with the real clients; its generation. */
async function uploadSecret(object: string, text = PYFILE): Promise<string> {
  return uploadObject(servers.gcs.url, 'vault', object, await encryptWithKms(servers.kms.url, KEY, Buffer.from(text)));
}

const metadataOf = (object: string, generation?: string) =>
  servers.gcs.getObject('vault', object, generation)?.metadata ?? {};

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  version = servers.kms.createSigningKey(SIGNER);
  otherVersion = servers.kms.createSigningKey(OTHER_SIGNER);
  deniedVersion = servers.kms.createSigningKey(DENIED_SIGNER);
  keys = tmpfsDir();
  pem = join(keys.dir, 'signer.pem');
  const printed = await runBinary(['sign', '--signing-key', version, '--print-public-key'], { env: env() });
  expect(printed).toMatchObject({ code: 0, stderr: '', stdout: servers.kms.publicKeyPem(version) });
  writeFileSync(pem, printed.stdout);
  otherPem = join(keys.dir, 'other.pem');
  writeFileSync(otherPem, servers.kms.publicKeyPem(otherVersion));
});
afterAll(async () => {
  keys?.cleanup();
  await servers?.close();
});
beforeEach(() => {
  out = tmpfsDir();
  servers.gcs.reset();
  servers.kms.reset();
  servers.kms.denyKey(DENIED_SIGNER);
});
afterEach(() => out.cleanup());

/** A fetch with --verify-key, --kms-key and --env that runs a command only if all is well. */
function fetchVerified(object: string, key = pem): Promise<Result> {
  return runBinary(
    [
      '--source',
      `gs://vault/${object}`,
      '--verify-key',
      key,
      '--kms-key',
      KEY,
      '--out',
      join(out.dir, 'app.cfg'),
      '--env',
      '--',
      'sh',
      '-c',
      `echo "port=$PORT"; touch ${join(out.dir, 'command-ran')}`,
    ],
    { env: env() },
  );
}

const decrypts = () => servers.kms.requests.filter((r) => r.path.endsWith(':decrypt'));
const downloads = () => servers.gcs.requests.filter((r) => r.query.alt === 'media');

/** Refused with 76 before any decrypt: no file, no command, no canary. */
function expectRefused(result: Result, message: RegExp): void {
  expectFailure(result, EXIT.integrity, message, [CANARY]);
  expect(decrypts()).toHaveLength(0);
  expect(filesIn(out.dir)).toEqual([]);
}

describe('sign, then fetch with --verify-key', () => {
  it('signs an object, stores the signature in its metadata and prints what it signed', async () => {
    const generation = await uploadSecret('app/secrets.cfg.enc');
    const result = await sign('gs://vault/app/secrets.cfg.enc');
    expect(result).toMatchObject({ code: 0, stderr: '', stdout: `gs://vault/app/secrets.cfg.enc#${generation}\n` });
    expect(metadataOf('app/secrets.cfg.enc')).toEqual({
      'secret-fetch-signature': expect.stringMatching(/^[A-Za-z0-9+/]+=*$/),
      'secret-fetch-signing-key': version,
    });
    // The object's bytes and generation are untouched; only its metadata moved on.
    expect(servers.gcs.getObject('vault', 'app/secrets.cfg.enc')).toMatchObject({ generation, metageneration: '2' });
    // It never decrypts: the object is only hashed.
    expect(decrypts()).toHaveLength(0);
    const patch = servers.gcs.requests.find((r) => r.method === 'PATCH');
    expect(patch?.query).toMatchObject({ ifGenerationMatch: generation, ifMetagenerationMatch: '1' });
  });

  it('fetches, decrypts and runs the command when the signature verifies', async () => {
    await uploadSecret('app/ok.cfg.enc');
    expect((await sign('gs://vault/app/ok.cfg.enc')).code).toBe(0);
    servers.kms.requests.length = 0;
    const result = await fetchVerified('app/ok.cfg.enc');
    expect(result.stderr).toBe('');
    expect(result).toMatchObject({ code: 0, stdout: 'port=8080\n' });
    expect(readFileSync(join(out.dir, 'app.cfg'), 'utf8')).toBe(PYFILE);
    // Verification is offline: the only KMS call is the decrypt.
    expect(servers.kms.requests.map((r) => r.path)).toEqual([`/v1/${KEY}:decrypt`]);
  });

  it('takes the key from SECRET_FETCH_VERIFY_KEY as well', async () => {
    await uploadObject(servers.gcs.url, 'vault', 'app/plain.env', Buffer.from(`TOKEN=${CANARY}\n`));
    expect((await sign('gs://vault/app/plain.env')).code).toBe(0);
    const result = await runBinary(
      ['--source', 'gs://vault/app/plain.env', '--env', '--', 'sh', '-c', 'printf %s "$TOKEN" | wc -c'],
      {
        env: { ...env(), SECRET_FETCH_VERIFY_KEY: pem },
      },
    );
    expect(result).toMatchObject({ code: 0, stderr: '', stdout: `${CANARY.length}\n` });
  });

  it('signs a pinned older generation in place, leaving the live one unsigned', async () => {
    const old = await uploadSecret('app/pinned.cfg.enc');
    const live = await uploadSecret('app/pinned.cfg.enc', 'PORT = 9090\n');
    const result = await sign(`gs://vault/app/pinned.cfg.enc#${old}`);
    expect(result).toMatchObject({ code: 0, stdout: `gs://vault/app/pinned.cfg.enc#${old}\n` });
    expect(metadataOf('app/pinned.cfg.enc', old)).toHaveProperty('secret-fetch-signature');
    expect(metadataOf('app/pinned.cfg.enc', live)).toEqual({});
    const pinned = await fetchVerified(`app/pinned.cfg.enc#${old}`);
    expect(pinned).toMatchObject({ code: 0, stdout: 'port=8080\n' });
    for (const file of ['app.cfg', 'command-ran']) rmSync(join(out.dir, file));
    servers.kms.requests.length = 0;
    expectRefused(await fetchVerified('app/pinned.cfg.enc'), /pinned\.cfg\.enc#\d+ has no secret-fetch signature/);
  });

  it('never prints or writes the secret: not on stdout, stderr or with --verbose', async () => {
    await uploadObject(servers.gcs.url, 'vault', 'app/canary.env', Buffer.from(`TOKEN=${CANARY}\n`));
    const result = await sign('gs://vault/app/canary.env', version, ['--verbose']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/signed gs:\/\/vault\/app\/canary\.env#\d+ with .*cryptoKeyVersions\/1/);
    expectNoCanary(result, [CANARY, Buffer.from(CANARY).toString('base64').slice(0, 16)]);
    expect(filesIn(out.dir)).toEqual([]);
  });
});

describe('--verify-key refuses, before any decrypt', () => {
  it('an object replaced after signing, even with the old signature copied onto it', async () => {
    await uploadSecret('app/replaced.cfg.enc');
    expect((await sign('gs://vault/app/replaced.cfg.enc')).code).toBe(0);
    const signature = metadataOf('app/replaced.cfg.enc');
    const attacker = await encryptWithKms(servers.kms.url, KEY, Buffer.from('SECRET_KEY = "attacker"\n'));
    const { generation } = servers.gcs.putObject('vault', 'app/replaced.cfg.enc', attacker, signature);
    servers.kms.requests.length = 0;
    expectRefused(
      await fetchVerified('app/replaced.cfg.enc'),
      new RegExp(
        `^secret-fetch: error: the signature of gs://vault/app/replaced\\.cfg\\.enc#${generation} does not verify with --verify-key .*signer\\.pem`,
      ),
    );
  });

  it('the same signed bytes uploaded again (a replay of an old version gets a new generation)', async () => {
    const first = await uploadSecret('app/replay.cfg.enc');
    expect((await sign('gs://vault/app/replay.cfg.enc')).code).toBe(0);
    const old = servers.gcs.getObject('vault', 'app/replay.cfg.enc', first);
    await uploadSecret('app/replay.cfg.enc', 'PORT = 1\n');
    servers.gcs.putObject('vault', 'app/replay.cfg.enc', old?.data as Buffer, { ...old?.metadata });
    servers.kms.requests.length = 0;
    expectRefused(await fetchVerified('app/replay.cfg.enc'), /does not verify with --verify-key/);
  });

  it("a signature copied onto another object, whose bytes are the signed object's", async () => {
    await uploadSecret('prod/db.cfg.enc');
    expect((await sign('gs://vault/prod/db.cfg.enc')).code).toBe(0);
    const signed = servers.gcs.getObject('vault', 'prod/db.cfg.enc');
    // `gcloud storage cp` of bytes and metadata onto the name another app reads.
    servers.gcs.putObject('vault', 'app/other.cfg.enc', signed?.data as Buffer, { ...signed?.metadata });
    servers.kms.requests.length = 0;
    expectRefused(await fetchVerified('app/other.cfg.enc'), /app\/other\.cfg\.enc#\d+ does not verify/);
  });

  it('a tampered signature', async () => {
    await uploadSecret('app/tampered.cfg.enc');
    expect((await sign('gs://vault/app/tampered.cfg.enc')).code).toBe(0);
    const der = Buffer.from(metadataOf('app/tampered.cfg.enc')['secret-fetch-signature'] as string, 'base64');
    der[der.length - 3] = (der[der.length - 3] as number) ^ 0x40;
    servers.gcs.patchMetadata('vault', 'app/tampered.cfg.enc', { 'secret-fetch-signature': der.toString('base64') });
    servers.kms.requests.length = 0;
    expectRefused(await fetchVerified('app/tampered.cfg.enc'), /does not verify with --verify-key/);
  });

  it('an unsigned object, before downloading it, naming the command that signs it', async () => {
    const generation = await uploadSecret('app/unsigned.cfg.enc');
    servers.gcs.requests.length = 0;
    expectRefused(
      await fetchVerified('app/unsigned.cfg.enc'),
      new RegExp(
        `gs://vault/app/unsigned\\.cfg\\.enc#${generation} has no secret-fetch signature, and --verify-key refuses unsigned objects \\(if this object is yours, check it and sign it: secret-fetch sign gs://vault/app/unsigned\\.cfg\\.enc --signing-key KEYVERSION\\)$`,
      ),
    );
    expect(downloads()).toHaveLength(0);
  });

  it('an object signed by another key (the wrong public key)', async () => {
    await uploadSecret('app/other-signer.cfg.enc');
    expect((await sign('gs://vault/app/other-signer.cfg.enc', otherVersion)).code).toBe(0);
    servers.kms.requests.length = 0;
    expectRefused(await fetchVerified('app/other-signer.cfg.enc'), /does not verify with --verify-key .*signer\.pem/);
    // The same object passes with the other signer's key.
    const result = await fetchVerified('app/other-signer.cfg.enc', otherPem);
    expect(result).toMatchObject({ code: 0, stdout: 'port=8080\n' });
  });

  it('a newer generation uploaded after the signed one, unsigned', async () => {
    await uploadObject(servers.gcs.url, 'vault', 'app/rotating.env', Buffer.from('V=one\n'));
    expect((await sign('gs://vault/app/rotating.env')).code).toBe(0);
    await uploadObject(servers.gcs.url, 'vault', 'app/rotating.env', Buffer.from('V=two\n'));
    const result = await runBinary(
      ['--source', 'gs://vault/app/rotating.env', '--verify-key', pem, '--env', '--', 'sh', '-c', 'echo $V'],
      { env: env() },
    );
    expectFailure(result, EXIT.integrity, /has no secret-fetch signature/);
  });
});

describe('--verify-key usage', () => {
  const args = (key: string, source = 'gs://vault/app/any.env') => [
    '--source',
    source,
    '--verify-key',
    key,
    '--out',
    join(out.dir, 'secret'),
    '--',
    'true',
  ];

  it('a malformed PEM (64), a missing one (66), a private key (64), with nothing fetched', async () => {
    const bad = join(out.dir, 'bad.pem');
    writeFileSync(bad, '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n');
    expectFailure(
      await runBinary(args(bad), { env: env() }),
      EXIT.usage,
      /--verify-key .*bad\.pem is not a valid PEM public key/,
    );
    expectFailure(
      await runBinary(args(join(out.dir, 'nope.pem')), { env: env() }),
      EXIT.notFound,
      /--verify-key .*nope\.pem does not exist/,
    );
    const secretKey = join(out.dir, 'private.pem');
    writeFileSync(
      secretKey,
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    expectFailure(await runBinary(args(secretKey), { env: env() }), EXIT.usage, /private\.pem holds a private key/);
    expect(servers.gcs.requests).toHaveLength(0);
  });

  it('covers berglas:// objects: a signed one is unwrapped, an unsigned one refused before KMS', async () => {
    await writeBerglasObject(servers, 'vault', 'app/berglas-db', Buffer.from(`DB=${CANARY}\n`), KEY);
    const fetch = () =>
      runBinary(
        [
          '--source',
          'berglas://vault/app/berglas-db',
          '--verify-key',
          pem,
          '--format',
          'dotenv',
          '--env',
          '--',
          'sh',
          '-c',
          'echo "$DB"',
        ],
        { env: env() },
      );
    servers.kms.requests.length = 0;
    expectFailure(await fetch(), EXIT.integrity, /gs:\/\/vault\/app\/berglas-db.*secret-fetch sign/, [CANARY]);
    expect(servers.kms.requests.filter((r) => r.path.endsWith(':decrypt'))).toEqual([]);
    expect((await sign('gs://vault/app/berglas-db')).code).toBe(0);
    const signed = await fetch();
    expect(signed).toMatchObject({ code: 0, stdout: `${CANARY}\n`, stderr: '' });
  });

  it('a source that carries no signature: a file, and Secret Manager', async () => {
    const file = join(out.dir, 'local.env');
    writeFileSync(file, 'A=1\n');
    expectFailure(
      await runBinary(args(pem, file), { env: env() }),
      EXIT.usage,
      /--verify-key cannot check .*local\.env: only gs:\/\/ and berglas:\/\/ objects carry a secret-fetch signature/,
    );
    expectFailure(await runBinary(args(pem, 'sm://my-project/db'), { env: env() }), EXIT.usage, /cannot check sm:\/\//);
  });
});

describe('sign failures: one line, a distinct code, nothing stored', () => {
  it('a key the signer may not use (77)', async () => {
    await uploadSecret('app/a.cfg.enc');
    const result = await sign('gs://vault/app/a.cfg.enc', deniedVersion);
    expectFailure(
      result,
      EXIT.permission,
      /permission denied to read the public key of .*denied-signer\/cryptoKeyVersions\/1 \(grant roles\/cloudkms\.signerVerifier/,
    );
    expect(metadataOf('app/a.cfg.enc')).toEqual({});
  });

  it('a key that does not exist (66), and a symmetric key (64)', async () => {
    await uploadSecret('app/b.cfg.enc');
    servers.gcs.requests.length = 0;
    expectFailure(
      await sign('gs://vault/app/b.cfg.enc', `${SIGNER}/cryptoKeyVersions/9`),
      EXIT.notFound,
      /KMS key version .*signer\/cryptoKeyVersions\/9 does not exist/,
    );
    expectFailure(await sign('gs://vault/app/b.cfg.enc', `${KEY}/cryptoKeyVersions/1`), EXIT.usage, /cannot sign/);
    expect(metadataOf('app/b.cfg.enc')).toEqual({});
    expect(servers.gcs.requests).toHaveLength(0);
  });

  it('an object that does not exist (66)', async () => {
    expectFailure(
      await sign('gs://vault/app/missing.cfg.enc'),
      EXIT.notFound,
      /gs:\/\/vault\/app\/missing\.cfg\.enc does not exist/,
    );
    expect(servers.kms.requests.filter((r) => r.path.endsWith(':asymmetricSign'))).toHaveLength(0);
  });

  it('an object rewritten between its read and the metadata PATCH (412 -> 76)', async () => {
    const generation = await uploadSecret('app/race.cfg.enc');
    let newer = '';
    servers.kms.failNext({ path: /:asymmetricSign$/ }, [
      {
        run: () => {
          newer = servers.gcs.putObject('vault', 'app/race.cfg.enc', 'someone else wrote this').generation;
        },
      },
    ]);
    const result = await sign('gs://vault/app/race.cfg.enc');
    expectFailure(
      result,
      EXIT.integrity,
      new RegExp(
        `gs://vault/app/race\\.cfg\\.enc#${generation} changed while it was being signed .* so the signature was not stored \\(check who wrote it`,
      ),
    );
    expect(newer).not.toBe('');
    expect(metadataOf('app/race.cfg.enc', generation)).toEqual({});
    expect(metadataOf('app/race.cfg.enc', newer)).toEqual({});
    expect(servers.gcs.requests.filter((r) => r.method === 'PATCH')).toHaveLength(1);
  });

  it("an object whose metadata changed between its read and the PATCH (another signer's, say)", async () => {
    await uploadSecret('app/meta-race.cfg.enc');
    servers.kms.failNext({ path: /:asymmetricSign$/ }, [
      { run: () => void servers.gcs.patchMetadata('vault', 'app/meta-race.cfg.enc', { owner: 'someone' }) },
    ]);
    expectFailure(await sign('gs://vault/app/meta-race.cfg.enc'), EXIT.integrity, /changed while it was being signed/);
    expect(metadataOf('app/meta-race.cfg.enc')).toEqual({ owner: 'someone' });
  });

  it('usage: no key, a key without a version, a file instead of an object, an object with --print-public-key', async () => {
    const cases: [string[], RegExp][] = [
      [['sign', 'gs://vault/a'], /sign needs --signing-key KEYVERSION/],
      [['sign', 'gs://vault/a', '--signing-key', SIGNER], /is not a key version name/],
      [['sign', '/etc/hostname', '--signing-key', version], /only gs:\/\/ objects can be signed/],
      [['sign', 'gs://vault/a', '--signing-key', version, '--print-public-key'], /--print-public-key signs nothing/],
      [['sign', '--signing-key', version], /sign needs an object to sign/],
      [
        ['sign', 'gs://Bad_Bucket/a', '--signing-key', version],
        /^secret-fetch: error: sign gs:\/\/Bad_Bucket\/a: "Bad_Bucket" is not a valid bucket name/,
      ],
      [['sign', 'gs://vault/a', 'gs://vault/b', '--signing-key', version], /sign takes 0 to 1 argument/],
    ];
    for (const [argv, message] of cases) expectFailure(await runBinary(argv, { env: env() }), EXIT.usage, message);
    expect(servers.kms.requests).toHaveLength(0);
  });
});

describe('sign --help', () => {
  it('prints the usage with examples and exits 0, touching nothing', async () => {
    const result = await runBinary(['sign', '--help']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(
      /^Usage: secret-fetch sign gs:\/\/BUCKET\/OBJECT\[#GENERATION\] --signing-key KEYVERSION/,
    );
    expect(result.stdout).toMatch(
      /^Examples:\n {2}secret-fetch sign gs:\/\/vault\/app\/secrets\.cfg\.enc --signing-key projects\//m,
    );
    expect(result.stdout).toContain('--verify-key signer.pem');
    expect(result.stdout).toContain('roles/cloudkms.signerVerifier');
    expect(existsSync(join(out.dir, 'app.cfg'))).toBe(false);
  });

  it('is listed in secret-fetch --help', async () => {
    const result = await runBinary(['--help']);
    expect(result.stdout).toMatch(/secret-fetch sign gs:\/\/\.\.\. --signing-key VERSION +sign the object/);
    expect(result.stdout).toMatch(/--verify-key PATH +refuse a gs:\/\/ or berglas:\/\/ object unless/);
  });
});
