// secret-fetch doctor, the built binary against the GCS and KMS test servers: a checklist that
// passes, each failure class with its fix, the entrypoint's own variables, the credentials it
// reports, and that it never downloads, decrypts or prints a secret.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { addSecretVersion, encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { writeBerglasObject } from '../fixtures/envelopes.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { expectFailure, expectNoCanary, KEY, OTHER_KEY, type Result, ROOT, runBinary, tmpfsDir } from './harness.ts';

let servers: TestServers;
let out: { dir: string; cleanup: () => void };
let scratch: string;

const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const OBJECT = 'gs://vault/app/secrets.cfg.enc';
const EMAIL = 'web@doctor-demo.iam.gserviceaccount.com';
const SECRET = 'projects/doctor-demo/secrets/db-password';
const BERGLAS = 'berglas://vault/app/berglas.env';

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  const ciphertext = await encryptWithKms(servers.kms.url, KEY, Buffer.from(`SECRET_KEY = "${CANARY}"\n`));
  await uploadObject(servers.gcs.url, 'vault', 'app/secrets.cfg.enc', ciphertext);
  await uploadObject(servers.gcs.url, 'vault', 'app/other.env', Buffer.from(`TOKEN=${CANARY}\n`));
  servers.kms.createKey(OTHER_KEY);
  await addSecretVersion(servers.secretManager.url, SECRET, Buffer.from(CANARY));
  await writeBerglasObject(servers, 'vault', 'app/berglas.env', Buffer.from(`TOKEN=${CANARY}\n`), OTHER_KEY);
  // Not tmpfs: the worktree's own disk, as in test/sinks/file.test.ts.
  scratch = mkdtempSync(join(ROOT, '.doctor-test-'));
});
afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  await servers?.close();
});
beforeEach(() => {
  servers.gcs.reset();
  servers.kms.reset();
  servers.secretManager.reset();
  out = tmpfsDir();
});
afterEach(() => out.cleanup());

