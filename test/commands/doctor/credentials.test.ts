// Credential detection through the real google-auth-library, offline: key files written here with
// throwaway keys, GOOGLE_APPLICATION_CREDENTIALS pointing at them, and no metadata server
// (METADATA_SERVER_DETECTION=none, set for every test in vitest.config.ts).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderCheck, renderCheckJson } from '../../../src/commands/doctor/checklist.ts';
import { type CredentialsLookup, credentialsCheck, findCredentials } from '../../../src/commands/doctor/credentials.ts';
import { EXIT, PermissionError } from '../../../src/errors.ts';

let dir: string;
const saved = { ...process.env };
const VARIABLES = ['GOOGLE_APPLICATION_CREDENTIALS', 'GOOGLE_CLOUD_PROJECT', 'GCLOUD_PROJECT', 'CLOUDSDK_CONFIG'];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'doctor-credentials-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  for (const name of VARIABLES) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
});

/** Points ADC at `content` only: no gcloud config directory, no project variable. */
function useCredentials(content: string | undefined): string {
  for (const name of VARIABLES) delete process.env[name];
  // An empty gcloud config directory: the well-known ADC file of this machine's user is not read.
  process.env.CLOUDSDK_CONFIG = mkdtempSync(join(dir, 'gcloud-'));
  const path = join(dir, `key-${randomBytes(4).toString('hex')}.json`);
  if (content !== undefined) {
    writeFileSync(path, content);
    process.env.GOOGLE_APPLICATION_CREDENTIALS = path;
  }
  return path;
}

function serviceAccountKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const keyId = randomBytes(20).toString('hex');
  const json = JSON.stringify({
    type: 'service_account',
    project_id: 'doctor-demo',
    private_key_id: keyId,
    private_key: pem,
    client_email: 'web@doctor-demo.iam.gserviceaccount.com',
    client_id: '1234567890',
    token_uri: 'https://oauth2.googleapis.com/token',
  });
  // A line from the middle of the key, which would show up if any of it were printed.
  const keyLine = pem.split('\n')[5] as string;
  return { json, keyId, keyLine };
}

describe('findCredentials', () => {
  it('reports a service account key file: kind, file, email, project, member', async () => {
    const key = serviceAccountKey();
    const path = useCredentials(key.json);
    const lookup = await findCredentials(process.env);
    expect(lookup.found).toEqual({
      kind: 'service account key',
      source: `GOOGLE_APPLICATION_CREDENTIALS=${path}`,
      email: 'web@doctor-demo.iam.gserviceaccount.com',
      project: 'doctor-demo',
      member: 'serviceAccount:web@doctor-demo.iam.gserviceaccount.com',
    });
    const check = credentialsCheck(lookup, ['Cloud Storage at https://storage.googleapis.com'], '');
    const printed = renderCheck(check) + renderCheckJson(check);
    expect(printed).not.toContain(key.keyLine);
    expect(printed).not.toContain(key.keyId);
    expect(printed).not.toContain('PRIVATE KEY');
  });

  it('reports gcloud user credentials, whose file names no email: grants get a placeholder', async () => {
    useCredentials(
      JSON.stringify({
        type: 'authorized_user',
        client_id: 'id.apps.googleusercontent.com',
        client_secret: 'not-a-real-secret',
        refresh_token: 'not-a-real-token',
      }),
    );
    process.env.GOOGLE_CLOUD_PROJECT = 'from-the-variable';
    const { found } = await findCredentials(process.env);
    expect(found?.kind).toBe('gcloud user credentials (application-default login)');
    expect(found?.email).toBeUndefined();
    expect(found?.project).toBe('from-the-variable');
    expect(found?.member).toBe('user:USER_EMAIL');
  });

  it('reports an external account (Workload Identity Federation) by the service account it impersonates', async () => {
    writeFileSync(join(dir, 'token'), 'subject-token');
    useCredentials(
      JSON.stringify({
        type: 'external_account',
        audience: '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/gh',
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        token_url: 'https://sts.googleapis.com/v1/token',
        credential_source: { file: join(dir, 'token') },
        service_account_impersonation_url:
          'https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/wif@doctor-demo.iam.gserviceaccount.com:generateAccessToken',
      }),
    );
    process.env.GOOGLE_CLOUD_PROJECT = 'doctor-demo';
    const { found } = await findCredentials(process.env);
    expect(found?.kind).toBe('external account (Workload Identity Federation)');
    expect(found?.member).toBe('serviceAccount:wif@doctor-demo.iam.gserviceaccount.com');
  });

  it('finds none without a key file, a gcloud login or a metadata server', async () => {
    useCredentials(undefined);
    const lookup = await findCredentials(process.env);
    expect(lookup.found).toBeUndefined();
    if (lookup.found !== undefined) return;
    expect(lookup.broken).toBe(false);
    expect(lookup.problem.exitCode).toBe(EXIT.permission);
    expect(lookup.problem.message).toMatch(/^no credentials found/);
  });

  it('says a GOOGLE_APPLICATION_CREDENTIALS file is missing', async () => {
    const path = useCredentials(undefined);
    process.env.GOOGLE_APPLICATION_CREDENTIALS = path;
    const lookup = await findCredentials(process.env);
    expect(lookup.found === undefined && lookup.broken && lookup.problem.message).toBe(
      `GOOGLE_APPLICATION_CREDENTIALS=${path} does not exist`,
    );
  });

  it('says a broken key file is unusable without quoting any of it', async () => {
    const canary = `canary-${randomBytes(6).toString('hex')}`;
    const path = useCredentials(`{"type":"service_account","private_key":"${canary}`);
    const lookup = await findCredentials(process.env);
    expect(lookup.found).toBeUndefined();
    if (lookup.found !== undefined) return;
    expect(lookup.problem.line).toContain(`GOOGLE_APPLICATION_CREDENTIALS=${path} is not a credentials file`);
    expect(lookup.problem.line).not.toContain(canary);
  });
});

