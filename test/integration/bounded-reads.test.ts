// Every answer is capped as it streams (src/google-rest.ts): an endless or huge body from Cloud
// Storage, Secret Manager or Cloud KMS is cut off after a bounded read, never held whole. The test
// servers write 200 MiB of blanks as fast as the binary reads; the count they managed to write
// before the binary hung up is the proof (socket buffers aside, it is what the binary read).

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import type { FaultResponse } from '../servers/http.ts';
import { startTestServers } from '../servers/start.ts';
import { KEY, runBinary } from './harness.ts';

const TOTAL = 200 * 1024 * 1024;
/** Far below TOTAL, far above a cap plus the kernel's socket buffers. */
const READ_AT_MOST = 24 * 1024 * 1024;

let servers: Awaited<ReturnType<typeof startTestServers>>;
beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
});
afterAll(async () => servers?.close());
beforeEach(() => {
  servers.gcs.reset();
  servers.kms.reset();
  servers.secretManager.reset();
});

/** `count` answers of `status` with a 200 MiB body each, and what each managed to write. */
function endless(status: number, count: number): { faults: FaultResponse[]; written: number[] } {
  const written: number[] = [];
  const faults = Array.from({ length: count }, () => ({
    status,
    stream: TOTAL,
    streamed: (n: number) => written.push(n),
  }));
  return { faults, written };
}

async function settle(written: number[]): Promise<void> {
  // The server's write loop notices the closed connection on its next write.
  for (let i = 0; i < 50 && written.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
}

describe('every answer is read up to a cap, as it streams', () => {
  it('Cloud Storage: an endless 500 is retried with a bounded read each time, then 69', async () => {
    const { faults, written } = endless(500, 100);
    servers.gcs.failNext({ method: 'GET' }, faults);
    const result = await runBinary(['--source', 'gs://vault/endless/a.env', '--env', '--timeout', '3s', '--', 'true'], {
      env: servers.env,
    });
    expect(result.code, result.stderr).toBe(EXIT.unavailable);
    expect(result.stderr).toMatch(/Cloud Storage answered 500 for gs:\/\/vault\/endless\/a\.env/);
    await settle(written);
    expect(written.length).toBeGreaterThan(0);
    for (const bytes of written) expect(bytes).toBeLessThan(READ_AT_MOST);
  });

  it('Secret Manager: an endless 503 is retried with a bounded read each time, then 69', async () => {
    const { faults, written } = endless(503, 100);
    servers.secretManager.failNext({ path: /:access$/ }, faults);
    const result = await runBinary(
      ['--source', 'sm://demo-project/endless', '--format', 'dotenv', '--env', '--timeout', '3s', '--', 'true'],
      {
        env: servers.env,
      },
    );
    expect(result.code, result.stderr).toBe(EXIT.unavailable);
    await settle(written);
    expect(written.length).toBeGreaterThan(0);
    for (const bytes of written) expect(bytes).toBeLessThan(READ_AT_MOST);
  });

  it('Secret Manager: a 200 MiB answer under --max-size 64KiB is refused after a bounded read (76)', async () => {
    const { faults, written } = endless(200, 1);
    servers.secretManager.failNext({ path: /:access$/ }, faults);
    const result = await runBinary(
      ['--source', 'sm://demo-project/huge', '--format', 'dotenv', '--max-size', '64KiB', '--env', '--', 'true'],
      {
        env: servers.env,
      },
    );
    expect(result.code, result.stderr).toBe(EXIT.integrity);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/sm:\/\/demo-project\/huge.*answered with more than \d+ bytes/);
    await settle(written);
    expect(written[0]).toBeLessThan(READ_AT_MOST);
  });

  it('Cloud KMS: a 200 MiB decrypt answer is refused after a bounded read (76)', async () => {
    servers.gcs.putObject('vault', 'endless/a.env.enc', servers.kms.encrypt(KEY, Buffer.from('A=b\n')));
    const { faults, written } = endless(200, 1);
    servers.kms.failNext({ path: /:decrypt$/ }, faults);
    const result = await runBinary(
      ['--source', 'gs://vault/endless/a.env.enc', '--kms-key', KEY, '--env', '--', 'true'],
      { env: servers.env },
    );
    expect(result.code, result.stderr).toBe(EXIT.integrity);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/answered with more than \d+ bytes/);
    await settle(written);
    expect(written[0]).toBeLessThan(READ_AT_MOST);
  });
});
