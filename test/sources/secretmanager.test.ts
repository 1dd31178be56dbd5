// The sm:// reader against a fake client: what it does with each shape of response (the real
// client against the test server is covered by test/servers.test.ts and the integration tests).

import { describe, expect, it } from 'vitest';
import { EXIT, IntegrityError, NotFoundError, PermissionError, UnavailableError } from '../../src/errors.ts';
import type { Clients } from '../../src/google/clients.ts';
import { checksum, mapSecretManagerError, type SecretManagerClient } from '../../src/google/secretmanager.ts';
import { createRetry, Deadline } from '../../src/retry.ts';
import type { FetchContext } from '../../src/sources/index.ts';
import { parseSourceRef, type SecretManagerRef } from '../../src/sources/reference.ts';
import { accessSecretVersion, currentSecretVersion } from '../../src/sources/secretmanager.ts';
import { crc32c } from '../servers/crc32c.ts';

const ref = (uri: string) => parseSourceRef(uri) as SecretManagerRef;
const silent = { debug() {}, info() {}, warn() {}, error() {} };

interface Answer {
  name?: string | null;
  payload?: { data?: Uint8Array | null; dataCrc32c?: unknown } | null;
}

/** A context whose client answers every access with `answer` (or throws it) and records the names asked. */
function context(answer: Answer | Error, options: { maxBytes?: number; getName?: string } = {}) {
  const asked: string[] = [];
  const client = {
    accessSecretVersion: async ({ name }: { name: string }) => {
      asked.push(`access ${name}`);
      if (answer instanceof Error) throw answer;
      return [answer];
    },
    getSecretVersion: async ({ name }: { name: string }) => {
      asked.push(`get ${name}`);
      if (answer instanceof Error) throw answer;
      return [{ name: options.getName, state: 'ENABLED' }];
    },
  } as unknown as SecretManagerClient;
  const clients = { secretManagerReader: async () => client } as unknown as Clients;
  const fetch: FetchContext = {
    clients,
    retry: createRetry({ log: silent, deadline: new Deadline(5_000), random: () => 0 }),
    log: silent,
    maxBytes: options.maxBytes ?? 1024,
  };
  return { fetch, asked };
}

const payload = (text: string, crc: unknown = String(crc32c(Buffer.from(text)))) => ({
  data: Buffer.from(text),
  dataCrc32c: crc,
});

