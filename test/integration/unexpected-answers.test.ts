// Answers no Google API gives: malformed HTTP from whatever sits at the endpoint, and Secret
// Manager's ABORTED (a concurrency conflict, retried as Google advises). Each ends with a
// documented code and a line naming the service, never 70 "internal error".

import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { startTestServers } from '../servers/start.ts';
import { runBinary } from './harness.ts';

/** A TCP server that answers every request with `answer`, then closes. */
async function rawServer(answer: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((socket) => {
    socket.once('data', () => socket.end(answer));
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

describe('malformed HTTP at the Cloud Storage endpoint', () => {
  for (const [what, answer] of [
    ['a content-length that is not a number', 'HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}'],
    [
      'headers over the parser limit',
      `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(100_000)}\r\nContent-Length: 2\r\n\r\n{}`,
    ],
  ] as const) {
    it(`${what}: 69, one line naming the call`, async () => {
      const server = await rawServer(answer);
      try {
        const result = await runBinary(['--source', 'gs://vault/app/a.env', '--env', '--', 'true'], {
          env: { STORAGE_EMULATOR_HOST: server.url },
        });
        expect(result.code, result.stderr).toBe(EXIT.unavailable);
        expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
        expect(result.stderr).toMatch(
          /^secret-fetch: error: could not download gs:\/\/vault\/app\/a\.env: the answer is not valid HTTP \(HPE_[A-Z_]+\)/,
        );
      } finally {
        await server.close();
      }
    });
  }
});

describe("Secret Manager's ABORTED", () => {
  let servers: Awaited<ReturnType<typeof startTestServers>>;
  beforeAll(async () => {
    servers = await startTestServers();
  });
  afterAll(async () => servers?.close());

  it('is retried like any transient failure, and the run succeeds', async () => {
    const secret = 'projects/demo-project/secrets/aborted';
    servers.secretManager.createSecret(secret);
    servers.secretManager.addVersion(secret, 'GREETING=hello\n');
    servers.secretManager.failNext({ path: /:access$/ }, [
      { status: 409, body: { error: { code: 409, message: 'the call was aborted', status: 'ABORTED' } } },
    ]);
    const result = await runBinary(
      ['--source', 'sm://demo-project/aborted', '--format', 'dotenv', '--env', '--', 'sh', '-c', 'echo "$GREETING"'],
      { env: servers.env },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('hello\n');
    expect(result.stderr).toMatch(
      /^secret-fetch: warning: attempt 1 to access sm:\/\/demo-project\/aborted.* failed \(.*ABORTED.*\); retrying/,
    );
  });
});
