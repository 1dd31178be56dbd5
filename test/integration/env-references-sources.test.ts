// Environment references to every source through the built binary against the test servers:
// sm:// (each version form, ?key=, ?kms-key=, ?destination=), berglas:// (#generation in either
// order, ?destination=, a ?kms-key= pin), all of them at once with one client per service, and
// each service's failures failing closed. The secret-fetch:gs:// basics are in
// env-references.test.ts. Fixtures come from the independent writers in test/fixtures/.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { addSecretVersion, encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { writeBerglasObject } from '../fixtures/envelopes.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { expectFailure, expectNoCanary, filesIn, KEY, OTHER_KEY, type Result, runBinary, tmpfsDir } from './harness.ts';

const PROJECT = 'demo-project';
const DENIED_KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/denied';
const canary = (name: string) => `${name}-${randomBytes(8).toString('hex')}`;
const OLD_TOKEN = canary('old-token');
const TOKEN = canary('token');
const DB_PASSWORD = canary('db-password');
const API_KEY = canary('api-key');
const ENC_KEY = canary('enc-key');
const FLOW_KEY = canary('flow-key');
const BERGLAS_OLD = canary('berglas-old');
const BERGLAS_NEW = canary('berglas-new');
const GS_TOKEN = canary('gs-token');
const CANARIES = [OLD_TOKEN, TOKEN, DB_PASSWORD, API_KEY, ENC_KEY, FLOW_KEY, BERGLAS_OLD, BERGLAS_NEW, GS_TOKEN];
/** A binary secret (DER starts 0x30 0x82: not UTF-8), which no variable can hold. */
const TLS_KEY = Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), randomBytes(60)]);
const MANY = 10;

let servers: TestServers;
let out: { dir: string; cleanup: () => void };
/** The generations of berglas://vault/refs/tls.key: the first written under OTHER_KEY. */
let tlsOld: string;
let tlsNew: string;

const secretName = (id: string) => `projects/${PROJECT}/secrets/${id}`;
const sm = () => servers.secretManager;

beforeAll(async () => {
  servers = await startTestServers();
  for (const key of [KEY, OTHER_KEY, DENIED_KEY]) servers.kms.createKey(key);
  // As an operator would write them: gcloud secrets versions add, berglas create, gcloud storage cp.
  const add = (id: string, data: string | Buffer) => addSecretVersion(sm().url, secretName(id), Buffer.from(data));
  await add('token', OLD_TOKEN);
  await add('token', TOKEN);
  sm().setAlias(secretName('token'), 'stable', '1');
  await add('app-json', JSON.stringify({ DB_PASSWORD, DB_USER: 'app' }));
  await add('app-env', `API_KEY=${API_KEY}\nMODE=prod\n`);
  // A YAML flow mapping: the content looks like JSON, so it needs ?format=yaml.
  await add('app-flow', `{API_KEY: ${FLOW_KEY}, MODE: prod}\n`);
  await add('app-enc', await encryptWithKms(servers.kms.url, KEY, Buffer.from(`API_KEY=${ENC_KEY}\n`)));
  await add('tls-key', TLS_KEY);
  for (let i = 0; i < MANY; i++) await add(`many-${i}`, `sm-value-${i}`);

  tlsOld = await writeBerglasObject(servers, 'vault', 'refs/tls.key', Buffer.from(BERGLAS_OLD), OTHER_KEY);
  tlsNew = await writeBerglasObject(servers, 'vault', 'refs/tls.key', Buffer.from(BERGLAS_NEW), KEY);
  await writeBerglasObject(servers, 'vault', 'refs/denied-key', Buffer.from(BERGLAS_NEW), KEY, {
    metadata: { 'berglas-kms-key': DENIED_KEY },
  });
  for (let i = 0; i < 3; i++) {
    await writeBerglasObject(servers, 'vault', `refs/many-${i}`, Buffer.from(`berglas-value-${i}`), KEY);
  }
  await uploadObject(servers.gcs.url, 'vault', 'refs/gs-token', Buffer.from(GS_TOKEN));
  await uploadObject(
    servers.gcs.url,
    'vault',
    'refs/app.json.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(JSON.stringify({ DB_PASSWORD }))),
  );
});
afterAll(async () => servers?.close());
beforeEach(() => {
  out = tmpfsDir();
  servers.gcs.reset();
  servers.kms.reset();
  sm().reset();
  servers.kms.denyKey(DENIED_KEY);
});
afterEach(() => out.cleanup());

