// Certificates are always checked (src/google-rest.ts), and --ca-file / SECRET_FETCH_CA_FILE is
// the one way to trust a private CA. Cloud Storage sits behind a TLS front whose certificate a CA
// made here signs; the token comes from the metadata test server, as on GKE, so the binary holds a
// real bearer token that must never reach a server it does not trust.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { type MetadataServer, startMetadataServer } from '../servers/metadata.ts';
import { startTestServers } from '../servers/start.ts';
import { runBinary } from './harness.ts';

let servers: Awaited<ReturnType<typeof startTestServers>>;
let metadata: MetadataServer;
let dir: string;
let front: Server;
let endpoint: string;

/** A CA and a certificate for 127.0.0.1 that it signs, made with the openssl CLI. */
function makeCertificates(): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=secret-fetch test CA',
  );
  openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'san.ext',
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secret-fetch-tls-'));
  makeCertificates();
  [servers, metadata] = await Promise.all([startTestServers(), startMetadataServer()]);
  const upstream = Number(new URL(servers.gcs.url).port);
  front = createTlsServer(
    { key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.pem')) },
    (socket) => {
      const up = connect(upstream, '127.0.0.1');
      socket.pipe(up).pipe(socket);
      socket.on('error', () => up.destroy());
      up.on('error', () => socket.destroy());
    },
  );
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  endpoint = `https://127.0.0.1:${(front.address() as { port: number }).port}`;
  servers.gcs.putObject('vault', 'tls/app.env', 'GREETING=hello\n');
});
afterAll(async () => {
  front?.close();
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
