// Credentials from the metadata server, as on GKE (Workload Identity), Cloud Run and GCE: the
// built binary's real credential path (google-auth-library, gcp-metadata) against the test
// metadata server, while Cloud Storage and KMS are the loopback test servers, reached with
// credentials thanks to the SECRET_FETCH_TEST_LOOPBACK_AUTH test hook.

import { generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { type MetadataServer, startMetadataServer, TOKEN_PATH } from '../servers/metadata.ts';
import { startTestServers } from '../servers/start.ts';
import { expectNoCanary, filesIn, KEY, type Result, runBinary, tmpfsDir } from './harness.ts';

let servers: Awaited<ReturnType<typeof startTestServers>>;
let metadata: MetadataServer;
let out: { dir: string; cleanup: () => void };

beforeAll(async () => {
  [servers, metadata] = await Promise.all([startTestServers(), startMetadataServer()]);
  servers.kms.createKey(KEY);
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app.env.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from('GREETING=hello\n')),
  );
});
afterAll(async () => Promise.all([servers?.close(), metadata?.close()]));
beforeEach(() => {
  out = tmpfsDir();
  servers.gcs.reset();
  servers.kms.reset();
  metadata.reset();
});
afterEach(() => out.cleanup());

/** The real credential path: nothing but the environment says where the metadata server is. */
function cloudEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...servers.env,
    SECRET_FETCH_TEST_LOOPBACK_AUTH: '1',
    GCE_METADATA_HOST: metadata.host,
    // Probe the metadata server even on a machine whose BIOS says GCE, so every run here is alike.
    METADATA_SERVER_DETECTION: 'ping-only',
    // Else google-auth-library asks `gcloud` for a project id, which takes seconds where it is installed.
    GOOGLE_CLOUD_PROJECT: 'test-project',
    ...extra,
  };
}

const args = () => [
  '--source',
  'gs://vault/app.env.enc',
  '--kms-key',
  KEY,
  '--out',
  join(out.dir, 'app.env'),
  '--env',
  '--',
  'sh',
  '-c',
  'echo "greeting=$GREETING"',
];

const RETRY_LINE =
  /^secret-fetch: warning: attempt (\d+) to get an access token from the metadata server at http:\/\/127\.0\.0\.1:\d+ failed \((.*)\); retrying in \d+ ms$/;

/** Splits stderr into retry warnings (checked for their shape) and the rest. */
function split(result: Result): { retries: string[]; rest: string[] } {
  const lines = result.stderr.split('\n').filter(Boolean);
  const retries = lines.filter((l) => l.includes(': warning: attempt '));
  for (const line of retries) expect(line).toMatch(RETRY_LINE);
  return { retries, rest: lines.filter((l) => !retries.includes(l)) };
}

const bearer = () => `Bearer ${metadata.token}`;