describe('accessSecretVersion', () => {
  it('returns the bytes and the version the name resolved to, named by the secret ID', async () => {
    const { fetch, asked } = context({
      name: 'projects/123456789012/secrets/db/versions/4',
      payload: payload('A=1\n'),
    });
    const fetched = await accessSecretVersion(ref('sm://my-project/db'), fetch);
    expect(fetched.data.reveal().toString()).toBe('A=1\n');
    expect(fetched).toMatchObject({ name: 'db', version: '4' });
    expect(asked).toEqual(['access projects/my-project/secrets/db/versions/latest']);
  });

  it.each([
    ['a decimal string', (n: number) => String(n)],
    ['a number', (n: number) => n],
    ['an Int64Value wrapper', (n: number) => ({ value: String(n) })],
    ['a Long', (n: number) => ({ low: n | 0, high: 0, unsigned: false, toString: () => String(n) })],
  ])('accepts dataCrc32c as %s', async (_, shape) => {
    const crc = crc32c(Buffer.from('A=1\n'));
    const { fetch } = context({ name: 'projects/p/secrets/db/versions/1', payload: payload('A=1\n', shape(crc)) });
    expect((await accessSecretVersion(ref('sm://my-project/db'), fetch)).version).toBe('1');
  });

  it('refuses a payload whose dataCrc32c does not match, and zeroes it', async () => {
    const answer = { name: 'projects/p/secrets/db/versions/2', payload: payload('A=1\n', '12345') };
    const data = answer.payload.data;
    const { fetch } = context(answer);
    const error = await accessSecretVersion(ref('sm://my-project/db'), fetch).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).line).toBe(
      'sm://my-project/db#latest (version 2): the payload does not match its dataCrc32c (the response was corrupted in transit; run again)',
    );
    expect(data.every((b) => b === 0)).toBe(true);
  });

  it.each([
    ['absent', undefined],
    ['null', null],
    ['not a number', 'abc'],
    ['negative', '-5'],
    ['over 32 bits', String(2 ** 32)],
  ])('fails closed when dataCrc32c is %s', async (_, crc) => {
    // Built by hand: payload()'s default would fill in an undefined CRC.
    const answer = {
      name: 'projects/p/secrets/db/versions/2',
      payload: { data: Buffer.from('A=1\n'), dataCrc32c: crc },
    };
    const { fetch } = context(answer);
    await expect(accessSecretVersion(ref('sm://my-project/db'), fetch)).rejects.toThrow(
      /no usable dataCrc32c, so the payload cannot be verified/,
    );
    expect(answer.payload.data.every((b) => b === 0)).toBe(true);
  });

  it('refuses a payload over maxBytes before checking it, and zeroes it', async () => {
    const answer = { name: 'projects/p/secrets/db/versions/3', payload: payload('x'.repeat(11)) };
    const { fetch } = context(answer, { maxBytes: 10 });
    await expect(accessSecretVersion(ref('sm://my-project/db#3'), fetch)).rejects.toThrow(
      'sm://my-project/db#3 is 11 bytes, more than the 10-byte limit',
    );
    expect(answer.payload.data.every((b) => b === 0)).toBe(true);
  });

  it.each([
    [
      'another version than the number asked for',
      'sm://my-project/db#3',
      'projects/p/secrets/db/versions/4',
      /asked for version 3, got 4/,
    ],
    ['another secret', 'sm://my-project/db', 'projects/p/secrets/other/versions/4', /not a version of db/],
    ['no name', 'sm://my-project/db', undefined, /with the version name ""/],
    [
      'a name without a version number',
      'sm://my-project/db',
      'projects/p/secrets/db/versions/latest',
      /not a version of db/,
    ],
  ])('refuses an answer naming %s', async (_, uri, name, message) => {
    const answer = { name, payload: payload('A=1\n') };
    const { fetch } = context(answer);
    const error = await accessSecretVersion(ref(uri), fetch).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).toMatch(message);
    expect(answer.payload.data.every((b) => b === 0)).toBe(true);
  });
});

describe('currentSecretVersion', () => {
  it('reads the version metadata for latest or an alias', async () => {
    const { fetch, asked } = context({}, { getName: 'projects/123/secrets/db/versions/9' });
    expect(await currentSecretVersion(ref('sm://my-project/db#prod'), fetch)).toBe('9');
    expect(asked).toEqual(['get projects/my-project/secrets/db/versions/prod']);
  });

  it('asks nothing for a version number: it is pinned', async () => {
    const { fetch, asked } = context(new Error('must not be called'));
    expect(await currentSecretVersion(ref('sm://my-project/db#12'), fetch)).toBe('12');
    expect(asked).toEqual([]);
  });

  it('says which role --refresh needs when the metadata is denied', async () => {
    const { fetch } = context(Object.assign(new Error('denied'), { code: 7 }));
    const error = await currentSecretVersion(ref('sm://my-project/db'), fetch).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionError);
    expect((error as PermissionError).line).toMatch(
      /^permission denied to read the version metadata of sm:\/\/my-project\/db#latest, which --refresh polls \(grant roles\/secretmanager\.viewer/,
    );
  });
});

describe('checksum', () => {
  it.each([
    ['0', 0],
    ['4294967295', 0xffffffff],
    [907060870, 907060870],
    [{ value: '17' }, 17],
    ['4294967296', undefined],
    ['-1', undefined],
    ['1.5', undefined],
    [1.5, undefined],
    ['', undefined],
    [undefined, undefined],
    [null, undefined],
    [{}, undefined],
  ])('%j -> %j', (value, expected) => {
    expect(checksum(value)).toBe(expected);
  });
});

