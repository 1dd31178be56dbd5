// The built binary honours the Retry-After of Cloud Storage and Cloud KMS: it waits at least that
// long, says so, and gives up at once when the wait would pass the --timeout deadline.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { startTestServers } from '../servers/start.ts';
import { runBinary } from './harness.ts';

let servers: Awaited<ReturnType<typeof startTestServers>>;
const KEY = 'projects/p/locations/global/keyRings/r/cryptoKeys/ra';

beforeAll(async () => {
  servers = await startTestServers();
  servers.gcs.putObject('vault', 'ra.env', 'A=1\n');
  servers.kms.createKey(KEY);
  servers.gcs.putObject('vault', 'ra.env.enc', servers.kms.encrypt(KEY, 'A=2\n'));
});
afterAll(async () => servers?.close());

const args = ['--source', 'gs://vault/ra.env', '--env', '--', 'sh', '-c', 'echo "A=$A"'];

it('waits the Retry-After of a 429, then succeeds', async () => {
  servers.gcs.failNext({ method: 'GET' }, [{ status: 429, headers: { 'Retry-After': '1' } }]);
  const started = Date.now();
  const result = await runBinary(args, { env: servers.env });
  expect(result.code, result.stderr).toBe(0);
  expect(result.stdout).toBe('A=1\n');
  expect(result.stderr).toMatch(
    /attempt 1 to download gs:\/\/vault\/ra\.env failed .*429.*; retrying in 1000 ms \(Retry-After\)\n$/,
  );
  expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
});

it('fails at once when Retry-After reaches past --timeout', async () => {
  servers.gcs.failNext({ method: 'GET' }, [{ status: 503, headers: { 'Retry-After': '30' } }]);
  const started = Date.now();
  const result = await runBinary(['--timeout', '5s', ...args], { env: servers.env });
  expect(result.code).toBe(EXIT.unavailable);
  expect(result.stderr).toBe(
    'secret-fetch: error: Cloud Storage answered 503 for gs://vault/ra.env after 1 attempt; its Retry-After of 30s ' +
      'ends past the --timeout of 5s (the service is failing; try again later, or raise --timeout)\n',
  );
  expect(Date.now() - started).toBeLessThan(4_000);
});

it('waits the Retry-After of a Cloud KMS 429, then succeeds', async () => {
  servers.kms.failNext({ method: 'POST' }, [{ status: 429, headers: { 'Retry-After': '1' } }]);
  const started = Date.now();
  const result = await runBinary(['--source', 'gs://vault/ra.env.enc', '--kms-key', KEY, ...args.slice(2)], {
    env: servers.env,
  });
  expect(result.code, result.stderr).toBe(0);
  expect(result.stdout).toBe('A=2\n');
  expect(result.stderr).toMatch(
    /attempt 1 to decrypt gs:\/\/vault\/ra\.env\.enc with .* failed .*RESOURCE_EXHAUSTED.*; retrying in 1000 ms \(Retry-After\)\n$/,
  );
  expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
});