describe('credentials from the metadata server', () => {
  it('fetches one access token and sends it to Cloud Storage and Cloud KMS', async () => {
    const result = await runBinary(args(), { env: cloudEnv() });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('greeting=hello\n');
    expect(servers.gcs.requests.length).toBeGreaterThanOrEqual(1);
    for (const request of [...servers.gcs.requests, ...servers.kms.requests]) {
      expect(request.headers.authorization, `${request.method} ${request.path}`).toBe(bearer());
    }
    expect(servers.kms.requests).toHaveLength(1);
    // One token, shared by both clients, asked for with the cloud-platform scope and the flavor header.
    const tokens = metadata.requests.filter((r) => r.path === TOKEN_PATH);
    expect(tokens).toHaveLength(1);
    expect(tokens[0]?.headers['metadata-flavor']).toBe('Google');
    expect(tokens[0]?.query.scopes?.split(',')).toContain('https://www.googleapis.com/auth/cloud-platform');
  });

  it('waits for a metadata server that is not ready: refused, then 503, then 404 until the identity is ready', async () => {
    // The first two requests (the library's probes) are dropped, as by a server not listening yet.
    metadata.failNext({}, ['reset', 'reset']);
    // Then the token endpoint fails: 503s (gcp-metadata retries those itself, up to 3 times), then
    // the 404 that GKE's Workload Identity server answers until the pod's identity is ready.
    metadata.failNext({ path: TOKEN_PATH }, [...Array(4).fill({ status: 503 }), { status: 404 }, { status: 404 }]);
    const result = await runBinary(args(), { env: cloudEnv() });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('greeting=hello\n');
    const { retries, rest } = split(result);
    expect(rest).toEqual([]);
    const reasons = retries.map((line) => RETRY_LINE.exec(line)?.[2]);
    expect(reasons).toEqual([
      `no metadata server answered at http://${metadata.host}`,
      `no metadata server answered at http://${metadata.host}`,
      `the metadata server at http://${metadata.host} answered 503 for an access token`,
      `the metadata server at http://${metadata.host} has no access token for this workload yet (404)`,
      `the metadata server at http://${metadata.host} has no access token for this workload yet (404)`,
    ]);
    expect(retries.map((line) => Number(RETRY_LINE.exec(line)?.[1]))).toEqual([1, 2, 3, 4, 5]);
    expect(metadata.pendingFaults).toBe(0);
    for (const request of [...servers.gcs.requests, ...servers.kms.requests]) {
      expect(request.headers.authorization).toBe(bearer());
    }
  });

  it('never ready (nothing listening): 69 within --timeout, naming the metadata server and the fix', async () => {
    const port = await closedPort();
    const result = await runBinary([...args().slice(0, 6), '--timeout', '3s', ...args().slice(6)], {
      env: cloudEnv({ GCE_METADATA_HOST: `127.0.0.1:${port}` }),
    });
    expect(result.code, result.stderr).toBe(EXIT.unavailable);
    expect(result.stdout).toBe('');
    const { retries, rest } = split(result);
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(rest).toHaveLength(1);
    expect(rest[0]).toMatch(
      new RegExp(
        `^secret-fetch: error: .*metadata server (answered )?at http://127\\.0\\.0\\.1:${port}.* after \\d+ attempts?.*--timeout of 3s.* ` +
          `\\(on GKE, check that Workload Identity is enabled on the node pool .*GOOGLE_APPLICATION_CREDENTIALS, or raise --timeout\\)$`,
      ),
    );
    expect(servers.gcs.requests).toEqual([]);
    expect(filesIn(out.dir)).toEqual([]);
  });

  it('never ready (the token path answers 404 for ever): 69 within --timeout, saying so', async () => {
    metadata.failNext({ path: TOKEN_PATH }, Array(500).fill({ status: 404 }));
    const result = await runBinary([...args().slice(0, 6), '--timeout', '2s', ...args().slice(6)], {
      env: cloudEnv(),
    });
    expect(result.code, result.stderr).toBe(EXIT.unavailable);
    const { retries, rest } = split(result);
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(rest).toHaveLength(1);
    expect(rest[0]).toMatch(
      /^secret-fetch: error: .*the metadata server at http:\/\/127\.0\.0\.1:\d+ has no access token for this workload yet \(404\) after \d+ attempts?.*--timeout of 2s.*Workload Identity/,
    );
    expect(servers.gcs.requests).toEqual([]);
  });

  it('a token refused with 403 is not retried: 77', async () => {
    metadata.failNext({ path: TOKEN_PATH }, [{ status: 403 }]);
    const result = await runBinary(args(), { env: cloudEnv() });
    expect(result.code, result.stderr).toBe(EXIT.permission);
    expect(result.stderr).toMatch(
      /^secret-fetch: error: the metadata server at http:\/\/127\.0\.0\.1:\d+ refused an access token \(403\) \(check the service account this runs as, and its access scopes\)\n$/,
    );
  });

  it('a token answer that is not a token (not JSON, or JSON without access_token): retried, then 69 naming the server', async () => {
    for (const body of ['<html>captive portal</html>', { unexpected: true }]) {
      metadata.reset();
      metadata.failNext(
        { path: TOKEN_PATH },
        Array(500).fill({ status: 200, body, headers: { 'metadata-flavor': 'Google' } }),
      );
      const result = await runBinary(['--timeout', '2s', ...args()], { env: cloudEnv() });
      expect(result.code, result.stderr).toBe(EXIT.unavailable);
      const { rest } = split(result);
      expect(rest).toHaveLength(1);
      expect(rest[0]).toMatch(
        /the metadata server at http:\/\/127\.0\.0\.1:\d+ answered with something that is not an access token/,
      );
      expect(rest[0]).not.toContain('captive');
    }
  });
});

