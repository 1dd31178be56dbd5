// A connection opened ahead (preconnect): the first request to its origin goes over it, it is
// checked as the request would check its own (an untrusted certificate still fails the request),
// and an unused one never holds the process open.

import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type ClientRequest, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { authHeaders, preconnect, restRequest } from '../../src/google/rest.ts';

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A server that answers every request with the number of the connection it came on. */
async function listen(server: Server): Promise<{ url: string; connections: Socket[] }> {
  const connections: Socket[] = [];
  server.on('connection', (socket: Socket) => connections.push(socket));
  server.on('secureConnection', (socket: Socket) => connections.push(socket));
  server.on('request', (req, res) => {
    const n = connections.indexOf(req.socket) + 1;
    res.end(String(n));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  servers.push(server);
  return {
    url: `${'cert' in server ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
  };
}

describe('preconnect', () => {
  it('opens the connection at once, and the first request goes over it', async () => {
    const { url, connections } = await listen(createServer());
    await preconnect(url);
    await expect.poll(() => connections.length).toBe(1);
    const response = await restRequest(`${url}/v1/x`, { method: 'GET', headers: {} });
    expect(response.body.toString()).toBe('1');
    expect(connections).toHaveLength(1);
  });

  it('hands a connection out once: a second request opens its own', async () => {
    const { url, connections } = await listen(createServer());
    await preconnect(url);
    await restRequest(`${url}/a`, { method: 'GET', headers: { connection: 'close' } });
    const second = await restRequest(`${url}/b`, { method: 'GET', headers: { connection: 'close' } });
    expect(second.body.toString()).toBe('2');
    expect(connections).toHaveLength(2);
  });

  it('checks the certificate as the request would: an untrusted server still fails the request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-preconnect-'));
    try {
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'].concat(
          ['-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=127.0.0.1'],
          ['-addext', 'subjectAltName=IP:127.0.0.1'],
        ),
        { cwd: dir, stdio: 'pipe' },
      );
      const tls = { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
      const server = createHttpsServer(tls);
      let requests = 0;
      server.on('request', () => requests++);
      const { url } = await listen(server);
      await preconnect(url);
      const error = await restRequest(`${url}/secret`, {
        method: 'GET',
        headers: { authorization: 'Bearer t' },
      }).catch((e: unknown) => e);
      expect((error as { code?: string }).code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
      expect(requests).toBe(0);

      // With the certificate trusted (--ca-file), the connection opened ahead is used.
      await preconnect(url, [tls.cert.toString()]);
      const trusted = await restRequest(`${url}/ok`, { method: 'GET', headers: {}, ca: [tls.cert.toString()] });
      expect(trusted.status).toBe(200);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never holds the process open when no request uses it', async () => {
    const { url, connections } = await listen(createServer());
    const rest = join(import.meta.dirname, '..', '..', 'src', 'google', 'rest.ts');
    const child = spawn(process.execPath, [
      '--input-type=module',
      '-e',
      `const m = await import(${JSON.stringify(rest)}); await m.preconnect(${JSON.stringify(url)});`,
    ]);
    const [code] = (await Promise.race([
      once(child, 'exit'),
      new Promise((_, reject) => setTimeout(() => reject(new Error('the process stayed')), 10_000)),
    ])) as [number | null];
    expect(code).toBe(0);
    expect(connections.length).toBeLessThanOrEqual(1);
  });
});

describe('authHeaders with Application Default Credentials', () => {
  it('tries again after a failed lookup instead of keeping the failure for the rest of the run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-adc-'));
    const saved = process.env.GOOGLE_APPLICATION_CREDENTIALS;
    try {
      const keyFile = join(dir, 'key.json');
      process.env.GOOGLE_APPLICATION_CREDENTIALS = keyFile;
      const headers = authHeaders('adc');
      // The key file is not there yet (a volume still mounting): this attempt fails.
      await expect(headers('https://storage.googleapis.com/')).rejects.toThrow();
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      writeFileSync(
        keyFile,
        JSON.stringify({
          type: 'service_account',
          private_key_id: 'k',
          private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
          client_email: 'a@p.iam.gserviceaccount.com',
        }),
      );
      // The retry policy's next attempt finds it.
      expect((await headers('https://storage.googleapis.com/')).authorization).toMatch(
        /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/,
      );
    } finally {
      if (saved === undefined) delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
      else process.env.GOOGLE_APPLICATION_CREDENTIALS = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('restRequest wipes what it read', () => {
  /** Holds every chunk of every answer restRequest reads: the very Buffers its listener gets. */
  function holdChunks(): { chunks: Buffer[]; stop: () => void } {
    const chunks: Buffer[] = [];
    const onStart = (message: unknown) => {
      const { request } = message as { request: ClientRequest };
      request.on('response', (res: IncomingMessage) => res.on('data', (chunk: Buffer) => chunks.push(chunk)));
    };
    channel('http.client.request.start').subscribe(onStart);
    return { chunks, stop: () => channel('http.client.request.start').unsubscribe(onStart) };
  }
  const zeroed = (chunks: Buffer[]) => chunks.every((chunk) => chunk.every((byte) => byte === 0));
  /** A loopback server answering with `answer` alone (not listen()'s connection numbers). */
  async function serve(answer: (res: ServerResponse) => void): Promise<string> {
    const server = createServer((_req, res) => answer(res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('an attempt abandoned mid-answer leaves no byte of it in the chunks read so far', async () => {
    const url = await serve((res) => {
      res.writeHead(200, { 'content-length': '64' });
      res.write('SECRET-FIRST-HALF-'.padEnd(32, 'x')); // then nothing: the attempt is abandoned
    });
    const held = holdChunks();
    try {
      const abandon = new AbortController();
      const answer = restRequest(`${url}/v1/secret`, { method: 'GET', headers: {}, signal: abandon.signal });
      while (held.chunks.length === 0) await new Promise((r) => setTimeout(r, 10));
      abandon.abort();
      await expect(answer).rejects.toThrow();
      expect(Buffer.concat(held.chunks).length).toBe(32);
      expect(zeroed(held.chunks)).toBe(true);
    } finally {
      held.stop();
    }
  });

  it('a whole answer is copied out, then the chunks it came in are zeroed', async () => {
    const url = await serve((res) => res.end('SECRET-WHOLE-ANSWER'));
    const held = holdChunks();
    try {
      const answer = await restRequest(`${url}/v1/secret`, { method: 'GET', headers: {} });
      expect(answer.body.toString()).toBe('SECRET-WHOLE-ANSWER');
      expect(held.chunks.length).toBeGreaterThan(0);
      expect(zeroed(held.chunks)).toBe(true);
    } finally {
      held.stop();
    }
  });
});
