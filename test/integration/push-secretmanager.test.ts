// secret-fetch push to sm:// targets, through the built binary against the Secret Manager and KMS
// test servers: a new version with its CRC32C, read back by the entrypoint and by the real Secret
// Manager and KMS clients; --create, --if-version and a secret with no version yet; every refusal
// before any call; denials with the role that fixes them; what comes back being checked.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { accessSecretVersion, addSecretVersion, decryptWithKmsClient } from '../fixtures/cloud.ts';
import { crc32c } from '../servers/crc32c.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { expectFailure, expectNoCanary, KEY, runBinary, tmpfsDir } from './harness.ts';

let servers: TestServers;
let work: { dir: string; cleanup: () => void };
const PROJECT = 'push-project';
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const DOTENV = `DB_USER=app\nDB_PASSWORD=${PASSWORD}\n`;
let n = 0;
let id = '';

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
});
afterAll(async () => servers?.close());
beforeEach(() => {
  work = tmpfsDir();
  servers.secretManager.reset();
  servers.kms.reset();
  id = `app-env-${++n}`;
});
afterEach(() => work.cleanup());

const run = (args: string[]) => runBinary(args, { env: servers.env });
const file = (name: string, content: string | Buffer) => {
  const path = join(work.dir, name);
  writeFileSync(path, content);
  return path;
};
const target = () => `sm://${PROJECT}/${id}`;
const name = () => `projects/${PROJECT}/secrets/${id}`;
const smRequests = () => servers.secretManager.requests;
const adds = () => smRequests().filter((r) => r.path.endsWith(':addVersion'));
const stored = (version: string) => accessSecretVersion(servers.secretManager.url, `${name()}/versions/${version}`);

