// npm run bench:load: many secret-fetch binaries at once against throttling test servers.
// Each Cloud Storage request has a 30% chance of 429 (with Retry-After: 1) and a 10% chance of
// 503; each KMS request a 10% chance of 503. Reports how many runs succeeded within --timeout,
// the latency distribution and the retries they needed. Figures only: nothing is asserted.
//
//   npm run bench:load [-- --runs 200 --timeout 30s]

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encryptWithKms, uploadObject } from '../test/fixtures/cloud.ts';
import type { FaultResponse } from '../test/servers/http.ts';
import { startTestServers } from '../test/servers/start.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binary = join(root, 'dist', 'secret-fetch');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
};
const RUNS = Number(arg('runs', '200'));
const TIMEOUT = arg('timeout', '30s');
const KEY = 'projects/load/locations/global/keyRings/r/cryptoKeys/k';

if (!existsSync(binary)) spawnSync(process.execPath, [join(root, 'scripts', 'build.ts')], { stdio: 'inherit' });

// A fixed, seeded sequence of faults, long enough for every request of every run.
let seed = 42;
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
function faults(count: number, throttle: number, unavailable: number): FaultResponse[] {
  return Array.from({ length: count }, (): FaultResponse => {
    const r = random();
    if (r < throttle)
      return { status: 429, headers: { 'retry-after': '1' }, body: { error: { code: 429, message: 'rate limited' } } };
    if (r < throttle + unavailable)
      return { status: 503, body: { error: { code: 503, message: 'unavailable', status: 'UNAVAILABLE' } } };
    return 'pass';
  });
}

const servers = await startTestServers();
const dir = mkdtempSync('/dev/shm/secret-fetch-load-');
try {
  servers.kms.createKey(KEY);
  await uploadObject(
    servers.gcs.url,
    'load',
    'app.env.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from('A=1\nB=2\n')),
  );
  // The queue is walked in order by whichever request comes next; 'pass' serves the real answer.
  const gcsFaults = faults(RUNS * 8, 0.3, 0.1);
  const kmsFaults = faults(RUNS * 4, 0, 0.1);
  servers.gcs.failNext({ method: 'GET' }, gcsFaults);
  servers.kms.failNext({ method: 'POST' }, kmsFaults);

  const started = Date.now();
  const results = await Promise.all(
    Array.from({ length: RUNS }, (_, i) =>
      run([
        '--source',
        'gs://load/app.env.enc',
        '--kms-key',
        KEY,
        '--format',
        'dotenv',
        '--out',
        join(dir, `app-${i}.env`),
        '--timeout',
        TIMEOUT,
      ]),
    ),
  );
  const ok = results.filter((r) => r.code === 0);
  const ms = ok.map((r) => r.ms).sort((a, b) => a - b);
  const q = (p: number) =>
    ms.length ? (ms[Math.min(ms.length - 1, Math.floor(p * ms.length))] as number).toFixed(0) : '-';
  const retries = results.map((r) => r.retries).sort((a, b) => a - b);
  const codes = new Map<number, number>();
  for (const r of results) codes.set(r.code, (codes.get(r.code) ?? 0) + 1);

  console.log(`${RUNS} concurrent runs, --timeout ${TIMEOUT}, all done in ${Date.now() - started} ms`);
  console.log(`succeeded: ${ok.length}/${RUNS}; exit codes: ${[...codes].map(([c, n]) => `${c}x${n}`).join(', ')}`);
  console.log(`latency of successful runs: p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms`);
  console.log(
    `retries per run: median ${retries[Math.floor(retries.length / 2)]}, max ${retries.at(-1)}, total ${retries.reduce((a, b) => a + b, 0)}`,
  );
  console.log(
    `faults served: ${gcsFaults.length - servers.gcs.pendingFaults} GCS, ${kmsFaults.length - servers.kms.pendingFaults} KMS`,
  );
  for (const failed of results.filter((r) => r.code !== 0).slice(0, 3)) console.log(`  failed: ${failed.lastLine}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
  await servers.close();
}

function run(args: string[]): Promise<{ code: number; ms: number; retries: number; lastLine: string }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(binary, args, {
      env: { ...servers.env, METADATA_SERVER_DETECTION: 'none', PATH: '/usr/bin:/bin' },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) =>
      resolve({
        code: code ?? -1,
        ms: Date.now() - t0,
        retries: (stderr.match(/retrying in/g) ?? []).length,
        lastLine: stderr.trim().split('\n').at(-1) ?? '',
      }),
    );
  });
}
