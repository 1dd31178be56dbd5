// docker/Dockerfile and docker/example/Dockerfile built and run for real under a Docker engine
// (test/containers/engine.ts starts its own dockerd). The public bases they default to are stood in
// for by images made from Debian's packages (bases.Dockerfile), passed as the build arguments a user
// with a private registry would pass. Needs root; npm test installs docker.io and debootstrap.

import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers } from '../servers/start.ts';
import { DOCKER_ENV, docker, dockerOk, ensureMinbase, MINBASE, startEngine, stopEngine } from './engine.ts';

// The images are built from source here: dist/secret-fetch is not needed (so not the harness).
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
const BUILDER = 'secret-fetch-test/builder';
const RUNTIME = 'secret-fetch-test/runtime';
const IMAGE = 'secret-fetch-test/secret-fetch';
const EXAMPLE = 'secret-fetch-test/flask-example';
const WRONG_KEY = KEY.replace(/[^/]+$/, 'other-key');
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const DATABASE_URL = `postgresql://app:${randomBytes(8).toString('hex')}@db/app`;
const fingerprint = (value: string) => createHash('sha256').update(value).digest('hex').slice(0, 12);
const config = (secretKey: string) => `SECRET_KEY = "${secretKey}"\nDATABASE_URL = "${DATABASE_URL}"\n`;
const NPM_CA = join(ROOT, 'docker', 'npm-ca.pem');

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;
const containers: string[] = [];
const volumes: string[] = [];
const timings: Record<string, number> = {};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function timed(name: string, work: () => Promise<unknown>): Promise<void> {
  const started = Date.now();
  await work();
  timings[name] = Date.now() - started;
}

/** The machine's npm CA bundle, as a user behind a TLS proxy passes it (see docker/Dockerfile). */
function npmConfig(key: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('npm', ['config', 'get', key], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.on('close', () => resolve(out.trim()));
    child.on('error', () => resolve(''));
  });
}

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  servers.kms.createKey(WRONG_KEY);
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app/secrets.cfg.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(config(CANARY))),
  );
  await timed('engine', startEngine);
  await timed('minbase', ensureMinbase);
  const bases = join(ROOT, 'test', 'containers');
  await timed('bases', async () => {
    for (const [target, tag] of [
      ['builder', BUILDER],
      ['runtime', RUNTIME],
    ] as const) {
      const file = join(bases, 'bases.Dockerfile');
      await dockerOk([
        'build',
        '--network',
        'host',
        '-q',
        '--target',
        target,
        '--build-arg',
        `DEBIAN_BASE=${MINBASE}`,
        '-t',
        tag,
        '-f',
        file,
        bases,
      ]);
    }
  });
  const cafile = await npmConfig('cafile');
  const registry = await npmConfig('registry');
  if (cafile && cafile !== 'null' && cafile !== 'undefined') copyFileSync(cafile, NPM_CA);
  try {
    // The commands the README shows, with the local bases as build arguments.
    await timed('secret-fetch image', () =>
      dockerOk([
        'build',
        '--network',
        'host',
        '-f',
        'docker/Dockerfile',
        '--build-arg',
        `BUILD_BASE=${BUILDER}`,
        '--build-arg',
        `RUNTIME_BASE=${RUNTIME}`,
        '--build-arg',
        `NPM_CONFIG_REGISTRY=${registry}`,
        '-t',
        IMAGE,
        ROOT,
      ]),
    );
  } finally {
    rmSync(NPM_CA, { force: true });
  }
  await timed('example image', () =>
    dockerOk([
      'build',
      '--network',
      'host',
      '-f',
      'docker/example/Dockerfile',
      '--build-arg',
      `SECRET_FETCH_IMAGE=${IMAGE}`,
      '--build-arg',
      `APP_BASE=${MINBASE}`,
      '-t',
      EXAMPLE,
      ROOT,
    ]),
  );
}, 20 * 60_000);

afterAll(async () => {
  try {
    for (const id of containers) await docker(['rm', '-f', id]);
    for (const name of volumes) await docker(['volume', 'rm', '-f', name]);
  } finally {
    await stopEngine();
    await servers?.close();
    console.log(`container tests: ${JSON.stringify(timings)}`);
  }
}, 120_000);

/** -e flags for the test servers and the secret to fetch. */
function envFlags(extra: Record<string, string> = {}): string[] {
  const env = {
    ...servers.env,
    METADATA_SERVER_DETECTION: 'none',
    SECRET_FETCH_SOURCE: 'gs://vault/app/secrets.cfg.enc',
    SECRET_FETCH_KMS_KEY: KEY,
    ...extra,
  };
  return Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
}

const SECRETS_TMPFS = ['--tmpfs', '/run/secrets:uid=10001,gid=10001,mode=0700,size=64k'];

