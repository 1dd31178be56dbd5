// secret-fetch push: validate, encrypt and upload conditionally, against the test servers; what
// it uploads is read back by the entrypoint path and by the independent KMS client.

import { createDecipheriv, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { decryptWithKmsClient } from '../fixtures/cloud.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { expectFailure, KEY, runBinary, tmpfsDir } from './harness.ts';

let servers: TestServers;
let work: { dir: string; cleanup: () => void };
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const DOTENV = `DB_USER=app\nDB_PASSWORD=${PASSWORD}\n`;

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
});
afterAll(async () => servers?.close());
beforeEach(() => {
  work = tmpfsDir();
});
afterEach(() => work.cleanup());

const run = (args: string[]) => runBinary(args, { env: servers.env });
const file = (name: string, text: string) => {
  const path = join(work.dir, name);
  writeFileSync(path, text);
  return path;
};

describe('push', () => {
  it('encrypts, creates the object with Cache-Control: private, no-store, prints the generation, and the entrypoint reads it back', async () => {
    const result = await run(['push', file('app.env', DOTENV), 'gs://vault/push/app.env.enc', '--kms-key', KEY]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const stored = servers.gcs.getObject('vault', 'push/app.env.enc');
    expect(result.stdout).toBe(`gs://vault/push/app.env.enc#${stored?.generation}\n`);
    expect(stored?.cacheControl).toBe('private, no-store');
    expect(stored?.data.includes(Buffer.from(PASSWORD))).toBe(false);
    // The independent reader (the real KMS client) gives back the exact file.
    expect((await decryptWithKmsClient(servers.kms.url, KEY, stored?.data as Buffer)).toString()).toBe(DOTENV);
    const back = await run([
      '--source',
      'gs://vault/push/app.env.enc',
      '--kms-key',
      KEY,
      '--env',
      '--',
      'sh',
      '-c',
      'echo "$DB_PASSWORD"',
    ]);
    expect(back.stdout).toBe(`${PASSWORD}\n`);
  });

  it('never overwrites silently: an existing object needs --if-generation, and only that generation is replaced', async () => {
    const first = await run(['push', file('a.env', 'A=1\n'), 'gs://vault/push/race.env.enc', '--kms-key', KEY]);
    const generation = first.stdout.trim().split('#')[1] as string;
    const again = await run(['push', file('b.env', 'A=2\n'), 'gs://vault/push/race.env.enc', '--kms-key', KEY]);
    expectFailure(
      again,
      EXIT.conflict,
      /gs:\/\/vault\/push\/race.env.enc already exists \(to replace it, pass --if-generation/,
    );
    const replaced = await run([
      'push',
      file('c.env', 'A=3\n'),
      'gs://vault/push/race.env.enc',
      '--kms-key',
      KEY,
      '--if-generation',
      generation,
    ]);
    expect(replaced.code, replaced.stderr).toBe(0);
    // A second operator still holding the old generation loses, cleanly.
    const stale = await run([
      'push',
      file('d.env', 'A=4\n'),
      'gs://vault/push/race.env.enc',
      '--kms-key',
      KEY,
      '--if-generation',
      generation,
    ]);
    expectFailure(
      stale,
      EXIT.conflict,
      new RegExp(`is no longer at generation ${generation}: someone changed it since`),
    );
    const live = servers.gcs.getObject('vault', 'push/race.env.enc') as { data: Buffer };
    expect((await decryptWithKmsClient(servers.kms.url, KEY, live.data)).toString()).toBe('A=3\n');
  });

  it('refuses what would break every start, before any upload: malformed, empty, no key', async () => {
    servers.gcs.requests.length = 0;
    expectFailure(
      await run([
        'push',
        file('bad.env', `DB_PASSWORD="${PASSWORD}\n`),
        'gs://vault/push/bad.env.enc',
        '--kms-key',
        KEY,
      ]),
      EXIT.format,
      /bad.env:1:\d+: /,
      [PASSWORD],
    );
    expectFailure(
      await run(['push', file('empty.env', ''), 'gs://vault/push/e.env.enc', '--kms-key', KEY]),
      EXIT.usage,
      /empty.env is empty/,
    );
    expectFailure(
      await run(['push', file('k.env', 'A=1\n'), 'gs://vault/push/k.env.enc']),
      EXIT.usage,
      /without --kms-key/,
    );
    expectFailure(
      await run(['push', file('g.env', 'A=1\n'), 'gs://vault/push/g.env.enc#5', '--kms-key', KEY]),
      EXIT.usage,
      /names a generation/,
    );
    expectFailure(
      await run(['push', file('f.env', 'A=1\n'), 'file:/tmp/x', '--kms-key', KEY]),
      EXIT.usage,
      /is not a gs:\/\/, berglas:\/\/ or sm:\/\/ target/,
    );
    expect(servers.gcs.requests).toEqual([]);
  });

  it('a rejected upload writes nothing and says why', async () => {
    servers.gcs.denyObject('vault', 'push/denied.env.enc');
    expectFailure(
      await run(['push', file('x.env', 'A=1\n'), 'gs://vault/push/denied.env.enc', '--kms-key', KEY]),
      EXIT.permission,
      /access denied to gs:\/\/vault\/push\/denied.env.enc \(grant storage.objects.create/,
    );
    expect(servers.gcs.getObject('vault', 'push/denied.env.enc')).toBeUndefined();
  });

  it('retries an upload whose response was lost, and recognises its own first attempt behind the 412', async () => {
    servers.gcs.requests.length = 0;
    servers.gcs.failNext({ method: 'POST', path: /^\/upload\// }, ['truncate']);
    const result = await run(['push', file('lost.env', 'A=1\n'), 'gs://vault/push/lost.env.enc', '--kms-key', KEY]);
    expect(result.code, result.stderr).toBe(0);
    const stored = servers.gcs.getObject('vault', 'push/lost.env.enc');
    expect(result.stdout).toBe(`gs://vault/push/lost.env.enc#${stored?.generation}\n`);
    expect(servers.gcs.requests.filter((r) => r.method === 'POST' && r.path.startsWith('/upload/')).length).toBe(2);
  });

  it('seals a secret over the KMS 64 KiB limit as an envelope that the entrypoint opens', async () => {
    const big = `${Array.from({ length: 3000 }, (_, i) => `VAR_${i}=${PASSWORD}-${i}`).join('\n')}\n`;
    expect(big.length).toBeGreaterThan(64 * 1024);
    const result = await run(['push', file('big.env', big), 'gs://vault/push/big.env.enc', '--kms-key', KEY]);
    expect(result.code, result.stderr).toBe(0);
    const stored = servers.gcs.getObject('vault', 'push/big.env.enc') as { data: Buffer };
    expect(stored.data.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x53, 0x46, 0x45, 0x4e, 0x56, 0x0d, 0x0a]));
    expect(stored.data.includes(Buffer.from(PASSWORD))).toBe(false);
    const back = await run([
      '--source',
      'gs://vault/push/big.env.enc',
      '--kms-key',
      KEY,
      '--env',
      '--',
      'sh',
      '-c',
      'echo "$VAR_2999"',
    ]);
    expect(back.stdout).toBe(`${PASSWORD}-2999\n`);
  });

  it('--plaintext uploads unencrypted, on purpose only', async () => {
    const result = await run(['push', file('p.json', '{"A":"1"}'), 'gs://vault/push/p.json', '--plaintext']);
    expect(result.code, result.stderr).toBe(0);
    expect(servers.gcs.getObject('vault', 'push/p.json')?.data.toString()).toBe('{"A":"1"}');
  });
});

describe('push to berglas://', () => {
  /** Opens a berglas body the way berglas does, with the real KMS client and node:crypto only. */
  async function openIndependently(body: Buffer, boundTo: string): Promise<string> {
    const [wrapped, sealed] = body
      .toString('latin1')
      .split(':')
      .map((part) => Buffer.from(part, 'base64'));
    const dek = await decryptWithKmsClient(servers.kms.url, KEY, wrapped as Buffer, Buffer.from(boundTo));
    const data = sealed as Buffer;
    const decipher = createDecipheriv('aes-256-gcm', dek, data.subarray(0, 12));
    decipher.setAuthTag(data.subarray(data.length - 16));
    return Buffer.concat([decipher.update(data.subarray(12, data.length - 16)), decipher.final()]).toString();
  }

  it('writes a berglas secret: berglas metadata, data key bound to the object name, read back by berglas://', async () => {
    const object = `push/${randomBytes(4).toString('hex')}/app.env`;
    const result = await run(['push', file('app.env', DOTENV), `berglas://vault/${object}`, '--kms-key', KEY]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const stored = servers.gcs.getObject('vault', object);
    expect(result.stdout).toBe(`berglas://vault/${object}#${stored?.generation}\n`);
    expect(stored?.metadata).toEqual({ 'berglas-secret': '1', 'berglas-kms-key': KEY });
    expect(stored?.cacheControl).toBe('private, no-store');
    const body = stored?.data as Buffer;
    expect(body.toString('latin1')).toMatch(/^[A-Za-z0-9+/]+=*:[A-Za-z0-9+/]+=*$/);
    expect(body.includes(Buffer.from(PASSWORD))).toBe(false);
    // Independently: KMS unwraps the data key only with the object name as AAD.
    expect(await openIndependently(body, object)).toBe(DOTENV);
    await expect(openIndependently(body, `${object}.copy`)).rejects.toThrow();
    const back = await run([
      '--source',
      `berglas://vault/${object}`,
      '--kms-key',
      KEY,
      '--env',
      '--',
      'sh',
      '-c',
      'echo "$DB_PASSWORD"',
    ]);
    expect(back.stdout).toBe(`${PASSWORD}\n`);
  });

  it('is conditional like gs://: create only, or replace exactly --if-generation', async () => {
    const object = `push/${randomBytes(4).toString('hex')}/race.env`;
    const uri = `berglas://vault/${object}`;
    const first = await run(['push', file('a.env', 'A=1\n'), uri, '--kms-key', KEY]);
    expect(first.code, first.stderr).toBe(0);
    const generation = first.stdout.trim().split('#')[1] as string;
    expectFailure(
      await run(['push', file('b.env', 'A=2\n'), uri, '--kms-key', KEY]),
      EXIT.conflict,
      new RegExp(`^secret-fetch: error: berglas://vault/${object} already exists`),
    );
    const replaced = await run(['push', file('c.env', 'A=3\n'), uri, '--kms-key', KEY, '--if-generation', generation]);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(await openIndependently(servers.gcs.getObject('vault', object)?.data as Buffer, object)).toBe('A=3\n');
  });

  it('replaces a berglas secret only under the key it names: another --kms-key is 76, nothing written', async () => {
    const OTHER = 'projects/p/locations/global/keyRings/r/cryptoKeys/other';
    const object = `push/${randomBytes(4).toString('hex')}/keyed.env`;
    const uri = `berglas://vault/${object}`;
    const first = await run(['push', file('a.env', 'A=1\n'), uri, '--kms-key', KEY]);
    expect(first.code, first.stderr).toBe(0);
    const generation = first.stdout.trim().split('#')[1] as string;
    expectFailure(
      await run(['push', file('b.env', 'A=2\n'), uri, '--kms-key', OTHER, '--if-generation', generation]),
      EXIT.integrity,
      new RegExp(
        `^secret-fetch: error: berglas://vault/${object}#${generation} names the key .*cryptoKeys/web in its berglas-kms-key metadata, not the --kms-key .*cryptoKeys/other`,
      ),
    );
    expect(servers.gcs.getObject('vault', object)?.generation).toBe(generation);
    expect(await openIndependently(servers.gcs.getObject('vault', object)?.data as Buffer, object)).toBe('A=1\n');
  });

  it('refuses a berglas:// target without --kms-key, or with --plaintext, before any call', async () => {
    servers.gcs.requests.length = 0;
    servers.kms.requests.length = 0;
    expectFailure(
      await run(['push', file('a.env', 'A=1\n'), 'berglas://vault/push/k.env']),
      EXIT.usage,
      /without --kms-key \(a berglas secret is always encrypted/,
    );
    expectFailure(
      await run(['push', file('a.env', 'A=1\n'), 'berglas://vault/push/k.env', '--kms-key', KEY, '--plaintext']),
      EXIT.usage,
      /--plaintext with a berglas:\/\/ target/,
    );
    expect(servers.gcs.requests).toEqual([]);
    expect(servers.kms.requests).toEqual([]);
  });
});
