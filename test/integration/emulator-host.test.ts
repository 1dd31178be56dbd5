// STORAGE_EMULATOR_HOST as emulators written by others use it (found against the Firebase Storage
// emulator): HOST:PORT without a scheme, one base URL for the run and the operator commands, and a
// doctor that does not call a bucket missing from a 404 on testIamPermissions alone.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers } from '../servers/start.ts';
import { expectFailure, KEY, runBinary } from './harness.ts';

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const OBJECT = 'gs://vault/app/secrets.cfg.enc';
const CONFIG = `SECRET_KEY = "${CANARY}"\n`;

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app/secrets.cfg.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(CONFIG)),
  );
});
afterAll(async () => {
  await servers?.close();
});
beforeEach(() => {
  servers.gcs.reset();
});

const env = (host: string) => ({ ...servers.env, STORAGE_EMULATOR_HOST: host, CLOUDSDK_CONFIG: '/nonexistent' });
const run = (host: string) =>
  runBinary(['--source', OBJECT, '--kms-key', KEY, '--env', '--', 'sh', '-c', 'printf %s "$SECRET_KEY"'], {
    env: env(host),
  });
const show = (host: string) => runBinary(['show', OBJECT, '--kms-key', KEY], { env: env(host) });
const paths = () => servers.gcs.requests.map((r) => r.path);

describe('STORAGE_EMULATOR_HOST', () => {
  it('without a scheme is taken as http://HOST:PORT, by the run and by the operator commands', async () => {
    const host = new URL(servers.gcs.url).host;
    const ran = await run(host);
    expect(ran.stderr).toBe('');
    expect(ran).toMatchObject({ code: 0, stdout: CANARY });
    const shown = await show(host);
    expect(shown.stderr).toBe('');
    expect(shown).toMatchObject({ code: 0, stdout: CONFIG });
  });

  it('is one base URL for the run and the operator commands: every request under /storage/v1', async () => {
    expect((await run(servers.gcs.url)).code).toBe(0);
    expect((await show(servers.gcs.url)).code).toBe(0);
    const doctor = await runBinary(['doctor', OBJECT, '--kms-key', KEY], { env: env(servers.gcs.url) });
    expect(doctor.code, doctor.stdout).toBe(0);
    expect(paths().length).toBeGreaterThan(3);
    for (const path of paths()) expect(path).toMatch(/^\/storage\/v1\/b\//);
  });

  it('when malformed is named by its own name, not a flag nobody gave', async () => {
    for (const result of [await run('127.0.0.1:1/bucket'), await show('127.0.0.1:1/bucket')]) {
      expectFailure(
        result,
        EXIT.usage,
        /^secret-fetch: .*STORAGE_EMULATOR_HOST=127\.0\.0\.1:1\/bucket is not an emulator address \(write HOST:PORT or http:\/\/HOST:PORT/,
        [CANARY],
      );
      expect(result.stderr).not.toContain('--storage-endpoint 127');
    }
    expect(servers.gcs.requests).toEqual([]);
    // A bad --storage-endpoint is still named as the flag.
    const flagged = await runBinary(['show', OBJECT, '--kms-key', KEY, '--storage-endpoint', 'ftp://x'], {
      env: servers.env,
    });
    expectFailure(flagged, EXIT.usage, /--storage-endpoint ftp:\/\/x is not an endpoint URL/);
  });
});

describe('doctor against an emulator without the IAM call', () => {
  it('does not report "bucket does not exist" from a 404 on testIamPermissions when the object reads', async () => {
    servers.gcs.failNext({ path: /\/iam\/testPermissions$/ }, Array(10).fill({ status: 404 }));
    const result = await runBinary(['doctor', OBJECT, '--kms-key', KEY], { env: env(servers.gcs.url) });
    expect(result.stdout).not.toMatch(/does not exist/);
    expect(result.stdout).toMatch(
      /^warn {2}gs:\/\/vault: storage\.objects\.get could not be tested \(testIamPermissions answered 404\), but the object can be read$/m,
    );
    expect(result.stdout).toMatch(/^ok {4}gs:\/\/vault\/app\/secrets\.cfg\.enc: exists/m);
    expect(result.code, result.stdout).toBe(0);
  });

  it('still reports a missing bucket when the objects do not read either', async () => {
    const result = await runBinary(['doctor', 'gs://nowhere/app.cfg.enc', '--kms-key', KEY], {
      env: env(servers.gcs.url),
    });
    expect(result.stdout).toMatch(/bucket gs:\/\/nowhere does not exist/);
    expect(result.code).not.toBe(0);
  });
});
