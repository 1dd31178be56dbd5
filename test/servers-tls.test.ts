// TLS for the test servers (test/servers/tls.ts): the front serves a test server's API over TLS
// with a certificate that the CA made at run time signs, on its own and behind the latency proxy
// (TLS end to end through it), and a client that does not trust that CA gets nothing.

import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GcsServer, startGcsServer } from './servers/gcs.ts';
import { type LatencyProxy, startLatencyProxy } from './servers/latency-proxy.ts';
import { makeTestCertificates, startTlsFront, type TestCertificates, type TlsFront } from './servers/tls.ts';

let dir: string;
let certificates: TestCertificates;
let gcs: GcsServer;
let front: TlsFront;
let proxy: LatencyProxy;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secret-fetch-servers-tls-'));
  certificates = makeTestCertificates(dir);
  gcs = await startGcsServer();
  gcs.putObject('vault', 'app.env', 'GREETING=hello\n');
  front = await startTlsFront(new URL(gcs.url).host, certificates);
  proxy = await startLatencyProxy(front.host, { delayMs: 5 });
});
afterAll(async () => {
  await Promise.all([proxy?.close(), front?.close(), gcs?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/** GET `path` over a fresh TLS connection; the status and body, or the error's code. */
function get(base: string, path: string, ca?: Buffer): Promise<{ status: number; body: string } | { code: string }> {
  return new Promise((resolve) => {
    const req = request(`${base}${path}`, { agent: false, ...(ca ? { ca } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ code: error.code ?? error.message }));
    req.end();
  });
}

describe('TLS front for the test servers', () => {
  it('serves the API over TLS with a certificate for 127.0.0.1 that the run-time CA signs', async () => {
    for (const base of [front.url, `https://${proxy.host}`]) {
      const answer = await get(base, '/download/storage/v1/b/vault/o/app.env?alt=media', certificates.ca);
      expect(answer).toEqual({ status: 200, body: 'GREETING=hello\n' });
    }
    expect(gcs.requests.filter((r) => r.path.endsWith('/o/app.env'))).toHaveLength(2);
  });

  it('is refused by a client that does not trust the CA, and passes no request on', async () => {
    gcs.requests.length = 0;
    const answer = await get(front.url, '/download/storage/v1/b/vault/o/app.env?alt=media');
    expect(answer).toHaveProperty('code', expect.stringMatching(/CERT|SIGNATURE|ISSUER/));
    expect(gcs.requests).toHaveLength(0);
  });
});
