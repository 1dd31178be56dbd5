// docker/example end to end, without a Docker engine: the example image's ENTRYPOINT (read from
// docker/example/Dockerfile) runs as a container runtime would run it, as PID 1 of fresh PID and
// mount namespaces, as the image's non-root user, with a tmpfs at the secrets path. secret-fetch
// fetches a KMS-encrypted secrets.cfg from the test servers and execs real gunicorn serving
// docker/example/app.py.
//
// Needs root (unshare, mount, setpriv) and the Debian packages gunicorn and python3-flask, which
// .ci/run installs.

import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addSecretVersion, encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { BASE_ENV, BINARY, KEY, ROOT } from '../integration/harness.ts';
import { startTestServers } from '../servers/start.ts';

const EXAMPLE = join(ROOT, 'docker', 'example');
const APP_UID = 10001;
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const DATABASE_URL = `postgresql://app:${randomBytes(8).toString('hex')}@db/app`;
const fingerprint = (value: string) => createHash('sha256').update(value).digest('hex').slice(0, 12);

/** The example image's ENTRYPOINT and USER, as docker would read them. */
function imageConfig(): { entrypoint: string[]; user: string } {
  const dockerfile = readFileSync(join(EXAMPLE, 'Dockerfile'), 'utf8');
  const entrypoint = dockerfile.match(/^ENTRYPOINT (\[.*\])$/m)?.[1];
  const user = dockerfile.match(/^USER (\S+)$/m)?.[1];
  if (!entrypoint || !user) throw new Error('docker/example/Dockerfile has no exec-form ENTRYPOINT or USER');
  return { entrypoint: JSON.parse(entrypoint) as string[], user };
}

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

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;
let mountPoint: string;
let child: ChildProcess | undefined;

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  const cfg = `SECRET_KEY = "${CANARY}"\nDATABASE_URL = "${DATABASE_URL}"\n`;
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app/secrets.cfg.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(cfg)),
  );
  // On disk: only the tmpfs mounted over it in the container's mount namespace makes it acceptable.
  mountPoint = mkdtempSync(join(ROOT, '.e2e-mnt-'));
});

afterAll(async () => {
  if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await servers?.close();
  if (mountPoint) rmSync(mountPoint, { recursive: true, force: true });
});

/** The image's ENTRYPOINT args mapped to this machine: the tmpfs path and the app directory. */
function entrypointArgs(): { args: string[]; user: string } {
  const { entrypoint, user } = imageConfig();
  const rest = entrypoint.slice(1);
  const args = rest.map((arg, i) =>
    arg === '/run/secrets/app.cfg' ? join(mountPoint, 'app.cfg') : rest[i - 1] === '--chdir' ? EXAMPLE : arg,
  );
  return { args, user };
}