/** A throwaway service-account key, as `gcloud iam service-accounts keys create` writes one. */
function serviceAccountKeyFile(): { path: string; keyLine: string; keyId: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const keyId = randomBytes(20).toString('hex');
  const path = join(scratch, `key-${keyId.slice(0, 8)}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      type: 'service_account',
      project_id: 'doctor-demo',
      private_key_id: keyId,
      private_key: pem,
      client_email: EMAIL,
      client_id: '1234567890',
      token_uri: 'https://oauth2.googleapis.com/token',
    }),
    { mode: 0o600 },
  );
  return { path, keyLine: pem.split('\n')[5] as string, keyId };
}

// An empty gcloud configuration directory: a gcloud login of whoever runs the tests is not found.
const doctor = (args: string[], env: Record<string, string> = {}) =>
  runBinary(['doctor', ...args], { env: { ...servers.env, CLOUDSDK_CONFIG: join(scratch, 'gcloud'), ...env } });

/** The check lines of a text report (the fix lines and the summary left out). */
const checkLines = (result: Result) => result.stdout.split('\n').filter((l) => /^(ok|FAIL|warn) /.test(l));
const summaryLine = (result: Result) => result.stdout.trimEnd().split('\n').at(-1);

describe('secret-fetch doctor', () => {
  it('passes every check of a good configuration, and downloads and decrypts nothing', async () => {
    const result = await doctor([OBJECT, '--kms-key', KEY, '--out', join(out.dir, 'app.cfg')]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(checkLines(result)).toEqual([
      expect.stringMatching(
        /^ok {4}credentials: none found, and none needed \(Cloud Storage at http:.* and Cloud KMS at http:.* are reached over http:\/\/, without credentials\)$/,
      ),
      'ok    gs://vault: storage.objects.get granted',
      expect.stringMatching(
        /^ok {4}gs:\/\/vault\/app\/secrets\.cfg\.enc: exists, generation [0-9]+, [0-9]+ bytes \(not downloaded\)$/,
      ),
      `ok    ${KEY}: cloudkms.cryptoKeyVersions.useToDecrypt granted`,
      `ok    --out ${join(out.dir, 'app.cfg')}: ${out.dir} is tmpfs and writable`,
    ]);
    expect(summaryLine(result)).toBe('5 passed, none failed');
    expect(servers.gcs.requests.some((r) => r.query.alt === 'media' || r.path.startsWith('/download/'))).toBe(false);
    expect(servers.kms.requests.map((r) => r.path)).toEqual([`/v1/${KEY}:testIamPermissions`]);
    expect(servers.gcs.requests.map((r) => r.path)).toEqual(
      expect.arrayContaining([
        '/storage/v1/b/vault/iam/testPermissions',
        '/storage/v1/b/vault/o/app%2Fsecrets.cfg.enc',
      ]),
    );
    expectNoCanary(result, [CANARY]);
  });

  it('reports the service account of a key file, with its email and project, and none of the key', async () => {
    const key = serviceAccountKeyFile();
    const result = await doctor([OBJECT], { GOOGLE_APPLICATION_CREDENTIALS: key.path });
    expect(result.code, result.stderr).toBe(0);
    expect(checkLines(result)[0]).toMatch(
      new RegExp(
        `^ok {4}credentials: service account key from GOOGLE_APPLICATION_CREDENTIALS=${key.path}: ${EMAIL}, project doctor-demo; not used here \\(Cloud Storage at http:`,
      ),
    );
    expectNoCanary(result, [key.keyLine, key.keyId, 'PRIVATE KEY']);
  });

  it('fails a denied bucket with 77 and the storage grant for that bucket and account', async () => {
    servers.gcs.denyBucket('vault');
    const key = serviceAccountKeyFile();
    const result = await doctor([OBJECT, '--kms-key', KEY], { GOOGLE_APPLICATION_CREDENTIALS: key.path });
    expect(result.code, result.stdout).toBe(EXIT.permission);
    const grant = `gcloud storage buckets add-iam-policy-binding gs://vault --member=serviceAccount:${EMAIL} --role=roles/storage.objectViewer`;
    expect(result.stdout).toContain(
      `FAIL  gs://vault: storage.objects.get is not granted to serviceAccount:${EMAIL}\n      fix: ${grant}\n`,
    );
    expect(result.stdout).toContain(
      `FAIL  access denied to ${OBJECT}: serviceAccount:${EMAIL} cannot read it\n      fix: ${grant}\n`,
    );
    expect(result.stdout).toContain(`ok    ${KEY}: cloudkms.cryptoKeyVersions.useToDecrypt granted\n`);
    expect(summaryLine(result)).toBe('2 failed, 2 passed: exit 77 (permission)');
    expect(result.stderr).toBe('');
    expectNoCanary(result, [CANARY, key.keyLine, key.keyId]);
  });

  it('fails a denied KMS key with the KMS grant, naming key, location, key ring and project', async () => {
    servers.kms.denyKey(KEY);
    const result = await doctor([OBJECT, '--kms-key', KEY]);
    expect(result.code, result.stdout).toBe(EXIT.permission);
    expect(result.stdout).toContain(
      `FAIL  ${KEY}: cloudkms.cryptoKeyVersions.useToDecrypt is not granted to serviceAccount:SERVICE_ACCOUNT_EMAIL (or the key does not exist: KMS does not say which)\n` +
        '      fix: gcloud kms keys add-iam-policy-binding web --location=global --keyring=apps --project=demo --member=serviceAccount:SERVICE_ACCOUNT_EMAIL --role=roles/cloudkms.cryptoKeyDecrypter  # replace SERVICE_ACCOUNT_EMAIL with the identity secret-fetch runs as\n',
    );
    expect(checkLines(result).filter((l) => l.startsWith('FAIL'))).toHaveLength(1);
  });

  it('fails a missing object with 66 and says where to look', async () => {
    const result = await doctor(['gs://vault/app/missing.env', 'gs://vault/app/other.env']);
    expect(result.code, result.stdout).toBe(EXIT.notFound);
    expect(result.stdout).toContain(
      'FAIL  gs://vault/app/missing.env does not exist\n      fix: check the object name: gcloud storage ls -a gs://vault/app/\n',
    );
    expect(result.stdout).toMatch(/^ok {4}gs:\/\/vault\/app\/other\.env: exists/m);
    expect(summaryLine(result)).toBe('1 failed, 3 passed: exit 66 (not found)');
    expectNoCanary(result, [CANARY]);
  });

  it('ranks a permission failure above a missing object', async () => {
    servers.kms.denyKey(KEY);
    const result = await doctor(['gs://vault/app/missing.env', '--kms-key', KEY]);
    expect(result.code).toBe(EXIT.permission);
    expect(checkLines(result).filter((l) => l.startsWith('FAIL'))).toHaveLength(2);
  });

  it('flags an --out directory that is not tmpfs (73), and only warns with --allow-disk', async () => {
    const target = join(scratch, 'app.cfg');
    const refused = await doctor([OBJECT, '--out', target]);
    expect(refused.code, refused.stdout).toBe(EXIT.output);
    expect(refused.stdout).toContain(
      `FAIL  refusing to write ${target}: ${scratch} is not on tmpfs or ramfs, so the secret would reach a disk\n`,
    );
    const allowed = await doctor([OBJECT, '--out', target, '--allow-disk']);
    expect(allowed.code, allowed.stdout).toBe(0);
    expect(allowed.stdout).toContain(
      `warn  --out ${target}: ${scratch} is not on tmpfs or ramfs, and --allow-disk lets the secret reach a disk\n`,
    );
  });

  it('flags an --out whose directory does not exist', async () => {
    const target = join(out.dir, 'nope', 'app.cfg');
    const result = await doctor([OBJECT, '--out', target]);
    expect(result.code).toBe(EXIT.output);
    expect(result.stdout).toContain(
      `FAIL  cannot write ${target}: the directory ${join(out.dir, 'nope')} does not exist\n`,
    );
  });

  it("checks the entrypoint's own SECRET_FETCH_* variables when given no source", async () => {
    const target = join(out.dir, 'app.cfg');
    const env = { SECRET_FETCH_SOURCE: OBJECT, SECRET_FETCH_KMS_KEY: KEY, SECRET_FETCH_OUT: target };
    const good = await doctor([], env);
    expect(good.code, good.stdout).toBe(0);
    expect(checkLines(good).slice(1)).toEqual([
      'ok    gs://vault: storage.objects.get granted',
      expect.stringMatching(/^ok {4}gs:\/\/vault\/app\/secrets\.cfg\.enc: exists/),
      `ok    ${KEY}: cloudkms.cryptoKeyVersions.useToDecrypt granted`,
      `ok    --out ${target}: ${out.dir} is tmpfs and writable`,
    ]);
    const moved = await doctor([], { ...env, SECRET_FETCH_SOURCE: 'gs://vault/app/moved.cfg.enc' });
    expect(moved.code).toBe(EXIT.notFound);
    expect(moved.stdout).toContain('FAIL  gs://vault/app/moved.cfg.enc does not exist\n');
  });

  it('warns when the bucket denies but an object ACL grants the read', async () => {
    servers.gcs.denyBucket('vault');
    servers.gcs.grantObjectAcl('vault', 'app/secrets.cfg.enc');
    const result = await doctor([OBJECT]);
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toMatch(
      /^warn {2}gs:\/\/vault: storage\.objects\.get is not granted on the bucket, but the object can be read \(object ACLs\?\)\n {6}fix: gcloud storage buckets add-iam-policy-binding gs:\/\/vault /m,
    );
  });

  it('checks a file source without reading it, and fails a missing one with 66', async () => {
    const file = join(out.dir, 'app.env');
    writeFileSync(file, `TOKEN=${CANARY}\n`);
    const result = await doctor([file, `file:${join(out.dir, 'gone.env')}`]);
    expect(result.code).toBe(EXIT.notFound);
    expect(checkLines(result)).toEqual([
      'ok    credentials: none found, and none needed (only local files are read)',
      `ok    ${file}: readable, ${`TOKEN=${CANARY}\n`.length} bytes (not read)`,
      `FAIL  ${join(out.dir, 'gone.env')} does not exist`,
    ]);
    expectNoCanary(result, [CANARY]);
  });

  it('checks an sm:// secret: the access permission, then the version metadata, never the payload', async () => {
    const result = await doctor(['sm://doctor-demo/db-password']);
    expect(result.code, result.stdout).toBe(0);
    expect(checkLines(result)).toEqual([
      expect.stringMatching(
        /^ok {4}credentials: none found, and none needed \(Secret Manager at http:.* is reached over http:/,
      ),
      'ok    sm://doctor-demo/db-password: secretmanager.versions.access granted',
      'ok    sm://doctor-demo/db-password#latest: version 1 (latest) exists and is enabled (not accessed)',
    ]);
    expect(servers.secretManager.requests.map((r) => [r.method, r.path])).toEqual(
      expect.arrayContaining([
        ['POST', `/v1/${SECRET}:testIamPermissions`],
        ['GET', `/v1/${SECRET}/versions/latest`],
      ]),
    );
    expect(servers.secretManager.requests.some((r) => r.path.endsWith(':access'))).toBe(false);
    expectNoCanary(result, [CANARY]);
  });

  it('fails a denied secret with 77 and the accessor grant on that secret for that account', async () => {
    servers.secretManager.denySecret(SECRET);
    const key = serviceAccountKeyFile();
    const result = await doctor(['sm://doctor-demo/db-password'], { GOOGLE_APPLICATION_CREDENTIALS: key.path });
    expect(result.code, result.stdout).toBe(EXIT.permission);
    expect(result.stdout).toContain(
      `FAIL  sm://doctor-demo/db-password: secretmanager.versions.access is not granted to serviceAccount:${EMAIL} (or the secret does not exist)\n` +
        `      fix: gcloud secrets add-iam-policy-binding db-password --project=doctor-demo --member=serviceAccount:${EMAIL} --role=roles/secretmanager.secretAccessor\n`,
    );
    expect(checkLines(result)).toHaveLength(2);
    expect(summaryLine(result)).toBe('1 failed, 1 passed: exit 77 (permission)');
  });

  it('fails a missing secret with 66, and a disabled version with 66 and the command that enables it', async () => {
    const missing = await doctor(['sm://doctor-demo/nope']);
    expect(missing.code, missing.stdout).toBe(EXIT.notFound);
    expect(missing.stdout).toContain(
      'FAIL  the secret nope does not exist in project doctor-demo\n      fix: check the name (gcloud secrets list --project=doctor-demo), or create it: secret-fetch push FILE sm://doctor-demo/nope --create\n',
    );
    const rotated = 'projects/doctor-demo/secrets/rotated';
    servers.secretManager.createSecret(rotated);
    servers.secretManager.addVersion(rotated, 'first');
    servers.secretManager.addVersion(rotated, 'second', { state: 'DISABLED' });
    const disabled = await doctor(['sm://doctor-demo/rotated', 'sm://doctor-demo/rotated#1']);
    expect(disabled.code, disabled.stdout).toBe(EXIT.notFound);
    expect(checkLines(disabled).slice(1)).toEqual([
      'ok    sm://doctor-demo/rotated: secretmanager.versions.access granted',
      'FAIL  sm://doctor-demo/rotated#latest: version 2 (latest) is disabled',
      'ok    sm://doctor-demo/rotated#1: version 1 exists and is enabled (not accessed)',
    ]);
    expect(disabled.stdout).toContain(
      '      fix: gcloud secrets versions enable 2 --secret=rotated --project=doctor-demo, or pin an enabled version with #N (latest never skips it)\n',
    );
  });

  it('with the accessor role alone, passes the secret and says the version could not be looked at', async () => {
    servers.secretManager.grant(SECRET, ['secretmanager.versions.access']);
    const result = await doctor(['sm://doctor-demo/db-password#1']);
    expect(result.code, result.stdout).toBe(0);
    expect(checkLines(result).slice(1)).toEqual([
      'ok    sm://doctor-demo/db-password: secretmanager.versions.access granted',
      'warn  sm://doctor-demo/db-password#1: not checked whether this version exists and is enabled: secretmanager.versions.get is not granted (the accessor role does not include it; only --refresh on latest or an alias needs it)',
    ]);
  });

  it('checks a berglas:// object like a gs:// one, then the key its metadata names', async () => {
    const result = await doctor([BERGLAS]);
    expect(result.code, result.stdout).toBe(0);
    expect(checkLines(result).slice(1)).toEqual([
      'ok    gs://vault: storage.objects.get granted',
      expect.stringMatching(
        /^ok {4}berglas:\/\/vault\/app\/berglas\.env: exists, generation [0-9]+, [0-9]+ bytes \(not downloaded\)$/,
      ),
      `ok    ${OTHER_KEY}: cloudkms.cryptoKeyVersions.useToDecrypt granted`,
    ]);
    expect(servers.kms.requests.map((r) => r.path)).toEqual([`/v1/${OTHER_KEY}:testIamPermissions`]);
    expect(servers.gcs.requests.some((r) => r.query.alt === 'media')).toBe(false);
  });

  it('fails a berglas object whose key is denied with 77 and the grant on that key', async () => {
    servers.kms.denyKey(OTHER_KEY);
    const result = await doctor([BERGLAS, 'gs://vault/app/other.env']);
    expect(result.code, result.stdout).toBe(EXIT.permission);
    expect(result.stdout).toContain(
      `FAIL  ${OTHER_KEY}: cloudkms.cryptoKeyVersions.useToDecrypt is not granted to serviceAccount:SERVICE_ACCOUNT_EMAIL (or the key does not exist: KMS does not say which)\n` +
        '      fix: gcloud kms keys add-iam-policy-binding other --location=global --keyring=apps --project=demo --member=serviceAccount:SERVICE_ACCOUNT_EMAIL --role=roles/cloudkms.cryptoKeyDecrypter',
    );
    expect(summaryLine(result)).toBe('1 failed, 4 passed: exit 77 (permission)');
  });

  it('refuses a berglas object under another key than --kms-key (76), or without berglas metadata (65)', async () => {
    const pinned = await doctor([BERGLAS, '--kms-key', KEY]);
    expect(pinned.code, pinned.stdout).toBe(EXIT.integrity);
    expect(pinned.stdout).toContain(
      `FAIL  ${BERGLAS} names the key ${OTHER_KEY} in its berglas-kms-key metadata, not the --kms-key ${KEY}\n`,
    );
    const plain = await doctor(['berglas://vault/app/other.env']);
    expect(plain.code, plain.stdout).toBe(EXIT.format);
    expect(plain.stdout).toContain(
      'FAIL  berglas://vault/app/other.env is not a berglas secret: its metadata has no berglas-kms-key\n',
    );
  });

  it('reports a failing service as unavailable (69) once the retries run out', async () => {
    // Retries last as long as --timeout allows: a storm that outlasts it fails the check.
    servers.gcs.failNext({ path: '/b/vault/iam/testPermissions' }, Array(1000).fill({ status: 503 }));
    const result = await doctor([OBJECT, '--timeout', '2s']);
    expect(result.code, result.stdout).toBe(EXIT.unavailable);
    expect(result.stdout).toMatch(
      /^FAIL {2}Cloud Storage answered 503 for gs:\/\/vault after \d+ attempts; no time left within the --timeout of 2s\n/m,
    );
    expect(result.stdout).toMatch(/^ok {4}gs:\/\/vault\/app\/secrets\.cfg\.enc: exists/m);
  });

  it('prints one JSON object per check with --log-format json', async () => {
    servers.kms.denyKey(KEY);
    const result = await doctor([OBJECT, '--kms-key', KEY, '--log-format', 'json']);
    expect(result.code).toBe(EXIT.permission);
    const lines = result.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.check, l.status])).toEqual([
      ['credentials', 'ok'],
      ['bucket', 'ok'],
      ['object', 'ok'],
      ['kms-key', 'fail'],
    ]);
    expect(lines[3]).toMatchObject({
      resource: KEY,
      exitCode: EXIT.permission,
      fix: expect.stringMatching(/^gcloud kms keys add-iam-policy-binding web --location=global --keyring=apps /),
    });
    expect(lines[2].details).toEqual({ generation: expect.stringMatching(/^[0-9]+$/), size: expect.any(String) });
  });

  it('prints its help with an example and the exit codes, and exits 0', async () => {
    const result = await doctor(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: secret-fetch doctor \[SOURCE\.\.\.\]/);
    expect(result.stdout).toContain('Examples:\n  secret-fetch doctor gs://vault/app.cfg.enc');
    expect(result.stdout).toMatch(/^ {2}77 {2}permission: /m);
    const main = await runBinary(['--help']);
    expect(main.stdout).toMatch(/^ {7}secret-fetch doctor \[SOURCE\.\.\.\]/m);
  });

  it('refuses a bad key name as a usage error, in one line, before checking anything', async () => {
    const result = await doctor([OBJECT, '--kms-key', 'web']);
    expectFailure(result, EXIT.usage, /^secret-fetch: error: --kms-key web is not a key name/);
    expect(servers.gcs.requests).toEqual([]);
  });
});
