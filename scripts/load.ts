// npm run bench:load: many secret-fetch binaries at once against throttling test servers.
// Each Cloud Storage and each Cloud KMS request has a 30% chance of 429 (with Retry-After: 1) and
// a 10% chance of 503. Reports how many runs succeeded within --timeout, their latency
// distribution, the attempts they needed, and the CPU the binaries used (on a small machine the
// runs queue for the CPU, and that, not the throttling, is what eats the deadline). Figures only:
// nothing is asserted.
//
//   npm run bench:load [-- --runs 200 --timeout 30s --throttle 0.3 --unavailable 0.1]

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
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
const THROTTLE = Number(arg('throttle', '0.3'));
const UNAVAILABLE = Number(arg('unavailable', '0.1'));
const KEY = 'projects/load/locations/global/keyRings/r/cryptoKeys/k';

if (!existsSync(binary)) spawnSync(process.execPath, [join(root, 'scripts', 'build.ts')], { stdio: 'inherit' });

// A fixed, seeded sequence of faults, longer than all runs together can ask for.
let seed = 42;
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
function faults(count: number, errorBody: (status: number) => unknown): FaultResponse[] {
  return Array.from({ length: count }, (): FaultResponse => {
    const r = random();
    if (r < THROTTLE) return { status: 429, headers: { 'retry-after': '1' }, body: errorBody(429) };
    if (r < THROTTLE + UNAVAILABLE) return { status: 503, body: errorBody(503) };
    return 'pass';
  });
}
const errorBody = (status: number) => ({
  error: { code: status, message: status === 429 ? 'rate limited' : 'unavailable', status: statusName(status) },
});
const statusName = (status: number) => (status === 429 ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE');

interface RunResult {
  code: number;
  ms: number;
  /** Failed attempts that were retried (one warning line each). */
  retries: number;
  /** The most attempts one call of this run needed (1 when nothing failed). */
  maxAttempts: number;
  lastLine: string;
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
  const gcsFaults = faults(RUNS * 20, errorBody);
  const kmsFaults = faults(RUNS * 10, errorBody);
  servers.gcs.failNext({ method: 'GET' }, gcsFaults);
  servers.kms.failNext({ method: 'POST' }, kmsFaults);
  servers.gcs.requests.length = 0;
  servers.kms.requests.length = 0;

  const loadBefore = loadavg()[0] ?? Number.NaN;
  const cpuBefore = childCpuSeconds();
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
  const wall = Date.now() - started;
  const cpu = childCpuSeconds() - cpuBefore;

  const ok = results.filter((r) => r.code === 0);
  const q = (sorted: number[], p: number) =>
    sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number) : Number.NaN;
  const ms = ok.map((r) => r.ms).sort((a, b) => a - b);
  const retries = results.map((r) => r.retries).sort((a, b) => a - b);
  const attempts = results.map((r) => r.maxAttempts).sort((a, b) => a - b);
  const codes = new Map<number, number>();
  for (const r of results) codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
  const served = (all: FaultResponse[], pending: number) => all.slice(0, all.length - pending);
  const count = (list: FaultResponse[], status: number) =>
    list.filter((f) => typeof f === 'object' && 'status' in f && f.status === status).length;
  const gcsServed = served(gcsFaults, servers.gcs.pendingFaults);
  const kmsServed = served(kmsFaults, servers.kms.pendingFaults);
  const cores = availableParallelism();

  console.log(
    `${RUNS} concurrent runs, --timeout ${TIMEOUT}, ${pct(THROTTLE)} 429 (Retry-After: 1) and ${pct(UNAVAILABLE)} 503 per request; all done in ${(wall / 1000).toFixed(1)} s`,
  );
  console.log(`succeeded: ${ok.length}/${RUNS}; exit codes: ${[...codes].map(([c, n]) => `${c}x${n}`).join(', ')}`);
  console.log(
    `latency of successful runs: p50 ${q(ms, 0.5)} ms, p90 ${q(ms, 0.9)} ms, p99 ${q(ms, 0.99)} ms, max ${q(ms, 1)} ms`,
  );
  console.log(
    `retries per run: median ${q(retries, 0.5)}, p90 ${q(retries, 0.9)}, max ${q(retries, 1)}, total ${sum(retries)}; ` +
      `attempts of the hardest call per run: median ${q(attempts, 0.5)}, p90 ${q(attempts, 0.9)}, max ${q(attempts, 1)}`,
  );
  console.log(
    `requests: Cloud Storage ${servers.gcs.requests.length} (${count(gcsServed, 429)} got 429, ${count(gcsServed, 503)} got 503), ` +
      `Cloud KMS ${servers.kms.requests.length} (${count(kmsServed, 429)} got 429, ${count(kmsServed, 503)} got 503)`,
  );
  console.log(
    `CPU: the binaries used ${cpu.toFixed(1)} s (${((cpu / RUNS) * 1000).toFixed(0)} ms a run); on ${cores} cores that is at least ` +
      `${(cpu / cores).toFixed(1)} s of wall time for all runs (1-minute load average before: ${loadBefore.toFixed(2)})`,
  );
  const failed = results.filter((r) => r.code !== 0);
  if (failed.length > 0) {
    const expired = failed.filter((r) => /error: could not .* within the --timeout of /.test(r.lastLine)).length;
    const gaveUp = failed.filter((r) => /no time left within|ends past the --timeout/.test(r.lastLine)).length;
    console.log(
      `failures: ${expired} reached the deadline during a request, ${gaveUp} had no room left for the next wait, ` +
        `${failed.length - expired - gaveUp} other`,
    );
    const kinds = new Map<string, number>();
    for (const r of failed) {
      const kind = r.lastLine.replace(/\d+/g, 'N').replace(/ \(the service .*$/, '');
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    for (const [kind, n] of [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 4)) console.log(`  ${n} x ${kind}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
  await servers.close();
}

function run(args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(binary, args, {
      env: { ...servers.env, METADATA_SERVER_DETECTION: 'none', PATH: '/usr/bin:/bin' },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => {
      const attempts = [...stderr.matchAll(/attempt (\d+) to .* failed/g)].map((m) => Number(m[1]));
      resolve({
        code: code ?? -1,
        ms: Date.now() - t0,
        retries: attempts.length,
        maxAttempts: attempts.length === 0 ? 1 : Math.max(...attempts) + 1,
        lastLine: stderr.trim().split('\n').at(-1) ?? '',
      });
    });
  });
}

/** CPU seconds (user + system) of this process's waited-for children, from /proc/self/stat. */
function childCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? [];
  // cutime and cstime are fields 16 and 17 of stat(5), in clock ticks (100 a second on Linux).
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}