describe('credentialsCheck', () => {
  const found: CredentialsLookup = {
    found: {
      kind: 'service account key',
      source: 'GOOGLE_APPLICATION_CREDENTIALS=/k.json',
      email: 'web@p.iam.gserviceaccount.com',
      project: 'p',
      member: 'serviceAccount:web@p.iam.gserviceaccount.com',
    },
  };
  const none: CredentialsLookup = {
    found: undefined,
    problem: new PermissionError('no credentials found', 'run gcloud auth application-default login'),
    broken: false,
  };
  const broken: CredentialsLookup = {
    found: undefined,
    problem: new PermissionError('GOOGLE_APPLICATION_CREDENTIALS=/k.json does not exist', 'point it at a key'),
    broken: true,
  };
  const idle = 'Cloud Storage at http://127.0.0.1:1 is reached over http://, without credentials';

  it('names kind, source, email, project and what uses them', () => {
    const check = credentialsCheck(found, ['Cloud KMS at https://cloudkms.googleapis.com'], idle);
    expect(check.status).toBe('ok');
    expect(check.message).toBe(
      'credentials: service account key from GOOGLE_APPLICATION_CREDENTIALS=/k.json: web@p.iam.gserviceaccount.com, project p; used for Cloud KMS at https://cloudkms.googleapis.com',
    );
    expect(check.details).toEqual({
      kind: 'service account key',
      source: 'GOOGLE_APPLICATION_CREDENTIALS=/k.json',
      email: 'web@p.iam.gserviceaccount.com',
      project: 'p',
    });
  });

  it('says plainly when nothing uses them (http:// endpoints)', () => {
    expect(credentialsCheck(found, [], idle).message).toMatch(/; not used here \(Cloud Storage at http:.*\)$/);
    const check = credentialsCheck(none, [], idle);
    expect(check.status).toBe('ok');
    expect(check.message).toBe(`credentials: none found, and none needed (${idle})`);
  });

  it('fails with 77 and the way to get credentials when a service needs them', () => {
    const check = credentialsCheck(none, ['Cloud Storage at https://storage.googleapis.com'], idle);
    expect(check).toMatchObject({
      status: 'fail',
      exitCode: EXIT.permission,
      fix: 'run gcloud auth application-default login',
    });
  });

  it('warns about a broken key file nothing needs, and fails when something does', () => {
    expect(credentialsCheck(broken, [], idle)).toMatchObject({ status: 'warn', fix: 'point it at a key' });
    expect(credentialsCheck(broken, ['Cloud KMS at https://cloudkms.googleapis.com'], idle).status).toBe('fail');
  });
});
