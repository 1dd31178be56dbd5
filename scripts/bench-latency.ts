// npm run bench:latency: how many network round trips a start costs (issue 15). The Cloud Storage,
// KMS and Secret Manager test servers are served over TLS (a CA made here, trusted through
// SECRET_FETCH_CA_FILE) behind a user-space latency proxy (test/servers/latency-proxy.ts) that
// delays every chunk by D ms each way and a new connection's first bytes by one more round trip
// (the TCP handshake). The metadata server (the token) stays outside the proxy, link-local as on
// GKE and Cloud Run. Each scenario runs at D = 0 and at RTT 50 ms (D = 25), alternating; the
// effective round trips are (median at RTT 50 - median at D = 0) / 50 ms. Beside them, "net" does
// the same with each run's wall time less the time its main thread waited for a CPU (schedstat),
// which on a shared, loaded machine is most of the noise. Every binary run is a fresh process
// (exec'ing `cat /proc/self/schedstat` as its command), so every connection and TLS handshake is
// new. A calibration request (a fresh https GET from this process: connect + TLS 1.3 + request = 3
// RTT) checks the proxy first, and the bench stops if it is off by more than half a round trip.
//
// Prints a table, writes bench/latency.json and draws bench/latency.svg, which the README shows.
// Not a test: the figures depend on the machine, so they are reported, never asserted.
//
//   npm run bench:latency [-- --runs N] [--rtt MS]

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { type LatencyProxy, startLatencyProxy } from '../test/servers/latency-proxy.ts';
import { startMetadataServer } from '../test/servers/metadata.ts';
import { startTestServers } from '../test/servers/start.ts';
import { makeTestCertificates, startTlsFront } from '../test/servers/tls.ts';
import { barChartSvg } from './bar-chart.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binary = join(root, 'dist', 'secret-fetch');
const RUNS = numberArg('--runs', 15);
/** Issue 15's round trip; a longer one (--rtt 200) shrinks the share of CPU noise on a loaded machine. */
const RTT_MS = numberArg('--rtt', 50);
const DELAYS = [0, RTT_MS / 2] as const;
/** A fresh https request: TCP connect 1 + TLS 1.3 handshake 1 + the request 1. */
const CALIBRATION_ROUND_TRIPS = 3;
const CALIBRATION_TOLERANCE = 0.5;
const KEY = 'projects/bench/locations/global/keyRings/r/cryptoKeys/k';
const PROJECT = 'bench-project';
const REFERENCES = 10;
const SERVICES = ['storage', 'kms', 'secretManager'] as const;
type Service = (typeof SERVICES)[number];

if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error('--runs N: give a whole number of runs, 1 or more');
if (!Number.isInteger(RTT_MS) || RTT_MS < 2 || RTT_MS % 2 !== 0) throw new Error('--rtt MS: give an even number of ms');
if (!existsSync(binary) || process.argv.includes('--build')) {
  const built = spawnSync(process.execPath, [join(root, 'scripts', 'build.ts')], { stdio: 'inherit' });
  if (built.status !== 0) throw new Error('npm run build failed');
}

/**
 * One run: its wall time, and how long its main thread waited for a CPU (the run delay in
 * /proc/.../schedstat, NaN where the kernel keeps none): on a shared machine that wait, not the
 * network, is most of the difference between two runs.
 */
interface Sample {
  wallMs: number;
  cpuWaitMs: number;
}

/** One thing measured: `once` runs it at a delay, or resolves with undefined if it failed. */
interface Case {
  name: string;
  once: (delayMs: number) => Promise<Sample | undefined>;
  /** Issue 15's target for the effective round trips, and what the issue measured before its work. */
  target?: number;
  issueMeasured?: number;
}

interface Figures {
  name: string;
  /** Medians, ms. */
  d0Ms: number;
  rttMs: number;
  /** (rttMs - d0Ms) / RTT: issue 15's measure. */
  roundTrips: number;
  /** The same from each run's wall time less its wait for a CPU: steadier on a loaded machine (the chart's bars). */
  netRoundTrips: number;
  /** New connections a run opens through the proxies, by service (median of the RTT 50 ms runs). */
  connections: Record<Service, number>;
  target?: number;
  issueMeasured?: number;
  failures: number;
  samples: { d0: Sample[]; rtt: Sample[] };
}

