// Certificates are always checked (src/google/rest.ts), and --ca-file / SECRET_FETCH_CA_FILE is
// the one way to trust a private CA. Cloud Storage sits behind a TLS front whose certificate a CA
// made here signs (test/servers/tls.ts); the token comes from the metadata test server, as on GKE,
// so the binary holds a real bearer token that must never reach a server it does not trust.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { type MetadataServer, startMetadataServer } from '../servers/metadata.ts';
import { startTestServers } from '../servers/start.ts';
import { makeTestCertificates, startTlsFront, type TlsFront } from '../servers/tls.ts';
import { runBinary } from './harness.ts';

let servers: Awaited<ReturnType<typeof startTestServers>>;
let metadata: MetadataServer;
let dir: string;
let front: TlsFront;
let endpoint: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secret-fetch-tls-'));
  [servers, metadata] = await Promise.all([startTestServers(), startMetadataServer()]);
  front = await startTlsFront(new URL(servers.gcs.url).host, makeTestCertificates(dir));
  endpoint = front.url;
  servers.gcs.putObject('vault', 'tls/app.env', 'GREETING=hello\n');
});
afterAll(async () => {
  await front?.close();
  await Promise.all([servers?.close(), metadata?.close()]);
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  servers.gcs.requests.length = 0;
});

const env = (extra: Record<string, string> = {}) => ({
  SECRET_FETCH_STORAGE_ENDPOINT: endpoint,
  GCE_METADATA_HOST: metadata.host,
  METADATA_SERVER_DETECTION: 'ping-only',
  ...extra,
});
const ARGS = ['--source', 'gs://vault/tls/app.env', '--env', '--', 'sh', '-c', 'echo "$GREETING"'];

describe('TLS to the services', () => {
  it('refuses a server whose certificate it cannot trust, even with NODE_TLS_REJECT_UNAUTHORIZED=0: 69, no token sent', async () => {
    for (const extra of [{}, { NODE_TLS_REJECT_UNAUTHORIZED: '0' }] as Record<string, string>[]) {
      const result = await runBinary(ARGS, { env: env(extra) });
      expect(result.code, result.stderr).toBe(EXIT.unavailable);
      expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(
        /^secret-fetch: error: could not download gs:\/\/vault\/tls\/app\.env: the server's TLS certificate is not trusted \([A-Z_]+\), so nothing was sent to it \(.*--ca-file PATH/,
      );
      expect(result.stdout).toBe('');
      expect(servers.gcs.requests).toHaveLength(0);
    }
  });

  it('trusts the CA given with --ca-file or SECRET_FETCH_CA_FILE, and sends the token there', async () => {
    const ca = join(dir, 'ca.pem');
    for (const [args, extra] of [
      [['--ca-file', ca], {}],
      [[], { SECRET_FETCH_CA_FILE: ca }],
    ] as const) {
      servers.gcs.requests.length = 0;
      const result = await runBinary([...args, ...ARGS], { env: env(extra) });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toBe('hello\n');
      expect(servers.gcs.requests.length).toBeGreaterThan(0);
      for (const request of servers.gcs.requests)
        expect(request.headers.authorization).toBe(`Bearer ${metadata.token}`);
    }
  });

  it('the operator commands take it too: show', async () => {
    const untrusted = await runBinary(['show', 'gs://vault/tls/app.env'], { env: env() });
    expect(untrusted.code, untrusted.stderr).toBe(EXIT.unavailable);
    expect(untrusted.stderr).toMatch(/the server's TLS certificate is not trusted/);
    const trusted = await runBinary(['show', '--ca-file', join(dir, 'ca.pem'), 'gs://vault/tls/app.env'], {
      env: env(),
    });
    expect(trusted.code, trusted.stderr).toBe(0);
    expect(trusted.stdout).toContain('GREETING');
  });

  it('--verbose names the CA file', async () => {
    const result = await runBinary(['--verbose', '--ca-file', join(dir, 'ca.pem'), ...ARGS], { env: env() });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/trusting 1 CA certificate\(s\) from .*ca\.pem besides the system roots/);
  });

  it('refuses a --ca-file that is missing, or holds no certificate, before any request (64)', async () => {
    writeFileSync(join(dir, 'not-pem.txt'), 'hello\n');
    for (const [file, message] of [
      [join(dir, 'missing.pem'), /--ca-file .*missing\.pem cannot be read \(ENOENT\)/],
      [join(dir, 'not-pem.txt'), /--ca-file .*not-pem\.txt holds no PEM certificate/],
    ] as const) {
      const result = await runBinary(['--ca-file', file, ...ARGS], { env: env() });
      expect(result.code, result.stderr).toBe(EXIT.usage);
      expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(message);
      expect(servers.gcs.requests).toHaveLength(0);
    }
  });
});
