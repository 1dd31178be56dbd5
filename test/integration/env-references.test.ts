// References in the command's environment, resolved by the built binary against the test
// servers: values, picked keys, files, concurrency (one client per service) and failing closed.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { expectFailure, expectNoCanary, filesIn, KEY, runBinary, tmpfsDir } from './harness.ts';

let servers: TestServers;
let out: { dir: string; cleanup: () => void };
const TOKEN = `tok-${randomBytes(8).toString('hex')}`;
const DB_PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const CANARIES = [TOKEN, DB_PASSWORD];

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  await uploadObject(servers.gcs.url, 'vault', 'token', Buffer.from(TOKEN));
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app.json.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(JSON.stringify({ DB_PASSWORD, DB_USER: 'app' }))),
  );
  for (let i = 0; i < 20; i++) await uploadObject(servers.gcs.url, 'vault', `many/${i}`, Buffer.from(`value-${i}`));
});
afterAll(async () => servers?.close());
beforeEach(() => {
  out = tmpfsDir();
});
afterEach(() => out.cleanup());

const printEnv = (...names: string[]) => ['--', 'sh', '-c', names.map((n) => `echo "${n}=$${n}"`).join('; ')];

describe('environment references', () => {
  it('replaces whole-value references, decrypts with ?kms-key and picks one entry with ?key', async () => {
    const result = await runBinary(printEnv('API_TOKEN', 'DB_PASSWORD', 'DATA', 'NOTE'), {
      env: {
        ...servers.env,
        API_TOKEN: 'secret-fetch:gs://vault/token',
        DB_PASSWORD: `secret-fetch:gs://vault/app.json.enc?kms-key=${KEY}&key=DB_PASSWORD`,
        DATA: 'gs://analytics/exports/', // a plain gs:// path is configuration, not a reference
        NOTE: 'see secret-fetch:gs://vault/token',
      },
    });
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(
      `API_TOKEN=${TOKEN}\nDB_PASSWORD=${DB_PASSWORD}\nDATA=gs://analytics/exports/\nNOTE=see secret-fetch:gs://vault/token\n`,
    );
  });

  it('writes ?destination=tempfile and ?destination=/path files under the --out rules', async () => {
    const fixed = join(out.dir, 'db-password');
    const result = await runBinary(printEnv('TOKEN_FILE', 'DB_FILE'), {
      env: {
        ...servers.env,
        TOKEN_FILE: 'secret-fetch:gs://vault/token?destination=tempfile',
        DB_FILE: `secret-fetch:gs://vault/app.json.enc?kms-key=${encodeURIComponent(KEY)}&key=DB_PASSWORD&destination=${fixed}`,
        SECRET_FETCH_TEMPFILE_DIR: out.dir,
        SECRET_FETCH_MODE: '0440',
      },
    });
    expect(result.stderr).toBe('');
    const tokenFile = /^TOKEN_FILE=(.*)$/m.exec(result.stdout)?.[1] as string;
    expect(tokenFile.startsWith(`${out.dir}/secret-fetch-TOKEN_FILE-`)).toBe(true);
    expect(result.stdout).toContain(`DB_FILE=${fixed}\n`);
    expect(readFileSync(tokenFile, 'utf8')).toBe(TOKEN);
    expect(readFileSync(fixed, 'utf8')).toBe(DB_PASSWORD);
    expect(statSync(fixed).mode & 0o777).toBe(0o440);
    expectNoCanary(result, CANARIES);
  });

  it('resolves many references concurrently with one storage client', async () => {
    const env: Record<string, string> = { ...servers.env };
    for (let i = 0; i < 20; i++) env[`V${i}`] = `secret-fetch:gs://vault/many/${i}`;
    servers.gcs.requests.length = 0;
    const result = await runBinary(['--', 'sh', '-c', 'echo "$V0 $V7 $V19"'], { env });
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('value-0 value-7 value-19\n');
    // One GET per reference (its headers pin and check it), nothing more.
    expect(servers.gcs.requests.filter((r) => r.path.includes('/o/many%2F')).length).toBe(20);
  });

  it('--ignore-references passes the values through untouched', async () => {
    const result = await runBinary(['--ignore-references', ...printEnv('API_TOKEN')], {
      env: { ...servers.env, API_TOKEN: 'secret-fetch:gs://vault/token' },
    });
    expect(result.stdout).toBe('API_TOKEN=secret-fetch:gs://vault/token\n');
  });

  it.each([
    [
      'a missing object',
      { A: 'secret-fetch:gs://vault/token', B: 'secret-fetch:gs://vault/nope' },
      EXIT.notFound,
      /^secret-fetch: error: \$B: gs:\/\/vault\/nope does not exist/,
    ],
    [
      'a malformed reference',
      { A: 'sm://x' },
      EXIT.usage,
      /^secret-fetch: error: \$A: sm:\/\/x: not a Secret Manager secret name/,
    ],
    [
      'an unknown parameter',
      { A: 'secret-fetch:gs://vault/token?dest=tempfile' },
      EXIT.usage,
      /\$A: \?dest= is not a reference parameter/,
    ],
    [
      'a missing key',
      { A: `secret-fetch:gs://vault/app.json.enc?kms-key=${KEY}&key=NOPE` },
      EXIT.notFound,
      /\$A: gs:\/\/vault\/app.json.enc \(read as json\) has no entry NOPE \(its entries are DB_PASSWORD, DB_USER\)/,
    ],
    [
      'ciphertext without ?kms-key, picked as a key',
      { A: 'secret-fetch:gs://vault/app.json.enc?key=DB_PASSWORD' },
      EXIT.format,
      /\$A: /,
    ],
    [
      'a tempfile dir on disk',
      { A: 'secret-fetch:gs://vault/token?destination=tempfile', SECRET_FETCH_TEMPFILE_DIR: '/var/tmp' },
      EXIT.output,
      /\$A: .*not on tmpfs/,
    ],
  ])('fails closed on %s: one line naming the variable, nothing started, no file', async (_, vars, code, message) => {
    const marker = join(out.dir, 'started');
    const result = await runBinary(['--', 'sh', '-c', `touch ${marker}`], {
      env: { ...servers.env, SECRET_FETCH_TEMPFILE_DIR: out.dir, ...vars },
    });
    expectFailure(result, code, message, CANARIES);
    expect(existsSync(marker)).toBe(false);
    expect(filesIn(out.dir)).toEqual([]);
  });
});