// No advertised keep-alive limit: the binary may reuse a connection, as with the real services
// (the servers' default one-second limit makes Node's agent open a new one for every request).
const servers = await startTestServers({ listen: { keepAliveTimeoutMs: 0 } });
const metadata = await startMetadataServer();
const dir = mkdtempSync('/dev/shm/secret-fetch-latency-');
const closers: (() => Promise<void>)[] = [];
try {
  const certificates = makeTestCertificates(dir);
  const emptyPath = join(dir, 'bin');
  mkdirSync(emptyPath);
  const upstreams: Record<Service, string> = {
    storage: new URL(servers.gcs.url).host,
    kms: new URL(servers.kms.url).host,
    secretManager: new URL(servers.secretManager.url).host,
  };
  // client -> latency proxy (D) -> TLS front -> plain test server: a proxy per service and delay.
  const chains = new Map<number, Record<Service, LatencyProxy>>();
  for (const delayMs of DELAYS) {
    const proxies = {} as Record<Service, LatencyProxy>;
    for (const service of SERVICES) {
      const front = await startTlsFront(upstreams[service], certificates);
      const proxy = await startLatencyProxy(front.host, { delayMs });
      closers.push(
        () => proxy.close(),
        () => front.close(),
      );
      proxies[service] = proxy;
    }
    chains.set(delayMs, proxies);
  }
  const chain = (delayMs: number) => chains.get(delayMs) as Record<Service, LatencyProxy>;
  const cloudEnv = (delayMs: number): Record<string, string> => ({
    // A PATH without gcloud, as in a container: where google-auth-library finds gcloud it asks
    // `gcloud config config-helper` for the project id (~1 s on this machine, and as noisy).
    PATH: emptyPath,
    SECRET_FETCH_CA_FILE: certificates.caFile,
    SECRET_FETCH_STORAGE_ENDPOINT: `https://${chain(delayMs).storage.host}`,
    SECRET_FETCH_KMS_ENDPOINT: `https://${chain(delayMs).kms.host}`,
    SECRET_FETCH_SECRET_MANAGER_ENDPOINT: `https://${chain(delayMs).secretManager.host}`,
    // The token comes from the metadata server, outside the proxy (link-local on GKE, Cloud Run).
    GCE_METADATA_HOST: metadata.host,
    METADATA_SERVER_DETECTION: 'ping-only',
  });

  const dotenv = Array.from({ length: 20 }, (_, i) => `VAR_${i}=${randomBytes(16).toString('hex')}`).join('\n');
  const cfg = Array.from({ length: 20 }, (_, i) => `SETTING_${i} = "${randomBytes(16).toString('hex')}"`).join('\n');
  servers.kms.createKey(KEY);
  servers.gcs.putObject('bench', 'app/secrets.cfg.enc', servers.kms.encrypt(KEY, `${cfg}\n`));
  servers.gcs.putObject('bench', 'app/app.env', `${dotenv}\n`);
  servers.secretManager.createSecret(`projects/${PROJECT}/secrets/app-env`);
  servers.secretManager.addVersion(`projects/${PROJECT}/secrets/app-env`, `${dotenv}\n`);
  for (let i = 0; i < REFERENCES; i++) {
    const secret = `projects/${PROJECT}/secrets/ref-${i}`;
    servers.secretManager.createSecret(secret);
    servers.secretManager.addVersion(secret, randomBytes(16).toString('hex'));
  }

  const measure = async (c: Case): Promise<Figures> => {
    const d0s: Sample[] = [];
    const rtts: Sample[] = [];
    const connections: Record<Service, number>[] = [];
    let failures = 0;
    for (const delayMs of DELAYS) await c.once(delayMs); // warm-up: page cache, the servers' JIT
    for (let i = 0; i < RUNS; i++) {
      const d0 = await c.once(0);
      const before = connectionCounts(chain(DELAYS[1]));
      const rtt = await c.once(DELAYS[1]);
      const after = connectionCounts(chain(DELAYS[1]));
      if (d0 === undefined) failures++;
      else d0s.push(d0);
      if (rtt === undefined) failures++;
      else {
        rtts.push(rtt);
        connections.push(Object.fromEntries(SERVICES.map((k) => [k, after[k] - before[k]])) as Record<Service, number>);
      }
    }
    const wall = (samples: Sample[]) => median(samples.map((x) => x.wallMs));
    const net = (samples: Sample[]) => median(samples.map((x) => x.wallMs - x.cpuWaitMs));
    return {
      name: c.name,
      d0Ms: wall(d0s),
      rttMs: wall(rtts),
      roundTrips: (wall(rtts) - wall(d0s)) / RTT_MS,
      netRoundTrips: (net(rtts) - net(d0s)) / RTT_MS,
      connections: Object.fromEntries(SERVICES.map((k) => [k, median(connections.map((n) => n[k]))])) as Record<
        Service,
        number
      >,
      ...(c.target === undefined ? {} : { target: c.target, issueMeasured: c.issueMeasured }),
      failures,
      samples: { d0: d0s, rtt: rtts },
    };
  };

  // The proxy first: a fresh https request from a plain Node client must cost 3 round trips.
  const calibration = await measure({
    name: 'calibration: fresh https GET (plain Node)',
    once: (delayMs) =>
      freshGet(`https://${chain(delayMs).storage.host}/storage/v1/b/bench/o/app%2Fapp.env`, certificates.ca),
  });
  console.log(
    `\ncalibration: a fresh https GET through the proxy (connect + TLS 1.3 + request): ${ms(calibration.d0Ms)} at D = 0, ${ms(calibration.rttMs)} at RTT ${RTT_MS} ms: ${calibration.roundTrips.toFixed(2)} round trips (net ${calibration.netRoundTrips.toFixed(2)}; expected ${CALIBRATION_ROUND_TRIPS})`,
  );
  if (Math.abs(calibration.roundTrips - CALIBRATION_ROUND_TRIPS) > CALIBRATION_TOLERANCE) {
    throw new Error(
      `CALIBRATION FAILED: the proxy added ${calibration.roundTrips.toFixed(2)} round trips to a fresh https request, not ${CALIBRATION_ROUND_TRIPS} ± ${CALIBRATION_TOLERANCE}, so the figures would not mean what they say (load average ${load()}); nothing was written`,
    );
  }

  const binaryCase = (c: Omit<Case, 'once'> & { args: string[]; env?: Record<string, string> }): Case => ({
    ...c,
    once: (delayMs) => runBinary(c.name, c.args, { ...cloudEnv(delayMs), ...c.env }),
  });
  const cases: Case[] = [
    binaryCase({
      name: 'gs:// + KMS -> tmpfs + env -> exec',
      args: ['--source', 'gs://bench/app/secrets.cfg.enc', '--kms-key', KEY, '--out', join(dir, 'app.cfg'), '--env'],
      target: 4.5,
      issueMeasured: 7.2,
    }),
    binaryCase({
      name: 'gs:// dotenv -> env -> exec',
      args: ['--source', 'gs://bench/app/app.env', '--env'],
      target: 3.5,
      issueMeasured: 4.1,
    }),
    binaryCase({
      name: 'sm:// source -> env -> exec',
      args: ['--source', `sm://${PROJECT}/app-env`, '--format', 'dotenv', '--env'],
      target: 3.5,
      issueMeasured: 3.1,
    }),
    binaryCase({
      name: `${REFERENCES} sm:// references -> env -> exec`,
      args: [],
      env: Object.fromEntries(Array.from({ length: REFERENCES }, (_, i) => [`REF_${i}`, `sm://${PROJECT}/ref-${i}`])),
      target: 4.0,
      issueMeasured: 2.7,
    }),
  ];
  const figures = [calibration];
  // One scenario after the other, D = 0 and RTT 50 ms interleaved within each: a slow moment of
  // the machine hits both delays alike, and the difference is what is reported.
  for (const c of cases) figures.push(await measure(c));

  console.log(
    `\n${RUNS} runs per scenario and delay (D = 0 and RTT ${RTT_MS} ms alternating), medians; round trips = (t at RTT ${RTT_MS} - t at D = 0) / ${RTT_MS} ms; net = the same less the waits for a CPU (met/MISSED are judged on it); ${cpus().length} cores, load average ${load()}\n`,
  );
  console.log(
    `${'scenario'.padEnd(42)} ${'D = 0'.padStart(9)} ${`RTT ${RTT_MS}`.padStart(9)} ${'round trips'.padStart(11)} ${'net'.padStart(6)} ${'target'.padStart(7)} ${'issue'.padStart(6)}  connections (GCS/KMS/SM)`,
  );
  for (const f of figures) {
    // Judged on the net figure where there is one: the wall time's swings by whole round trips here.
    const judged = Number.isNaN(f.netRoundTrips) ? f.roundTrips : f.netRoundTrips;
    const status = f.target === undefined ? '' : judged <= f.target ? 'met' : 'MISSED';
    const target = f.target === undefined ? `~${CALIBRATION_ROUND_TRIPS}` : `<= ${f.target.toFixed(1)}`;
    console.log(
      `${f.name.padEnd(42)} ${ms(f.d0Ms)} ${ms(f.rttMs)} ${f.roundTrips.toFixed(2).padStart(11)} ${f.netRoundTrips.toFixed(2).padStart(6)} ${target.padStart(7)} ${(f.issueMeasured?.toFixed(1) ?? '').padStart(6)}  ${SERVICES.map(
        (k) => f.connections[k],
      )
        .join('/')
        .padEnd(24)} ${status}${f.failures ? ` (${f.failures} failed)` : ''}`,
    );
  }

  mkdirSync(join(root, 'bench'), { recursive: true });
  const report = {
    date: new Date().toISOString(),
    runs: RUNS,
    rttMs: RTT_MS,
    cores: cpus().length,
    loadAverage: loadavg(),
    figures,
  };
  writeFileSync(join(root, 'bench', 'latency.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(
    join(root, 'bench', 'latency.svg'),
    barChartSvg(
      `round trips at RTT ${RTT_MS} ms: net (bar), (wall), target (tick)`,
      figures.map((f) => ({
        label: f.target === undefined ? `calibration: fresh https GET (${CALIBRATION_ROUND_TRIPS} expected)` : f.name,
        // A kernel without schedstat gives no net figure: the wall time's then.
        value: Math.max(0, Number.isNaN(f.netRoundTrips) ? f.roundTrips : f.netRoundTrips),
        ...(f.target === undefined ? {} : { tick: f.target }),
        text: `${f.netRoundTrips.toFixed(1)} (${f.roundTrips.toFixed(1)})`,
        highlight: f.target !== undefined,
      })),
    ),
  );
  console.log('\nwrote bench/latency.json and bench/latency.svg');
} finally {
  for (const close of closers) await close();
  await Promise.all([servers.close(), metadata.close()]);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Runs the binary once with `args -- cat /proc/self/schedstat`: the exec keeps the process, so cat
 * reports how long the run's main thread waited for a CPU. Undefined if the run failed.
 */
function runBinary(name: string, args: string[], env: Record<string, string>): Promise<Sample | undefined> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(binary, [...args, '--', '/bin/cat', '/proc/self/schedstat'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => {
      const wallMs = performance.now() - started;
      if (code === 0) resolve({ wallMs, cpuWaitMs: runDelayMs(stdout) });
      else {
        console.error(`${name}: exit ${code}: ${stderr.trim().split('\n')[0]}`);
        resolve(undefined);
      }
    });
  });
}

