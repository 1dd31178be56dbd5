// secret-fetch show / get: the operator's read path, against the test servers.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { expectFailure, KEY, OTHER_KEY, runBinary } from './harness.ts';

let servers: TestServers;
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const DOTENV = `DB_USER=app\nDB_PASSWORD="${PASSWORD}"\n`;

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  servers.kms.createKey(OTHER_KEY);
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app.env.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(DOTENV)),
  );
  await uploadObject(servers.gcs.url, 'vault', 'config', Buffer.from(JSON.stringify({ token: PASSWORD, n: 3 })));
});
afterAll(async () => servers?.close());

const run = (args: string[]) => runBinary(args, { env: servers.env });

describe('show', () => {
  it('writes the decrypted bytes to stdout and nothing to stderr', async () => {
    const result = await run(['show', 'gs://vault/app.env.enc', '--kms-key', KEY]);
    expect(result).toMatchObject({ code: 0, stdout: DOTENV, stderr: '' });
  });

  it('fails like the main run: wrong key, missing object, no argument', async () => {
    expectFailure(
      await run(['show', 'gs://vault/app.env.enc', '--kms-key', OTHER_KEY]),
      EXIT.integrity,
      /does not match this key/,
      [PASSWORD],
    );
    expectFailure(await run(['show', 'gs://vault/nope']), EXIT.notFound, /gs:\/\/vault\/nope does not exist/);
    expectFailure(await run(['show']), EXIT.usage, /show takes 1 argument, got 0/);
    expectFailure(await run(['show', 'gs://vault/config', '--bogus']), EXIT.usage, /show: Unknown option '--bogus'/);
  });

  it('has --help with an example', async () => {
    const result = await run(['show', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: secret-fetch show SOURCE/);
    expect(result.stdout).toContain('Example:\n  secret-fetch show gs://');
  });
});

describe('get', () => {
  it('prints one entry exactly, without a newline, choosing the format by name or content', async () => {
    expect(await run(['get', 'gs://vault/app.env.enc', 'DB_PASSWORD', '--kms-key', KEY])).toMatchObject({
      code: 0,
      stdout: PASSWORD,
      stderr: '',
    });
    expect(await run(['get', 'gs://vault/config', 'token'])).toMatchObject({ code: 0, stdout: PASSWORD });
    expect(await run(['get', 'gs://vault/config', 'n', '--format', 'json'])).toMatchObject({ code: 0, stdout: '3' });
  });

  it('names a missing entry and lists the others, never a value', async () => {
    const result = await run(['get', 'gs://vault/app.env.enc', 'NOPE', '--kms-key', KEY]);
    expectFailure(
      result,
      EXIT.notFound,
      /app.env.enc \(read as dotenv\) has no entry NOPE \(its entries are DB_USER, DB_PASSWORD\)$/,
      [PASSWORD],
    );
  });

  it('refuses a format without entries and a wrong number of arguments', async () => {
    expectFailure(await run(['get', 'gs://vault/config', 'token', '--format', 'raw']), EXIT.usage, /get needs entries/);
    expectFailure(
      await run(['get', 'gs://vault/config', 'token', '--format', 'ini']),
      EXIT.usage,
      /--format ini is not known/,
    );
    expectFailure(await run(['get', 'gs://vault/config']), EXIT.usage, /get takes 2 arguments, got 1/);
  });
});