describe('push to sm://', () => {
  it('--create makes the secret and version 1 with its CRC32C; the entrypoint reads it back', async () => {
    const result = await run(['push', file('app.env', DOTENV), target(), '--create']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${target()}#1\n`);
    // The payload went with its CRC32C, computed here independently.
    const body = adds()[0]?.body as { payload: { data: string; dataCrc32c: string } };
    expect(Buffer.from(body.payload.data, 'base64').toString()).toBe(DOTENV);
    expect(String(body.payload.dataCrc32c)).toBe(String(crc32c(Buffer.from(DOTENV))));
    expect((await stored('1')).toString()).toBe(DOTENV);
    const back = await run([
      '--source',
      target(),
      '--format',
      'dotenv',
      '--env',
      '--',
      'sh',
      '-c',
      'echo "$DB_PASSWORD"',
    ]);
    expect(back.stdout).toBe(`${PASSWORD}\n`);
  });

  it('with --kms-key stores the KMS ciphertext, which --source sm://... --kms-key and gcloud kms decrypt read', async () => {
    const result = await run(['push', file('app.env', DOTENV), target(), '--create', '--kms-key', KEY]);
    expect(result.code, result.stderr).toBe(0);
    const payload = await stored('1');
    expect(payload.includes(Buffer.from(PASSWORD))).toBe(false);
    expect((await decryptWithKmsClient(servers.kms.url, KEY, payload)).toString()).toBe(DOTENV);
    const back = await run([
      '--source',
      target(),
      '--kms-key',
      KEY,
      '--format',
      'dotenv',
      '--env',
      '--',
      'sh',
      '-c',
      'echo "$DB_PASSWORD"',
    ]);
    expect(back.stdout).toBe(`${PASSWORD}\n`);
  });

  it('adds the first version to an existing empty secret, and never a second one without --if-version', async () => {
    servers.secretManager.createSecret(name());
    const first = await run(['push', file('a.env', 'A=1\n'), target()]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe(`${target()}#1\n`);
    const again = await run(['push', file('b.env', 'A=2\n'), target()]);
    expectFailure(
      again,
      EXIT.conflict,
      new RegExp(
        `^secret-fetch: error: ${target()} already has versions \\(the newest is 1\\) \\(to add one on top of it, pass --if-version 1\\)$`,
      ),
    );
    expect(adds()).toHaveLength(1);
  });

  it('--if-version N adds on top of N only while N is the newest; a stale N loses with 75 and adds nothing', async () => {
    await addSecretVersion(servers.secretManager.url, name(), Buffer.from('A=1\n'));
    const onTop = await run(['push', file('a.env', 'A=2\n'), target(), '--if-version', '1']);
    expect(onTop.code, onTop.stderr).toBe(0);
    expect(onTop.stdout).toBe(`${target()}#2\n`);
    servers.secretManager.requests.length = 0;
    const stale = await run(['push', file('b.env', 'A=3\n'), target(), '--if-version', '1']);
    expectFailure(stale, EXIT.conflict, /is no longer at version 1: version 2 was added since/);
    expect(adds()).toEqual([]);
    expect((await stored('latest')).toString()).toBe('A=2\n');
  });

  it('a missing secret is 66 with the command that creates it; --create on an existing one is 75', async () => {
    const missing = await run(['push', file('a.env', 'A=1\n'), target()]);
    expectFailure(
      missing,
      EXIT.notFound,
      new RegExp(
        `the secret ${id} does not exist in project ${PROJECT} \\(create it: gcloud secrets create ${id} --project=${PROJECT} --replication-policy=automatic \\(or push with --create\\)\\)`,
      ),
    );
    expectFailure(
      await run(['push', file('b.env', 'A=1\n'), target(), '--if-version', '4']),
      EXIT.notFound,
      /has no version 4 any more: the secret does not exist, or has no versions/,
    );
    servers.secretManager.createSecret(name());
    expectFailure(
      await run(['push', file('c.env', 'A=1\n'), target(), '--create']),
      EXIT.conflict,
      new RegExp(`${target()} already exists \\(drop --create`),
    );
    // Only the first push got as far as adding: to a secret that did not exist (404).
    expect(adds().map((r) => r.path)).toEqual([`/v1/${name()}:addVersion`]);
  });

  it('refuses before any call: a #version, a payload over 64 KiB, malformed content, flags of other targets', async () => {
    const big = Buffer.alloc(64 * 1024 + 1, 0x41);
    const cases: [string[], number, RegExp][] = [
      [['push', file('a.env', 'A=1\n'), `${target()}#3`], EXIT.usage, /names a version \(push adds a new version/],
      [['push', file('a.env', 'A=1\n'), `sm://${PROJECT}/${id}#latest`], EXIT.usage, /names a version/],
      [
        ['push', file('big.bin', big), target(), '--create', '--kms-key', KEY],
        EXIT.usage,
        new RegExp(`${target()}: the payload would be 65537 bytes, more than Secret Manager's 65536-byte limit`),
      ],
      [['push', file('bad.env', `A="${PASSWORD}\n`), target(), '--create'], EXIT.format, /bad.env:1:\d+: /],
      [['push', file('empty.env', ''), target()], EXIT.usage, /empty.env is empty/],
      [['push', file('a.env', 'A=1\n'), target(), '--if-generation', '5'], EXIT.usage, /use --if-version N/],
      [
        ['push', file('a.env', 'A=1\n'), target(), '--create', '--if-version', '2'],
        EXIT.usage,
        /--create and --if-version together/,
      ],
      [['push', file('a.env', 'A=1\n'), target(), '--if-version', 'latest'], EXIT.usage, /is not a version number/],
      [['push', file('a.env', 'A=1\n'), target(), '--plaintext'], EXIT.usage, /--plaintext with/],
      [
        ['push', file('a.env', 'A=1\n'), 'gs://vault/a.env', '--if-version', '1'],
        EXIT.usage,
        /are for sm:\/\/ targets/,
      ],
    ];
    for (const [args, code, message] of cases) expectFailure(await run(args), code, message, [PASSWORD]);
    expect(smRequests()).toEqual([]);
    expect(servers.kms.requests).toEqual([]);
  });

  it('refuses a KMS ciphertext over the limit before Secret Manager is called', async () => {
    const result = await run([
      'push',
      file('edge.bin', Buffer.alloc(64 * 1024, 0x42)),
      target(),
      '--create',
      '--kms-key',
      KEY,
    ]);
    expectFailure(result, EXIT.usage, /the payload would be \d+ bytes, more than Secret Manager's 65536-byte limit/);
    expect(servers.kms.requests.map((r) => r.path)).toEqual([`/v1/${KEY}:encrypt`]);
    expect(smRequests()).toEqual([]);
  });

  it('names the role that is missing: the version adder, or the viewer for the check', async () => {
    servers.secretManager.createSecret(name());
    servers.secretManager.grant(name(), ['secretmanager.versions.get']);
    expectFailure(
      await run(['push', file('a.env', 'A=1\n'), target()]),
      EXIT.permission,
      new RegExp(
        `permission denied to add a version to ${target()} \\(or the secret does not exist\\) \\(grant roles/secretmanager.secretVersionAdder on the secret: gcloud secrets add-iam-policy-binding ${id} --project=${PROJECT} --member=PRINCIPAL --role=roles/secretmanager.secretVersionAdder\\)`,
      ),
    );
    servers.secretManager.grant(name(), ['secretmanager.versions.add']);
    expectFailure(
      await run(['push', file('a.env', 'A=1\n'), target()]),
      EXIT.permission,
      /permission denied to read the newest version of .* \(grant roles\/secretmanager.viewer on the secret/,
    );
    expect(servers.secretManager.requests.filter((r) => r.path.endsWith(':addVersion'))).toHaveLength(1);
    expect(await run(['push', file('c.env', 'A=1\n'), `sm://${PROJECT}/${id}-new`, '--create'])).toMatchObject({
      code: 0,
    });
  });

  it('checks what comes back: a version of another secret, or no confirmed CRC32C, is refused (76)', async () => {
    servers.secretManager.createSecret(name());
    servers.secretManager.failNext({ method: 'POST', path: /:addVersion$/ }, [
      {
        status: 200,
        body: { name: 'projects/1/secrets/other/versions/1', state: 1, clientSpecifiedPayloadChecksum: true },
      },
    ]);
    expectFailure(
      await run(['push', file('a.env', 'A=1\n'), target()]),
      EXIT.integrity,
      /answered for .* with the version name "projects\/1\/secrets\/other\/versions\/1", not a version of/,
    );
    servers.secretManager.failNext({ method: 'POST', path: /:addVersion$/ }, [
      { status: 200, body: { name: `projects/1/secrets/${id}/versions/1`, state: 1 } },
    ]);
    expectFailure(
      await run(['push', file('a.env', 'A=1\n'), target()]),
      EXIT.integrity,
      /#1: Secret Manager did not confirm the payload's CRC32C/,
    );
  });

  it('retries an add whose response was lost, and warns that the version number came out higher', async () => {
    servers.secretManager.createSecret(name());
    servers.secretManager.failNext({ method: 'POST', path: /:addVersion$/ }, ['truncate']);
    const result = await run(['push', file('a.env', `A=${PASSWORD}\n`), target()]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(`${target()}#2\n`);
    expect(result.stderr).toMatch(/added as version 2, not 1: another version was added between the check and the add/);
    expect(adds()).toHaveLength(2);
    expectNoCanary(result, [PASSWORD]);
  });
});