async function runDetached(args: string[]): Promise<string> {
  const id = (await dockerOk(['run', '-d', '--network', 'host', ...args])).trim();
  containers.push(id);
  return id;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function getJson(port: number): Promise<Record<string, unknown> | undefined> {
  const response = await fetch(`http://127.0.0.1:${port}/`);
  return response.ok ? ((await response.json()) as Record<string, unknown>) : undefined;
}

/** Whether any of NEEDLES occurs in the output of docker ARGS (streamed: images are large). */
function streamContains(args: string[], needles: string[]): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', args, { env: DOCKER_ENV, stdio: ['ignore', 'pipe', 'inherit'] });
    const keep = Math.max(...needles.map((n) => n.length));
    let carry = Buffer.alloc(0);
    let found = false;
    child.stdout.on('data', (chunk: Buffer) => {
      const window = Buffer.concat([carry, chunk]);
      if (needles.some((needle) => window.includes(needle))) found = true;
      carry = window.subarray(Math.max(0, window.length - keep));
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(found) : reject(new Error(`docker ${args[0]} exited ${code}`))));
  });
}

describe('docker/Dockerfile', () => {
  it('holds only the binary, as the ENTRYPOINT, on a base without a shell or a C++ runtime', async () => {
    const [entrypoint, cmd] = (
      await dockerOk(['image', 'inspect', '-f', '{{json .Config.Entrypoint}} {{json .Config.Cmd}}', IMAGE])
    )
      .trim()
      .split(' ');
    expect(JSON.parse(entrypoint as string)).toEqual(['/secret-fetch']);
    expect(JSON.parse(cmd as string)).toEqual(['--help']);
    const version = await dockerOk(['run', '--rm', '--network', 'host', IMAGE, '--version']);
    expect(version.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const shell = await docker(['run', '--rm', '--network', 'host', '--entrypoint', '/bin/sh', IMAGE, '-c', 'true']);
    expect(shell.code).not.toBe(0);
    // glibc alone (issue 14.4): the binary runs where distroless base runs, without libstdc++ or libgcc_s.
    const container = (await dockerOk(['create', IMAGE])).trim();
    try {
      const files = execFileSync('sh', ['-c', 'docker export "$1" | tar -t', 'sh', container], {
        env: DOCKER_ENV,
        encoding: 'utf8',
        maxBuffer: 16 * 1024 * 1024,
      }).split('\n');
      expect(files.some((f) => f.endsWith('/libc.so.6'))).toBe(true);
      expect(files.filter((f) => /libstdc\+\+|libgcc_s/.test(f))).toEqual([]);
    } finally {
      await dockerOk(['rm', container]);
    }
    const size = Number(await dockerOk(['image', 'inspect', '-f', '{{.Size}}', IMAGE]));
    const base = Number(await dockerOk(['image', 'inspect', '-f', '{{.Size}}', RUNTIME]));
    // One layer on the runtime base: the binary (ENTRYPOINT and CMD add no layer).
    const layers = async (image: string) =>
      Number(await dockerOk(['image', 'inspect', '-f', '{{len .RootFS.Layers}}', image]));
    expect(await layers(IMAGE)).toBe((await layers(RUNTIME)) + 1);
    // The bench reports it (scripts/bench.ts reads this file).
    const figures = {
      image: IMAGE,
      bytes: size,
      runtimeBaseBytes: base,
      binaryBytes: size - base,
      date: new Date().toISOString(),
    };
    mkdirSync(join(ROOT, 'build'), { recursive: true });
    writeFileSync(join(ROOT, 'build', 'image-size.json'), `${JSON.stringify(figures, null, 2)}\n`);
    console.log(
      `secret-fetch image: ${(size / 2 ** 20).toFixed(1)} MiB (runtime base ${(base / 2 ** 20).toFixed(1)} MiB)`,
    );
  });
});

describe('docker/example/Dockerfile', { timeout: 90_000 }, () => {
  it('runs read-only: gunicorn is PID 1 serving the secret, the file is 0400 and the app user’s, docker stop exits 0', async () => {
    const port = await freePort();
    const id = await runDetached(['--read-only', ...SECRETS_TMPFS, ...envFlags({ PORT: String(port) }), EXAMPLE]);
    const body = await waitFor('the example app', () => getJson(port));
    expect(body).toMatchObject({
      secret_key_sha256: fingerprint(CANARY),
      database_url_sha256: fingerprint(DATABASE_URL),
      database_url_from: 'environment',
      uid: 10001,
    });
    const pid1 = await dockerOk(['exec', id, 'cat', '/proc/1/cmdline']);
    expect(pid1.split('\0').join(' ')).toMatch(/gunicorn/);
    expect(pid1).not.toMatch(/secret-fetch/);
    const stat = await dockerOk(['exec', id, 'stat', '-c', '%a %u %g', '/run/secrets/app.cfg']);
    expect(stat.trim()).toBe('400 10001 10001');
    await dockerOk(['stop', id]);
    const exit = await dockerOk(['inspect', '-f', '{{.State.ExitCode}}', id]);
    expect(exit.trim()).toBe('0');
    const logs = await docker(['logs', id]);
    expect(logs.stdout + logs.stderr).not.toContain(CANARY);
    // Neither the image nor what the container wrote outside its tmpfs holds a secret byte.
    const needles = [CANARY, DATABASE_URL];
    expect(await streamContains(['save', EXAMPLE], needles)).toBe(false);
    expect(await streamContains(['export', id], needles)).toBe(false);
  });

  it('with a wrong key exits non-zero at once with one clear line, and gunicorn never starts', async () => {
    const started = Date.now();
    const result = await docker([
      'run',
      '--rm',
      '--network',
      'host',
      '--read-only',
      ...SECRETS_TMPFS,
      ...envFlags({ SECRET_FETCH_KMS_KEY: WRONG_KEY }),
      EXAMPLE,
    ]);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(result.code).toBe(76);
    const lines = result.stderr.split('\n').filter((line) => line && !line.startsWith('WARNING'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^secret-fetch: .*decrypt/);
    expect(result.stdout + result.stderr).not.toMatch(/gunicorn|Booting worker/i);
  });

  it('init-container pattern: one container writes a shared tmpfs volume and exits, the app reads the file', async () => {
    const volume = `sf-test-secrets-${randomBytes(4).toString('hex')}`;
    await dockerOk([
      'volume',
      'create',
      '--opt',
      'type=tmpfs',
      '--opt',
      'device=tmpfs',
      '--opt',
      'o=size=64k,uid=10001,gid=10001,mode=0700',
      volume,
    ]);
    volumes.push(volume);
    // Docker mounts a tmpfs volume while a container uses it: a holder keeps it for the "pod's" life,
    // as Kubernetes keeps an emptyDir (medium: Memory) between the init and the app container.
    await runDetached(['-v', `${volume}:/run/secrets`, '--entrypoint', 'sleep', EXAMPLE, 'infinity']);
    const init = await docker([
      'run',
      '--rm',
      '--network',
      'host',
      '--read-only',
      '--user',
      '10001:10001',
      '-v',
      `${volume}:/run/secrets`,
      ...envFlags(),
      IMAGE,
      '--out',
      '/run/secrets/app.cfg',
    ]);
    expect(init.code, init.stderr).toBe(0);
    const port = await freePort();
    const id = await runDetached([
      '--read-only',
      '-v',
      `${volume}:/run/secrets:ro`,
      '-e',
      `PORT=${port}`,
      '--entrypoint',
      'gunicorn',
      EXAMPLE,
      '--worker-tmp-dir',
      '/dev/shm',
      '--chdir',
      '/app',
      'app:app',
    ]);
    const body = await waitFor('the example app', () => getJson(port));
    expect(body).toMatchObject({ secret_key_sha256: fingerprint(CANARY), database_url_from: 'file' });
    await dockerOk(['stop', id]);
  });

  it('sidecar: --refresh rotates the file in the shared volume while the app keeps running', async () => {
    const volume = `sf-test-secrets-${randomBytes(4).toString('hex')}`;
    await dockerOk([
      'volume',
      'create',
      '--opt',
      'type=tmpfs',
      '--opt',
      'device=tmpfs',
      '--opt',
      'o=size=64k,uid=10001,gid=10001,mode=0700',
      volume,
    ]);
    volumes.push(volume);
    const sidecar = await runDetached([
      '--read-only',
      '--user',
      '10001:10001',
      '-v',
      `${volume}:/run/secrets`,
      ...envFlags(),
      IMAGE,
      '--out',
      '/run/secrets/app.cfg',
      '--refresh',
      '500ms',
    ]);
    const port = await freePort();
    const app = await runDetached([
      '--read-only',
      '-v',
      `${volume}:/run/secrets:ro`,
      '-e',
      `PORT=${port}`,
      '--entrypoint',
      'gunicorn',
      EXAMPLE,
      '--worker-tmp-dir',
      '/dev/shm',
      '--chdir',
      '/app',
      'app:app',
    ]);
    await waitFor('the example app', () => getJson(port));
    const digest = async () => (await dockerOk(['exec', app, 'sha256sum', '/run/secrets/app.cfg'])).split(' ')[0];
    const first = await digest();
    expect(first).toBe(createHash('sha256').update(config(CANARY)).digest('hex'));
    const rotated = `${CANARY}-v2`;
    await uploadObject(
      servers.gcs.url,
      'vault',
      'app/secrets.cfg.enc',
      await encryptWithKms(servers.kms.url, KEY, Buffer.from(config(rotated))),
    );
    const second = createHash('sha256').update(config(rotated)).digest('hex');
    await waitFor('the rotated file', async () => ((await digest()) === second ? true : undefined));
    expect((await dockerOk(['inspect', '-f', '{{.State.Running}} {{.RestartCount}}', app])).trim()).toBe('true 0');
    await dockerOk(['stop', sidecar]);
    expect((await dockerOk(['inspect', '-f', '{{.State.ExitCode}}', sidecar])).trim()).toBe('0');
    const logs = await docker(['logs', sidecar]);
    expect(logs.stdout + logs.stderr).not.toContain(CANARY);
  });
});