const run = (env: Record<string, string>, command: string[], flags: string[] = []): Promise<Result> =>
  runBinary([...flags, '--', ...command], {
    env: { ...servers.env, SECRET_FETCH_TEMPFILE_DIR: out.dir, ...env },
  });
/** A command that prints each variable as NAME=value, one a line. */
const printEnv = (...names: string[]) => ['sh', '-c', names.map((n) => `echo "${n}=$${n}"`).join('; ')];
const printed = (result: Result, name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(result.stdout)?.[1];

const decoded = (path: string) => decodeURIComponent(path);
const smAccesses = () => sm().requests.map((r) => `${r.method} ${r.path}`);
const access = (id: string, version: string) => `GET /v1/${secretName(id)}/versions/${version}:access`;
const kmsDecrypts = () => servers.kms.requests.filter((r) => r.path.endsWith(':decrypt'));
const downloads = () => servers.gcs.requests.filter((r) => r.query.alt === 'media');
/** Each Cloud Storage read as [object, 'metadata' | 'media', generation asked for]. */
const gcsReads = () =>
  servers.gcs.requests.map((r) => [
    decoded(r.path).replace(/^\/(storage\/v1\/)?b\/vault\/o\//, ''),
    r.query.alt === 'media' ? 'media' : 'metadata',
    r.query.generation,
  ]);
const sorted = <T>(values: T[]) => [...values].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

describe('sm:// references', () => {
  it('every version form: latest, a number, an alias, and the full resource name', async () => {
    const result = await run(
      {
        LATEST: `sm://${PROJECT}/token`,
        NUMBER: `sm://${PROJECT}/token#1`,
        ALIAS: `sm://${PROJECT}/token#stable`,
        FULL: `sm://projects/${PROJECT}/secrets/token/versions/2`,
        FULL_LATEST: `sm://projects/${PROJECT}/secrets/token`,
      },
      printEnv('LATEST', 'NUMBER', 'ALIAS', 'FULL', 'FULL_LATEST'),
    );
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(
      `LATEST=${TOKEN}\nNUMBER=${OLD_TOKEN}\nALIAS=${OLD_TOKEN}\nFULL=${TOKEN}\nFULL_LATEST=${TOKEN}\n`,
    );
    // One access per reference, at the version it names, and nothing else (no metadata reads).
    expect(sorted(smAccesses())).toEqual(
      sorted(['latest', '1', 'stable', '2', 'latest'].map((version) => access('token', version))),
    );
  });

  it('?key= picks one entry of a JSON, dotenv or (?format=yaml) YAML payload; ?kms-key= decrypts first', async () => {
    const result = await run(
      {
        DB_PASSWORD: `sm://${PROJECT}/app-json?key=DB_PASSWORD`,
        API_KEY: `sm://${PROJECT}/app-env?key=API_KEY`,
        FLOW_KEY: `sm://${PROJECT}/app-flow?key=API_KEY&format=yaml`,
        ENC_KEY: `sm://${PROJECT}/app-enc?kms-key=${encodeURIComponent(KEY)}&key=API_KEY`,
      },
      printEnv('DB_PASSWORD', 'API_KEY', 'FLOW_KEY', 'ENC_KEY'),
    );
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(
      `DB_PASSWORD=${DB_PASSWORD}\nAPI_KEY=${API_KEY}\nFLOW_KEY=${FLOW_KEY}\nENC_KEY=${ENC_KEY}\n`,
    );
    expect(kmsDecrypts().map((r) => decoded(r.path))).toEqual([`/v1/${KEY}:decrypt`]);
  });

  it('?destination=tempfile and ?destination=/path write the payload as it is, under the --out rules', async () => {
    const fixed = join(out.dir, 'old-token');
    const result = await run(
      {
        TLS_FILE: `sm://${PROJECT}/tls-key?destination=tempfile`,
        OLD_FILE: `sm://projects/${PROJECT}/secrets/token/versions/1?destination=${fixed}`,
        SECRET_FETCH_MODE: '0440',
      },
      printEnv('TLS_FILE', 'OLD_FILE'),
    );
    expect(result.stderr).toBe('');
    const tlsFile = printed(result, 'TLS_FILE') as string;
    expect(tlsFile).toMatch(new RegExp(`^${out.dir}/secret-fetch-TLS_FILE-[0-9a-f]{12}$`));
    expect(printed(result, 'OLD_FILE')).toBe(fixed);
    expect(readFileSync(tlsFile).equals(TLS_KEY)).toBe(true);
    expect(readFileSync(fixed, 'utf8')).toBe(OLD_TOKEN);
    for (const file of [tlsFile, fixed]) expect(statSync(file).mode & 0o777).toBe(0o440);
    expect(filesIn(out.dir)).toHaveLength(2); // no temp file left beside them
    expectNoCanary(result, CANARIES);
  });
});

describe('berglas:// references', () => {
  it('the live generation, a #generation in either order with ?destination=, and a matching ?kms-key= pin', async () => {
    const result = await run(
      {
        LIVE: 'berglas://vault/refs/tls.key',
        OLD: `berglas://vault/refs/tls.key#${tlsOld}`,
        // berglas's own order (query, then generation) and ours.
        OLD_FILE: `berglas://vault/refs/tls.key?destination=tempfile#${tlsOld}`,
        NEW_FILE: `berglas://vault/refs/tls.key#${tlsNew}?destination=tempfile`,
        PINNED: `berglas://vault/refs/tls.key?kms-key=${KEY}`,
      },
      printEnv('LIVE', 'OLD', 'OLD_FILE', 'NEW_FILE', 'PINNED'),
    );
    expect(result.stderr).toBe('');
    expect(printed(result, 'LIVE')).toBe(BERGLAS_NEW);
    expect(printed(result, 'OLD')).toBe(BERGLAS_OLD);
    expect(printed(result, 'PINNED')).toBe(BERGLAS_NEW);
    expect(readFileSync(printed(result, 'OLD_FILE') as string, 'utf8')).toBe(BERGLAS_OLD);
    expect(readFileSync(printed(result, 'NEW_FILE') as string, 'utf8')).toBe(BERGLAS_NEW);

    // Each reference: its metadata, then the body at the generation that metadata gave.
    const live = [
      ['refs/tls.key', 'metadata', undefined],
      ['refs/tls.key', 'media', tlsNew],
    ];
    const old = [
      ['refs/tls.key', 'metadata', tlsOld],
      ['refs/tls.key', 'media', tlsOld],
    ];
    const pinnedNew = [
      ['refs/tls.key', 'metadata', tlsNew],
      ['refs/tls.key', 'media', tlsNew],
    ];
    expect(sorted(gcsReads())).toEqual(sorted([...live, ...old, ...old, ...pinnedNew, ...live]));
    // Each data key unwrapped with the key its own generation's metadata names, bound to the name.
    expect(sorted(kmsDecrypts().map((r) => decoded(r.path)))).toEqual(
      sorted([OTHER_KEY, OTHER_KEY, KEY, KEY, KEY].map((key) => `/v1/${key}:decrypt`)),
    );
    for (const decrypt of kmsDecrypts()) {
      expect(decrypt.body).toMatchObject({
        additionalAuthenticatedData: Buffer.from('refs/tls.key').toString('base64'),
      });
    }
  });
});

/**
 * Holds the first matching request of one server until `ready` holds (what a concurrent run has
 * sent by then), then serves it. Bounded, so a sequential run fails instead of hanging: `gaveUp`
 * says whether the wait ran out.
 */
function holdUntil(ready: () => boolean) {
  const hold = {
    gaveUp: false,
    run: async () => {
      for (let i = 0; i < 500 && !ready(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
      hold.gaveUp = !ready();
    },
  };
  return hold;
}

describe('references to every service in one run', () => {
  it('resolves them concurrently, with the --sources, each service asked exactly once per secret by one client', async () => {
    const env: Record<string, string> = {};
    for (let i = 0; i < MANY; i++) env[`SM_${i}`] = `sm://${PROJECT}/many-${i}`;
    for (let i = 0; i < 3; i++) env[`BERGLAS_${i}`] = `berglas://vault/refs/many-${i}`;
    env.GS_TOKEN = 'secret-fetch:gs://vault/refs/gs-token';
    env.GS_DB = `secret-fetch:gs://vault/refs/app.json.enc?kms-key=${KEY}&key=DB_PASSWORD`;
    env.SM_ENC = `sm://${PROJECT}/app-enc?kms-key=${KEY}&key=API_KEY`;
    const smCount = MANY + 2; // the references, app-enc, and the --source
    const objects = 3 + 2;
    const objectsAsked = () => new Set(servers.gcs.requests.map((r) => r.path)).size;
    // Neither service answers until the other has been asked for everything: only a run that
    // sends every request at once gets through.
    const smHold = holdUntil(() => objectsAsked() === objects);
    const gcsHold = holdUntil(() => sm().requests.length === smCount);
    sm().failNext({ path: /:access$/ }, [smHold]);
    servers.gcs.failNext({ method: 'GET' }, [gcsHold]);

    const names = [...Object.keys(env), 'API_KEY', 'MODE'];
    const result = await run(env, printEnv(...names), [
      ...['--verbose', '--source', `sm://${PROJECT}/app-env`, '--format', 'dotenv', '--env'],
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect([smHold.gaveUp, gcsHold.gaveUp]).toEqual([false, false]);
    for (let i = 0; i < MANY; i++) expect(printed(result, `SM_${i}`)).toBe(`sm-value-${i}`);
    for (let i = 0; i < 3; i++) expect(printed(result, `BERGLAS_${i}`)).toBe(`berglas-value-${i}`);
    expect(printed(result, 'GS_TOKEN')).toBe(GS_TOKEN);
    expect(printed(result, 'GS_DB')).toBe(DB_PASSWORD);
    expect(printed(result, 'SM_ENC')).toBe(ENC_KEY);
    expect(printed(result, 'API_KEY')).toBe(API_KEY);

    // Secret Manager: one access per secret, nothing else.
    expect(sorted(smAccesses())).toEqual(
      sorted([
        ...Array.from({ length: MANY }, (_, i) => access(`many-${i}`, 'latest')),
        access('app-enc', 'latest'),
        access('app-env', 'latest'),
      ]),
    );
    // Cloud Storage, once per object: a berglas object's metadata (it names the key) and then its
    // body at that generation; a gs:// object in one GET, whose headers pin and check it.
    const reads = gcsReads();
    expect(reads).toHaveLength(2 * 3 + 2);
    for (const object of ['refs/many-0', 'refs/many-1', 'refs/many-2']) {
      const [metadata, media] = reads.filter(([name]) => name === object);
      expect(metadata).toEqual([object, 'metadata', undefined]);
      expect(media).toEqual([object, 'media', servers.gcs.getObject('vault', object)?.generation]);
    }
    for (const object of ['refs/gs-token', 'refs/app.json.enc']) {
      expect(reads.filter(([name]) => name === object)).toEqual([[object, 'media', undefined]]);
    }
    // Cloud KMS: three berglas data keys, the gs:// object and the sm:// payload.
    expect(kmsDecrypts().map((r) => decoded(r.path))).toEqual(Array(5).fill(`/v1/${KEY}:decrypt`));
    // One client per service for the whole run (--verbose says when one is made).
    expect(result.stderr.match(/creating the .* client/g)?.sort()).toEqual([
      'creating the Cloud KMS client',
      'creating the Cloud Storage client',
      'creating the Secret Manager client',
    ]);
    expectNoCanary({ ...result, stdout: '' }, CANARIES);
  });
});

interface FailureCase {
  name: string;
  code: number;
  message: RegExp;
  /** Steers the servers (or not), and returns the variables of the run. */
  setup: () => Record<string, string>;
  flags?: string[];
  /** Cloud Storage must not be asked for a body, or KMS for anything. */
  noDownload?: boolean;
  noKms?: boolean;
}

// Each run also holds a good reference to a file, on a service the failure does not touch, so
// "nothing is left behind" covers a secret that was fetched before the failure.
const goodSm = { GOOD: `sm://${PROJECT}/app-env?destination=tempfile` };
const goodGs = { GOOD: 'secret-fetch:gs://vault/refs/gs-token?destination=tempfile' };
const error = (variable: string, rest: string) => new RegExp(`^secret-fetch: error: \\$${variable}: ${rest}`);

const FAILURES: FailureCase[] = [
  {
    name: 'sm://: a secret that does not exist',
    code: EXIT.notFound,
    message: error('BROKEN', `sm://${PROJECT}/nope#latest: secret nope does not exist in project ${PROJECT}`),
    setup: () => ({ ...goodGs, BROKEN: `sm://${PROJECT}/nope` }),
  },
  {
    name: 'sm://: access denied',
    code: EXIT.permission,
    message: error('BROKEN', `permission denied to access sm://${PROJECT}/token#latest .*roles/secretmanager`),
    setup: () => {
      sm().denySecret(secretName('token'));
      return { ...goodGs, BROKEN: `sm://${PROJECT}/token` };
    },
  },
  {
    name: 'sm://: a payload that does not match its dataCrc32c',
    code: EXIT.integrity,
    message: error('BROKEN', `sm://${PROJECT}/token#latest \\(version 2\\): the payload does not match its dataCrc32c`),
    setup: () => {
      sm().corruptNextCrc();
      return { ...goodGs, BROKEN: `sm://${PROJECT}/token` };
    },
  },
  {
    name: 'sm://: a payload encrypted with another key than ?kms-key=',
    code: EXIT.integrity,
    message: error('BROKEN', `cannot decrypt sm://${PROJECT}/app-enc with .*/other: the ciphertext does not match`),
    setup: () => ({ ...goodGs, BROKEN: `sm://${PROJECT}/app-enc?kms-key=${OTHER_KEY}&key=API_KEY` }),
  },
  {
    name: 'sm://: no such ?key= entry',
    code: EXIT.notFound,
    message: error('BROKEN', `sm://${PROJECT}/app-json \\(read as json\\) has no entry NOPE \\(its entries are`),
    setup: () => ({ ...goodGs, BROKEN: `sm://${PROJECT}/app-json?key=NOPE` }),
  },
  {
    name: 'sm://: a binary payload without ?destination=',
    code: EXIT.format,
    message: error(
      'BROKEN',
      `sm://${PROJECT}/tls-key is not UTF-8 text, which no environment variable can hold \\(add \\?destination=tempfile to get it as a file\\)$`,
    ),
    setup: () => ({ ...goodGs, BROKEN: `sm://${PROJECT}/tls-key` }),
  },
  {
    name: 'sm://: a request that stalls past --timeout',
    code: EXIT.unavailable,
    message: error('BROKEN', `could not access sm://${PROJECT}/token#latest within the --timeout of 1s`),
    flags: ['--timeout', '1s'],
    setup: () => {
      sm().failNext({ path: /\/token\/versions\/latest:access$/ }, ['stall']);
      return { ...goodGs, BROKEN: `sm://${PROJECT}/token` };
    },
  },
  {
    name: 'berglas://: an object that does not exist',
    code: EXIT.notFound,
    message: error('BROKEN', 'berglas://vault/refs/nope does not exist'),
    noKms: true,
    setup: () => ({ ...goodSm, BROKEN: 'berglas://vault/refs/nope' }),
  },
  {
    name: 'berglas://: access denied to the object',
    code: EXIT.permission,
    message: error('BROKEN', 'access denied to berglas://vault/refs/tls.key'),
    noKms: true,
    setup: () => {
      servers.gcs.denyObject('vault', 'refs/tls.key');
      return { ...goodSm, BROKEN: 'berglas://vault/refs/tls.key' };
    },
  },
  {
    name: 'berglas://: a download that does not match its CRC32C',
    code: EXIT.integrity,
    message: error('BROKEN', 'berglas://vault/refs/tls.key#\\d+: the downloaded bytes do not match'),
    noKms: true,
    setup: () => {
      servers.gcs.corruptNextMedia();
      return { ...goodSm, BROKEN: 'berglas://vault/refs/tls.key' };
    },
  },
  {
    name: 'berglas://: a generation under another key than the ?kms-key= pin',
    code: EXIT.integrity,
    message: error(
      'BROKEN',
      `berglas://vault/refs/tls.key#\\d+ names the key ${OTHER_KEY} in its berglas-kms-key metadata, not the \\?kms-key= ${KEY} \\(.*change \\?kms-key=; if not, someone replaced the object\\)$`,
    ),
    noDownload: true,
    noKms: true,
    setup: () => ({ ...goodSm, BROKEN: `berglas://vault/refs/tls.key?kms-key=${KEY}#${tlsOld}` }),
  },
  {
    name: 'berglas://: permission denied on the KMS key its metadata names',
    code: EXIT.permission,
    message: error('BROKEN', 'permission denied to decrypt with .*/denied'),
    setup: () => ({ ...goodSm, BROKEN: 'berglas://vault/refs/denied-key' }),
  },
  {
    name: 'berglas://: a data key whose CRC32C KMS reports wrongly',
    code: EXIT.integrity,
    message: error(
      'BROKEN',
      'decrypting the data key of berglas://vault/refs/tls.key returned a plaintext whose CRC32C',
    ),
    setup: () => {
      servers.kms.corruptNextPlaintextCrc();
      return { ...goodSm, BROKEN: 'berglas://vault/refs/tls.key' };
    },
  },
  {
    name: 'secret-fetch:gs://: access denied',
    code: EXIT.permission,
    message: error('BROKEN', 'access denied to gs://vault/refs/gs-token'),
    setup: () => {
      servers.gcs.denyObject('vault', 'refs/gs-token');
      return { ...goodSm, BROKEN: 'secret-fetch:gs://vault/refs/gs-token' };
    },
  },
  {
    name: 'secret-fetch:gs://: a download that does not match its CRC32C',
    code: EXIT.integrity,
    message: error('BROKEN', 'gs://vault/refs/gs-token#\\d+: the downloaded bytes do not match'),
    setup: () => {
      servers.gcs.corruptNextMedia();
      return { ...goodSm, BROKEN: 'secret-fetch:gs://vault/refs/gs-token' };
    },
  },
  {
    name: 'secret-fetch:gs://: ciphertext under another key than ?kms-key=',
    code: EXIT.integrity,
    message: error(
      'BROKEN',
      'cannot decrypt gs://vault/refs/app.json.enc with .*/other: the ciphertext does not match',
    ),
    setup: () => ({ ...goodSm, BROKEN: `secret-fetch:gs://vault/refs/app.json.enc?kms-key=${OTHER_KEY}&key=X` }),
  },
  {
    name: 'two references to one ?destination= file',
    code: EXIT.usage,
    message:
      /^secret-fetch: error: \$B: \?destination=\/dev\/shm\/\S+\/same is also the destination of \$A \(give each reference its own file\)$/,
    noDownload: true,
    noKms: true,
    setup: () => ({
      A: `sm://${PROJECT}/token?destination=${join(out.dir, 'same')}`,
      B: `berglas://vault/refs/tls.key?destination=${join(out.dir, 'same')}`,
    }),
  },
];

describe('failures: the exit code, one line naming the variable, no file, no command, no canary', () => {
  it.each(FAILURES.map((f) => [f.name, f] as const))('%s', async (_, failure) => {
    const env = failure.setup();
    const marker = join(out.dir, 'command-ran');
    const result = await run(env, ['sh', '-c', `touch ${marker}`], failure.flags);
    sm().releaseStalled();
    expectFailure(result, failure.code, failure.message, CANARIES);
    expect(existsSync(marker)).toBe(false);
    expect(filesIn(out.dir)).toEqual([]);
    if (failure.noDownload) expect(downloads()).toEqual([]);
    if (failure.noKms) expect(kmsDecrypts()).toEqual([]);
  });

  it('a reference that names a --source --out file is refused before any request', async () => {
    const file = join(out.dir, 'app.env');
    const result = await run(
      { A: `sm://${PROJECT}/token?destination=${file}` },
      ['true'],
      [...['--source', `sm://${PROJECT}/app-env`, '--out', file]],
    );
    expectFailure(result, EXIT.usage, /^secret-fetch: error: \$A: \?destination=\S+ is also an --out file/, CANARIES);
    expect(sm().requests).toEqual([]);
    expect(filesIn(out.dir)).toEqual([]);
  });
});

describe('--verify-key covers references too', () => {
  const SIGNER = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/signer';
  const keys = tmpfsDir();
  const pem = join(keys.dir, 'signer.pem');
  afterAll(() => keys.cleanup());

  beforeAll(async () => {
    const version = servers.kms.createSigningKey(SIGNER);
    await uploadObject(servers.gcs.url, 'vault', 'refs/signed.env', Buffer.from(`SIGNED=${API_KEY}\n`));
    await uploadObject(servers.gcs.url, 'vault', 'refs/signed-token', Buffer.from(TOKEN));
    for (const object of ['refs/signed.env', 'refs/signed-token']) {
      const signed = await runBinary(['sign', `gs://vault/${object}`, '--signing-key', version], { env: servers.env });
      expect(signed.code, signed.stderr).toBe(0);
    }
    writeFileSync(pem, servers.kms.publicKeyPem(version));
  });

  const fetchVerified = (env: Record<string, string>) =>
    run(env, printEnv('SIGNED', 'TOKEN'), ['--source', 'gs://vault/refs/signed.env', '--env', '--verify-key', pem]);

  it('resolves a signed secret-fetch:gs:// reference', async () => {
    const result = await fetchVerified({ TOKEN: 'secret-fetch:gs://vault/refs/signed-token' });
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(`SIGNED=${API_KEY}\nTOKEN=${TOKEN}\n`);
  });

  it('refuses an unsigned berglas:// reference, naming the variable, before any decrypt', async () => {
    const result = await fetchVerified({ TOKEN: 'berglas://vault/refs/tls.key' });
    // Named as the Cloud Storage object that `secret-fetch sign` takes.
    expectFailure(
      result,
      EXIT.integrity,
      error(
        'TOKEN',
        'gs://vault/refs/tls.key#\\d+ has no secret-fetch signature.*secret-fetch sign gs://vault/refs/tls.key ',
      ),
    );
    expect(kmsDecrypts()).toEqual([]);
  });

  it('refuses an sm:// reference, which carries no signature, before any request', async () => {
    const result = await fetchVerified({ TOKEN: `sm://${PROJECT}/token` });
    expectFailure(
      result,
      EXIT.usage,
      error('TOKEN', `--verify-key cannot check sm://${PROJECT}/token#latest: only gs:// and berglas:// objects`),
    );
    expect([...sm().requests, ...servers.gcs.requests]).toEqual([]);
  });
});