/** Runs the binary with `args` as PID 1 of fresh namespaces, as `user`, with a tmpfs; waits for /healthz. */
async function launch(args: string[], user: string, port: number, extraEnv: Record<string, string> = {}) {
  const [uid, gid] = user.split(':');
  const script = [
    `mount -t tmpfs -o size=1m,mode=0700,uid=${uid},gid=${gid} tmpfs "$MNT"`,
    `exec setpriv --reuid=${uid} --regid=${gid} --clear-groups "$@"`,
  ].join(' && ');
  const spawned = spawn(
    'unshare',
    ['--pid', '--fork', '--mount-proc', '-m', 'sh', '-c', script, 'sh', BINARY, ...args],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...BASE_ENV,
        ...servers.env,
        MNT: mountPoint,
        // What `docker run -e` and the image's ENV give the container.
        SECRET_FETCH_SOURCE: 'gs://vault/app/secrets.cfg.enc',
        SECRET_FETCH_KMS_KEY: KEY,
        SECRETS_FILE: join(mountPoint, 'app.cfg'),
        GREETING: 'hello from the image',
        DATABASE_URL: 'image-default',
        GUNICORN_CMD_ARGS: `--bind 127.0.0.1:${port} --workers 1 --graceful-timeout 5`,
        PYTHONDONTWRITEBYTECODE: '1',
        ...extraEnv,
      },
    },
  );
  child = spawned;
  let output = '';
  spawned.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  spawned.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    spawned.on('close', (code, signal) => resolve({ code, signal })),
  );

  // Ready when /healthz answers; bounded, and given up as soon as the process is gone.
  let ready = false;
  for (let attempt = 0; attempt < 150 && !ready && spawned.exitCode === null; attempt++) {
    try {
      ready = (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  expect(ready, output).toBe(true);
  return { spawned, exited, output: () => output, ready };
}

/** PID 1 of the namespace, seen from here: the one child of unshare. */
function namespacePid1(spawned: ChildProcess): number {
  return Number(readFileSync(`/proc/${spawned.pid}/task/${spawned.pid}/children`, 'utf8').trim().split(' ')[0]);
}

/**
 * Polls the app every 10 ms while `rotate` runs (300 ms in), until it serves `target` (or 15 s
 * pass, or the process exits), and 500 ms more: what it served, in order, and every failed request.
 */
async function pollThroughRotation(
  served: () => Promise<{ status: number; body: { secret_key_sha256: string } }>,
  spawned: ChildProcess,
  target: string,
  rotate: () => Promise<void>,
): Promise<{ seen: string[]; failures: string[]; switched: number }> {
  const seen: string[] = [];
  const failures: string[] = [];
  let polling = true;
  const client = (async () => {
    while (polling) {
      try {
        const { status, body } = await served();
        if (status === 200) seen.push(body.secret_key_sha256);
        else failures.push(`HTTP ${status}`);
      } catch (error) {
        failures.push(String((error as Error).cause ?? error));
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 300));
  await rotate();
  const deadline = Date.now() + 15_000;
  while (seen.at(-1) !== target && Date.now() < deadline && spawned.exitCode === null) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const switched = seen.length;
  await new Promise((resolve) => setTimeout(resolve, 500)); // and it stays on the new one
  polling = false;
  await client;
  return { seen, failures, switched };
}

describe('docker/example: gunicorn + Flask behind secret-fetch, as PID 1', () => {
  it('serves a secret-derived value, keeps PID 1, owns the 0400 file and stops with 0 on SIGTERM', async () => {
    const { entrypoint, user } = imageConfig();
    expect(user).toBe(`${APP_UID}:${APP_UID}`);
    const [program, ...rest] = entrypoint;
    expect(program).toBe('secret-fetch');
    // The image's paths, mapped to this machine: the binary, the tmpfs and the app directory.
    const args = rest.map((arg, i) =>
      arg === '/run/secrets/app.cfg' ? join(mountPoint, 'app.cfg') : rest[i - 1] === '--chdir' ? EXAMPLE : arg,
    );
    expect(args).toContain(join(mountPoint, 'app.cfg'));
    expect(args).toContain(EXAMPLE);
    const port = await freePort();

    const { spawned, exited, output, ready } = await launch(args, user, port);
    expect(ready, output()).toBe(true);

    const response = await fetch(`http://127.0.0.1:${port}/`);
    const text = await response.text();
    expect(response.status, text).toBe(200);
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain(DATABASE_URL);
    expect(JSON.parse(text)).toEqual({
      secret_key_sha256: fingerprint(CANARY),
      database_url_sha256: fingerprint(DATABASE_URL),
      database_url_from: 'environment',
      greeting: 'hello from the image',
      uid: APP_UID,
    });

    const pid = namespacePid1(spawned);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    expect(
      status
        .match(/^NSpid:\s+(.*)$/m)?.[1]
        ?.split(/\s+/)
        .at(-1),
    ).toBe('1');
    expect(status.match(/^Uid:\s+(\d+)/m)?.[1]).toBe(String(APP_UID));
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline.some((arg) => arg.endsWith('gunicorn'))).toBe(true);
    expect(cmdline).toContain('app:app');

    // The secrets file, through the container's own mount namespace: on tmpfs, 0400, the app's.
    const mounts = readFileSync(`/proc/${pid}/mounts`, 'utf8');
    expect(mounts).toContain(`tmpfs ${mountPoint} tmpfs `);
    const file = statSync(`/proc/${pid}/root${join(mountPoint, 'app.cfg')}`);
    expect({ mode: file.mode & 0o7777, uid: file.uid, gid: file.gid }).toEqual({
      mode: 0o400,
      uid: APP_UID,
      gid: APP_UID,
    });

    process.kill(pid, 'SIGTERM');
    const timer = setTimeout(() => spawned.kill('SIGKILL'), 10_000);
    const result = await exited;
    clearTimeout(timer);
    expect(result, output()).toEqual({ code: 0, signal: null });
    expect(output()).toMatch(/Handling signal: term/);
    expect(output()).not.toContain(CANARY);
  }, 30_000);

  it('with --supervise --refresh 500ms, serves a new object generation after the SIGHUP reload, no failed request', async () => {
    const { args, user } = entrypointArgs();
    const port = await freePort();
    const cfg = (key: string) => `SECRET_KEY = "${key}"\nDATABASE_URL = "${DATABASE_URL}"\n`;
    const upload = async (key: string) =>
      uploadObject(
        servers.gcs.url,
        'vault',
        'app/rotating.cfg.enc',
        await encryptWithKms(servers.kms.url, KEY, Buffer.from(cfg(key))),
      );
    const first = `first-${randomBytes(8).toString('hex')}`;
    const second = `second-${randomBytes(8).toString('hex')}`;
    await upload(first);
    // The same ENTRYPOINT; supervise and refresh from the environment, as `docker run -e` would.
    const { spawned, exited, output, ready } = await launch(args, user, port, {
      SECRET_FETCH_SOURCE: 'gs://vault/app/rotating.cfg.enc',
      SECRET_FETCH_SUPERVISE: '1',
      SECRET_FETCH_REFRESH: '500ms',
    });
    expect(ready, output()).toBe(true);
    const served = async () => {
      const response = await fetch(`http://127.0.0.1:${port}/`);
      return { status: response.status, body: (await response.json()) as { secret_key_sha256: string } };
    };
    expect((await served()).body.secret_key_sha256).toBe(fingerprint(first));

    // A client polls throughout: before, during and after the rotation and the reload.
    let generation = '';
    const { seen, failures, switched } = await pollThroughRotation(served, spawned, fingerprint(second), async () => {
      generation = await upload(second);
    });

    expect(failures, output()).toEqual([]);
    expect(seen.at(-1), output()).toBe(fingerprint(second));
    expect(seen[0]).toBe(fingerprint(first));
    // Old, then new: once the new value is served, the old one never comes back.
    const firstNew = seen.indexOf(fingerprint(second));
    expect(seen.slice(firstNew).every((f) => f === fingerprint(second))).toBe(true);
    expect(seen.slice(0, firstNew).every((f) => f === fingerprint(first))).toBe(true);
    expect(seen.length).toBeGreaterThan(switched);
    expect(output()).toContain(
      `(now generation ${generation}) changed: rewrote ${join(mountPoint, 'app.cfg')}; sent SIGHUP`,
    );
    expect(output()).toMatch(/Handling signal: hup/);

    // secret-fetch is PID 1 now, gunicorn its child; SIGTERM goes through and comes back as 0.
    const pid = namespacePid1(spawned);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('--');
    process.kill(pid, 'SIGTERM');
    const timer = setTimeout(() => spawned.kill('SIGKILL'), 10_000);
    const result = await exited;
    clearTimeout(timer);
    expect(result, output()).toEqual({ code: 0, signal: null });
    expect(output()).not.toContain(first);
    expect(output()).not.toContain(second);
  }, 30_000);
  it('with --supervise --refresh, a rotated sm:// reference (?destination=) is served after the reload, no failed request', async () => {
    const { args, user } = entrypointArgs();
    const port = await freePort();
    const cfg = (key: string) => `SECRET_KEY = "${key}"\nDATABASE_URL = "${DATABASE_URL}"\n`;
    const secret = `projects/e2e-project/secrets/app-cfg-${randomBytes(4).toString('hex')}`;
    const uri = `sm://e2e-project/${secret.split('/').at(-1)}`;
    const first = `first-${randomBytes(8).toString('hex')}`;
    const second = `second-${randomBytes(8).toString('hex')}`;
    await addSecretVersion(servers.secretManager.url, secret, Buffer.from(cfg(first)));
    // The app reads its settings from the file the reference names, as berglas users write it.
    const file = join(mountPoint, 'ref.cfg');
    const { spawned, exited, output, ready } = await launch(args, user, port, {
      SECRETS_FILE: `${uri}?destination=${file}`,
      SECRET_FETCH_SUPERVISE: '1',
      SECRET_FETCH_REFRESH: '500ms',
    });
    expect(ready, output()).toBe(true);
    const served = async () => {
      const response = await fetch(`http://127.0.0.1:${port}/`);
      return { status: response.status, body: (await response.json()) as { secret_key_sha256: string } };
    };
    expect((await served()).body.secret_key_sha256).toBe(fingerprint(first));

    const { seen, failures } = await pollThroughRotation(served, spawned, fingerprint(second), async () => {
      await addSecretVersion(servers.secretManager.url, secret, Buffer.from(cfg(second)));
    });

    expect(failures, output()).toEqual([]);
    expect(seen[0]).toBe(fingerprint(first));
    expect(seen.at(-1), output()).toBe(fingerprint(second));
    const firstNew = seen.indexOf(fingerprint(second));
    expect(seen.slice(firstNew).every((f) => f === fingerprint(second))).toBe(true);
    expect(seen.slice(0, firstNew).every((f) => f === fingerprint(first))).toBe(true);
    expect(output()).toContain(`$SECRETS_FILE (${uri} (now version 2)) changed: rewrote ${file}; sent SIGHUP`);

    process.kill(namespacePid1(spawned), 'SIGTERM');
    const timer = setTimeout(() => spawned.kill('SIGKILL'), 10_000);
    const result = await exited;
    clearTimeout(timer);
    expect(result, output()).toEqual({ code: 0, signal: null });
    expect(output()).not.toContain(first);
    expect(output()).not.toContain(second);
  }, 30_000);
});