describe('no credentials at all', () => {
  it('off Google Cloud, with no credentials file and no metadata server expected: 77 at once', async () => {
    const result = await runBinary(args(), {
      env: cloudEnv({ GCE_METADATA_HOST: '', METADATA_SERVER_DETECTION: 'none' }),
    });
    expect(result.code).toBe(EXIT.permission);
    expect(result.stderr).toBe(
      'secret-fetch: error: no Google credentials: GOOGLE_APPLICATION_CREDENTIALS is not set and no metadata server ' +
        'answered at http://169.254.169.254 (run on Google Cloud as a service account (GKE Workload Identity, Cloud Run, GCE), ' +
        'set GOOGLE_APPLICATION_CREDENTIALS to a credentials file, or set GCE_METADATA_HOST to wait for a metadata server)\n',
    );
    expect(metadata.requests).toEqual([]);
  });

  it('a GOOGLE_APPLICATION_CREDENTIALS file that is not credentials: 77 naming the file, never its content', async () => {
    const canary = `canary-${randomBytes(8).toString('hex')}`;
    const file = join(out.dir, 'key.json');
    writeFileSync(file, `{"type": "service_account", "private_key": "${canary}`);
    const result = await runBinary(args(), { env: cloudEnv({ GOOGLE_APPLICATION_CREDENTIALS: file }) });
    expect(result.code).toBe(EXIT.permission);
    expect(result.stderr).toBe(
      `secret-fetch: error: cannot load the credentials in ${file} (GOOGLE_APPLICATION_CREDENTIALS) ` +
        '(check that the file exists, is readable, and holds a service account key or an external account configuration)\n',
    );
    expectNoCanary(result, [canary]);
    expect(metadata.requests).toEqual([]);
  });

  it('refuses the test hook with an endpoint off the loopback interface', async () => {
    const result = await runBinary(args(), {
      env: cloudEnv({ STORAGE_EMULATOR_HOST: 'http://storage.example.com:8080' }),
    });
    expect(result.code).toBe(EXIT.usage);
    expect(result.stderr).toMatch(
      /^secret-fetch: error: SECRET_FETCH_TEST_LOOPBACK_AUTH would send credentials in clear text to --storage-endpoint http:\/\/storage\.example\.com:8080 /,
    );
  });
});

/** A loopback port nothing listens on (connections to it are refused). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('a service-account key file (GOOGLE_APPLICATION_CREDENTIALS)', () => {
  it('signs its own JWT for each service: no OAuth token exchange, so no connection to the token endpoint', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const tokenRequests: string[] = [];
    const tokenServer = createHttpServer((req, res) => {
      tokenRequests.push(`${req.method} ${req.url}`);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ access_token: 'ya29.exchanged', expires_in: 3600, token_type: 'Bearer' }));
    });
    await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve));
    try {
      const email = 'fetcher@test-project.iam.gserviceaccount.com';
      const keyFile = join(out.dir, 'key.json');
      writeFileSync(
        keyFile,
        JSON.stringify({
          type: 'service_account',
          project_id: 'test-project',
          private_key_id: 'key-1',
          private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
          client_email: email,
          client_id: '1',
          token_uri: `http://127.0.0.1:${(tokenServer.address() as { port: number }).port}/token`,
        }),
      );
      const result = await runBinary(args(), {
        env: { ...servers.env, SECRET_FETCH_TEST_LOOPBACK_AUTH: '1', GOOGLE_APPLICATION_CREDENTIALS: keyFile },
      });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toBe('greeting=hello\n');
      expect(tokenRequests).toEqual([]);
      const requests = [...servers.gcs.requests, ...servers.kms.requests];
      expect(requests.length).toBeGreaterThanOrEqual(2);
      for (const request of requests) {
        const jwt = /^Bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/.exec(String(request.headers.authorization));
        expect(jwt, `${request.method} ${request.path}`).not.toBeNull();
        const [, header, payload, signature] = jwt as unknown as [string, string, string, string];
        expect(JSON.parse(Buffer.from(header, 'base64url').toString())).toMatchObject({ alg: 'RS256', kid: 'key-1' });
        expect(JSON.parse(Buffer.from(payload, 'base64url').toString())).toMatchObject({
          iss: email,
          sub: email,
          scope: 'https://www.googleapis.com/auth/cloud-platform',
        });
        const signed = Buffer.from(`${header}.${payload}`);
        expect(verify('sha256', signed, publicKey, Buffer.from(signature, 'base64url'))).toBe(true);
      }
    } finally {
      await new Promise((resolve) => tokenServer.close(resolve));
    }
  });
});