/** One GET on a new connection (no agent, so no reuse and no TLS session), until its body has ended. */
function freshGet(url: string, ca: Buffer): Promise<Sample | undefined> {
  return new Promise((resolve) => {
    const waited = runDelayMs(readSchedstat('/proc/thread-self/schedstat'));
    const started = performance.now();
    const req = request(url, { agent: false, ca }, (res) => {
      res.resume();
      res.on('end', () => {
        const wallMs = performance.now() - started;
        const cpuWaitMs = runDelayMs(readSchedstat('/proc/thread-self/schedstat')) - waited;
        resolve(res.statusCode === 200 ? { wallMs, cpuWaitMs } : undefined);
      });
    });
    req.on('error', (error) => {
      console.error(`calibration: ${error.message}`);
      resolve(undefined);
    });
    req.end();
  });
}

/** The run delay (ns waiting on a run queue, the second field) of a schedstat line, in ms; NaN if none. */
function runDelayMs(schedstat: string): number {
  const field = schedstat.trim().split(/\s+/)[1];
  return field === undefined || !/^\d+$/.test(field) ? Number.NaN : Number(field) / 1e6;
}

function readSchedstat(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function connectionCounts(proxies: Record<Service, LatencyProxy>): Record<Service, number> {
  return Object.fromEntries(SERVICES.map((k) => [k, proxies[k].connections])) as Record<Service, number>;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function ms(value: number): string {
  return `${value.toFixed(1)} ms`.padStart(9);
}

function load(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

function numberArg(flag: string, fallback: number): number {
  const at = process.argv.indexOf(flag);
  return at === -1 ? fallback : Number(process.argv[at + 1]);
}