describe('mapSecretManagerError', () => {
  const error = (code: number, message = '', httpStatusCode?: number) =>
    Object.assign(new Error(message), { code, httpStatusCode });
  const line = (e: unknown, uri = 'sm://my-project/db', call: 'access' | 'get' = 'access') =>
    mapSecretManagerError(e, ref(uri), call);

  it('names the secret or the version that does not exist, with the command that lists them', () => {
    expect(line(error(5))?.line).toBe(
      'sm://my-project/db#latest: secret db does not exist in project my-project, or has no versions (check the project and secret ID: gcloud secrets list --project my-project)',
    );
    expect(line(error(5), 'sm://my-project/db#7')?.line).toBe(
      'sm://my-project/db#7: secret db in project my-project has no version 7, or does not exist (list its versions: gcloud secrets versions list db --project my-project)',
    );
    expect(line(error(5), 'sm://my-project/db#prod')?.line).toBe(
      'sm://my-project/db#prod: secret db in project my-project has no version aliased "prod", or does not exist (gcloud secrets describe db --project my-project lists its aliases)',
    );
    expect(line(error(5))).toBeInstanceOf(NotFoundError);
  });

  it('says whether a version is disabled or destroyed, which one, and how to fix each', () => {
    const disabled = line(error(9, 'Secret Version [projects/1/secrets/db/versions/3] is in DISABLED state.'));
    expect(disabled?.exitCode).toBe(EXIT.notFound);
    expect(disabled?.line).toBe(
      'sm://my-project/db#latest: the latest version (3) of secret db is disabled (enable it: gcloud secrets versions enable 3 --secret db --project my-project, or pin an enabled version with #N (latest never skips a disabled or destroyed one))',
    );
    const destroyed = line(
      error(9, 'Secret Version [projects/1/secrets/db/versions/3] is in DESTROYED state.'),
      'sm://my-project/db#3',
    );
    expect(destroyed?.line).toBe(
      'sm://my-project/db#3: version 3 of secret db is destroyed (its data is gone: add a new version (gcloud secrets versions add db --project my-project --data-file=FILE))',
    );
    const alias = line(
      error(9, 'Secret Version [projects/1/secrets/db/versions/2] is in DISABLED state.'),
      'sm://my-project/db#prod',
    );
    expect(alias?.message).toBe('sm://my-project/db#prod: the version aliased "prod" (2) of secret db is disabled');
    // A message in another shape still gives a useful line.
    expect(line(error(9, 'precondition failed'), 'sm://my-project/db#5')?.line).toBe(
      'sm://my-project/db#5: version 5 of secret db is disabled or destroyed (enable it: gcloud secrets versions enable 5 --secret db --project my-project)',
    );
  });

  it('names the role and the gcloud command that grants it', () => {
    const denied = line(error(7));
    expect(denied).toBeInstanceOf(PermissionError);
    expect(denied?.line).toBe(
      'permission denied to access sm://my-project/db#latest (or the secret does not exist) (grant roles/secretmanager.secretAccessor on the secret to the service account this runs as: gcloud secrets add-iam-policy-binding db --project my-project --member=serviceAccount:SA --role=roles/secretmanager.secretAccessor)',
    );
    expect(line(error(16))?.exitCode).toBe(EXIT.permission);
  });

  it('makes 429, 503, 5xx and timeouts retryable, naming the status', () => {
    for (const [code, http] of [
      [8, 429],
      [14, 503],
      [13, 500],
      [2, 502],
      [4, undefined],
      [10, 409], // ABORTED: Google's guidance is to retry
    ] as const) {
      const mapped = line(error(code, '', http));
      expect(mapped).toBeInstanceOf(UnavailableError);
      expect(mapped?.message).toMatch(
        new RegExp(`^Secret Manager answered ${http ?? ''}.* for sm://my-project/db#latest$`),
      );
    }
  });

  it('leaves what it does not know to the caller (network errors, bugs)', () => {
    expect(line(new Error('boom'))).toBeUndefined();
    expect(line(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBeUndefined();
  });

  it('makes a gRPC status Secret Manager never gives to a read final, 69, naming it', () => {
    const mapped = line(error(12, '', 501));
    expect(mapped).not.toBeInstanceOf(UnavailableError);
    expect(mapped?.exitCode).toBe(EXIT.unavailable);
    expect(mapped?.message).toBe(
      'Secret Manager answered gRPC status 12 (HTTP 501) for sm://my-project/db#latest, an answer it does not give to this call',
    );
  });
});
