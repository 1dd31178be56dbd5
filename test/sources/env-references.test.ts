import { describe, expect, it } from 'vitest';
import { EXIT, NotFoundError, UsageError } from '../../src/errors.ts';
import { Secret } from '../../src/secret.ts';
import {
  checkReferences,
  findEnvReferences,
  guessFormat,
  looksLikeReference,
  parseEnvReference,
  resolveEnvReferences,
} from '../../src/sources/env-references.ts';

const KEY = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe('parseEnvReference', () => {
  it.each([
    [
      'sm://my-project/db',
      { uri: 'sm://my-project/db', ref: { scheme: 'sm', project: 'my-project', secret: 'db', version: 'latest' } },
    ],
    ['sm://my-project/db#4', { ref: { scheme: 'sm', project: 'my-project', secret: 'db', version: '4' } }],
    ['berglas://vault/api-key', { ref: { scheme: 'berglas', bucket: 'vault', object: 'api-key' } }],
    // berglas's own order: query before the generation.
    [
      'berglas://vault/api-key?destination=tempfile#12',
      {
        uri: 'berglas://vault/api-key#12',
        ref: { scheme: 'berglas', bucket: 'vault', object: 'api-key', generation: '12' },
        destination: { kind: 'tempfile' },
      },
    ],
    [
      `secret-fetch:gs://vault/app.json.enc#7?kms-key=${KEY}&key=DB_PASSWORD`,
      {
        uri: 'gs://vault/app.json.enc#7',
        ref: { scheme: 'gs', bucket: 'vault', object: 'app.json.enc', generation: '7' },
        kmsKey: KEY,
        key: 'DB_PASSWORD',
      },
    ],
    // berglas: ?kms-key= pins the key the object's metadata must name, as --kms-key does.
    [`berglas://vault/k?kms-key=${KEY}`, { ref: { scheme: 'berglas', bucket: 'vault', object: 'k' }, kmsKey: KEY }],
    ['sm://my-project/cfg?key=token&format=yaml', { key: 'token', format: 'yaml', destination: { kind: 'value' } }],
    [
      'sm://my-project/tls?destination=%2Frun%2Fsecrets%2Ftls.key',
      { destination: { kind: 'path', path: '/run/secrets/tls.key' } },
    ],
  ])('%s', (value, expected) => {
    expect(parseEnvReference('VAR', value)).toMatchObject(expected);
  });

  it.each([
    ['sm://my-project', /\$VAR: sm:\/\/my-project: not a Secret Manager secret name/],
    ['secret-fetch:gs://vault', /\$VAR: gs:\/\/vault: no object name/],
    ['sm://my-project/db?destination=relative/path', /neither tempfile nor an absolute path/],
    ['sm://my-project/db?destination=', /\?destination= is empty/],
    ['sm://my-project/db?destination=/dev/shm/db/', /\$VAR: \?destination=\/dev\/shm\/db\/ does not name a file/],
    ['sm://my-project/db?destination=/dev/shm/db/..', /\?destination=\/dev\/shm\/db\/\.\. does not name a file/],
    ['sm://my-project/db?nope=1', /\?nope= is not a reference parameter/],
    ['sm://my-project/db?key=a&key=b', /\?key= is given twice/],
    ['sm://my-project/db?format=json', /\?format= without \?key=/],
    ['sm://my-project/db?key=a&format=raw', /\?format=raw has no entries/],
    ['sm://my-project/db?key=a&format=ini', /\?format=ini has no entries/],
    ['sm://my-project/db?kms-key=nope', /\?kms-key=nope is not a key name/],
    ['sm://my-project/db#3?destination=tempfile#4', /two #versions/],
    ['sm://my-project/db?key=%E0%A4%A', /not percent-encoded/],
  ])('refuses %s', (value, message) => {
    expect(() => parseEnvReference('VAR', value)).toThrow(UsageError);
    expect(() => parseEnvReference('VAR', value)).toThrow(message);
  });
});

describe('findEnvReferences', () => {
  it('takes whole values with a reference scheme, and leaves plain gs:// paths and our own options alone', () => {
    const found = findEnvReferences({
      B_TOKEN: 'sm://my-project/token',
      A_KEY: 'berglas://vault/k',
      DATA_BUCKET: 'gs://analytics/exports/',
      GREETING: 'see sm://my-project/token',
      SECRET_FETCH_SOURCE: 'sm://my-project/app-env',
      C_CFG: 'secret-fetch:gs://vault/app.env',
      UNSET: undefined,
    });
    expect(found.map((r) => r.variable)).toEqual(['A_KEY', 'B_TOKEN', 'C_CFG']);
    expect(looksLikeReference('gs://bucket/x')).toBe(false);
  });
});

describe('checkReferences', () => {
  const refs = (environ: Record<string, string>) => findEnvReferences(environ);
  const none = { outputs: [], verifying: false };
  const out = (path: string) => ({ path, what: 'an --out file' });

  it('accepts distinct destinations, tempfiles, and gs:// and berglas:// references under --verify-key', () => {
    const references = refs({
      A: 'sm://my-project/a?destination=/dev/shm/a',
      B: 'sm://my-project/b?destination=/dev/shm/b',
      C: 'sm://my-project/c?destination=tempfile',
      D: 'sm://my-project/d?destination=tempfile',
    });
    expect(() => checkReferences(references, { outputs: [out('/dev/shm/app.env')], verifying: false })).not.toThrow();
    const objects = refs({ G: 'secret-fetch:gs://vault/app.env', K: 'berglas://vault/tls.key' });
    expect(() => checkReferences(objects, { outputs: [], verifying: true })).not.toThrow();
  });

  it.each([
    [
      'two references with one ?destination= (after normalising)',
      { A: 'sm://my-project/a?destination=/dev/shm/x', B: 'berglas://vault/b?destination=/dev/shm/y/../x' },
      none,
      /^\$B: \?destination=\/dev\/shm\/y\/\.\.\/x is also the destination of \$A$/,
    ],
    [
      'a ?destination= that is an --out',
      { A: 'sm://my-project/a?destination=/dev/shm/app.env' },
      { outputs: [out('/dev/shm/app.env')], verifying: false },
      /^\$A: \?destination=\/dev\/shm\/app\.env is also an --out file$/,
    ],
    [
      'a ?destination= that is the --ready-file',
      { A: 'sm://my-project/a?destination=/dev/shm/ready' },
      { outputs: [out('/dev/shm/app.env'), { path: '/dev/shm/ready', what: 'the --ready-file' }], verifying: false },
      /^\$A: \?destination=\/dev\/shm\/ready is also the --ready-file$/,
    ],
    [
      'an sm:// reference under --verify-key',
      { G: 'secret-fetch:gs://vault/app.env', S: 'sm://my-project/db' },
      { outputs: [], verifying: true },
      /^\$S: --verify-key cannot check sm:\/\/my-project\/db#latest: only gs:\/\/ and berglas:\/\/ objects carry/,
    ],
  ])('refuses %s, as a usage error before any fetch', (_, environ, run, message) => {
    const check = () => checkReferences(refs(environ), run);
    expect(check).toThrow(UsageError);
    expect(check).toThrow(message);
  });
});

describe('guessFormat', () => {
  it.each([
    ['app.json', 'A=1', 'json'],
    ['app-config', '{"a": 1}', 'json'],
    ['app-config', '  [1]', 'json'],
    ['app-config', '# c\nexport A=1\nB = two\n\n', 'dotenv'],
    ['app-config', 'a:\n  b: 1\n', 'yaml'],
    ['settings.cfg', 'A = "x"', 'pyfile'],
  ])('%s %j → %s', (name, text, format) => {
    expect(guessFormat(name, text)).toBe(format);
  });
});

describe('resolveEnvReferences', () => {
  const secret = (text: string) => new Secret(Buffer.from(text));

  it('resolves values, picks keys, stages files, and wipes every plaintext it fetched', async () => {
    const fetched: Secret[] = [];
    const staged: [string, string][] = [];
    const values = await resolveEnvReferences(
      [
        parseEnvReference('PLAIN', 'sm://my-project/plain'),
        parseEnvReference('PICKED', 'sm://my-project/cfg?key=DB_PASSWORD'),
        parseEnvReference('AS_FILE', 'sm://my-project/tls?destination=/dev/shm/x/tls.key'),
        parseEnvReference('TEMP', 'sm://my-project/tls?destination=tempfile'),
      ],
      {
        fetch: async (reference) => {
          const s = secret(
            reference.ref.scheme === 'sm' && reference.ref.secret === 'cfg'
              ? '{"DB_PASSWORD":"pw-1"}'
              : `v-${reference.variable}`,
          );
          fetched.push(s);
          return s;
        },
        stage: (path, data) => staged.push([path, Buffer.from(data).toString()]),
        tempfileDir: '/dev/shm/t',
        log: silent,
      },
    );
    expect(values.PLAIN).toBe('v-PLAIN');
    expect(values.PICKED).toBe('pw-1');
    expect(values.AS_FILE).toBe('/dev/shm/x/tls.key');
    expect(values.TEMP).toMatch(/^\/dev\/shm\/t\/secret-fetch-TEMP-[0-9a-f]{12}$/);
    expect(staged).toEqual([
      ['/dev/shm/x/tls.key', 'v-AS_FILE'],
      [values.TEMP, 'v-TEMP'],
    ]);
    for (const s of fetched) expect(s.reveal().every((b) => b === 0)).toBe(true);
  });

  it('names the variable in a failure, keeps its exit code, and never shows the value', async () => {
    const resolving = resolveEnvReferences([parseEnvReference('DB', 'sm://my-project/cfg?key=MISSING')], {
      fetch: async () => secret('OTHER=canary-value-42\n'),
      stage: () => {},
      tempfileDir: '/dev/shm',
      log: silent,
    });
    await expect(resolving).rejects.toMatchObject({
      exitCode: EXIT.notFound,
      message: '$DB: sm://my-project/cfg (read as dotenv) has no entry MISSING',
    });
    // Still the same class of error, with the original as its cause.
    await expect(resolving).rejects.toBeInstanceOf(NotFoundError);
    await resolving.catch((error: Error) => expect(error.cause).toBeInstanceOf(NotFoundError));
    await resolving.catch((error: Error & { hint: string }) => {
      expect(`${error.message} ${error.hint}`).not.toContain('canary-value-42');
      expect(error.hint).toBe('its entries are OTHER');
    });
  });

  it.each([
    ['a NUL byte', 'sm://my-project/bin', [0x61, 0x00, 0x62], /^\$BIN: sm:\/\/my-project\/bin contains a NUL byte, /],
    [
      'bytes that are not UTF-8',
      'sm://my-project/bin',
      [0x30, 0x82, 0x01],
      /^\$BIN: sm:\/\/my-project\/bin is not UTF-8 text, /,
    ],
    [
      '?key= on bytes that are not UTF-8',
      'sm://my-project/bin?key=A',
      [0xff],
      /is not UTF-8 text, so it has no entries/,
    ],
  ])('refuses %s with the fix for a reference', async (_, value, bytes, message) => {
    const resolving = resolveEnvReferences([parseEnvReference('BIN', value)], {
      fetch: async () => new Secret(Buffer.from(bytes)),
      stage: () => {},
      tempfileDir: '/dev/shm',
      log: silent,
    });
    await expect(resolving).rejects.toThrow(message);
    await expect(resolving).rejects.toMatchObject({
      exitCode: EXIT.format,
      hint: expect.stringMatching(/\?destination=tempfile/),
    });
  });
});
