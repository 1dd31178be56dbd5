// A Docker engine of the tests' own: Debian's dockerd with its own data root and socket, no bridge
// and no iptables (every build and run uses --network host, so traffic stays on loopback or goes to
// the package mirrors). Base images come from Debian's packages (debootstrap + docker import),
// because no image registry is reachable. The data root and the debootstrap tarball live outside
// the repository, in CACHE, so a second run on one machine reuses the images and the build cache.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CACHE = '/var/cache/secret-fetch-test';
/** docker runs here, so relative paths (-f docker/Dockerfile) read as in the README. */
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUN_DIR = '/run/secret-fetch-test';
const SOCKET = `unix://${RUN_DIR}/docker.sock`;
const LOG = join(CACHE, 'dockerd.log');
const MINBASE_TARBALL = join(CACHE, 'bookworm-minbase.tar.gz');
export const MINBASE = 'secret-fetch-test/bookworm:minbase';

// The legacy builder: Debian's daemon (20.10) has no BuildKit; DOCKER_BUILDKIT=0 also keeps a newer
// client from asking for it.
export const DOCKER_ENV = { ...process.env, DOCKER_HOST: SOCKET, DOCKER_BUILDKIT: '0' };

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export function docker(args: string[], options: { input?: string } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'docker',
      args,
      { cwd: REPO, env: DOCKER_ENV, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(error);
        else resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** docker ARGS that must succeed: its output, or an error with its stderr. */
export async function dockerOk(args: string[]): Promise<string> {
  const result = await docker(args);
  if (result.code !== 0) {
    throw new Error(`docker ${args.join(' ')} exited ${result.code}:\n${result.stderr.slice(-4000)}`);
  }
  return result.stdout;
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024 }, (error, _stdout, stderr) => {
      if (error)
        reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${String(stderr).slice(-4000)}`));
      else resolve();
    });
  });
}

let daemon: ChildProcess | undefined;

/** Starts dockerd and waits until it answers; throws with its log's tail if it cannot start. */
export async function startEngine(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the container tests start dockerd, which needs root');
  mkdirSync(CACHE, { recursive: true });
  mkdirSync(RUN_DIR, { recursive: true });
  const log = openSync(LOG, 'w');
  daemon = spawn(
    'dockerd',
    [
      `--data-root=${join(CACHE, 'docker')}`,
      `--exec-root=${join(RUN_DIR, 'exec')}`,
      `--pidfile=${join(RUN_DIR, 'dockerd.pid')}`,
      `--host=${SOCKET}`,
      '--bridge=none',
      '--iptables=false',
      '--ip-forward=false',
      '--ip-masq=false',
      // Apart from a system dockerd sharing a system containerd, should the machine run one.
      '--containerd-namespace=secret-fetch-test',
      '--containerd-plugins-namespace=secret-fetch-test-plugins',
    ],
    { stdio: ['ignore', log, log] },
  );
  let exited = false;
  daemon.once('exit', () => {
    exited = true;
  });
  daemon.once('error', () => {
    exited = true;
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!exited && (await docker(['version', '--format', '{{.Server.Version}}']).catch(() => undefined))?.code === 0) {
      return;
    }
    if (exited || Date.now() > deadline) {
      const tail = existsSync(LOG) ? readFileSync(LOG, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new Error(`dockerd did not start (is docker.io installed? npm test installs it as root):\n${tail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export async function stopEngine(): Promise<void> {
  const child = daemon;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await done;
  clearTimeout(timer);
}

/** The Debian mirror this machine's apt already uses (deb822 .sources or one-line sources.list). */
export function aptMirror(): string {
  const files = ['/etc/apt/sources.list'];
  const dir = '/etc/apt/sources.list.d';
  if (existsSync(dir)) files.push(...readdirSync(dir).map((name) => join(dir, name)));
  for (const file of files) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const uri =
      text.match(/^URIs:\s*(\S+\/debian)\/?\s*$/m)?.[1] ??
      text.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s/m)?.[1];
    if (uri) return uri;
  }
  return 'http://deb.debian.org/debian';
}

/** MINBASE in the engine: imported from the cached tarball, made with debootstrap the first time. */
export async function ensureMinbase(): Promise<void> {
  if ((await docker(['image', 'inspect', MINBASE])).code === 0) return;
  if (!existsSync(MINBASE_TARBALL)) {
    const root = mkdtempSync(join(CACHE, 'debootstrap-'));
    try {
      await run('debootstrap', ['--variant=minbase', 'bookworm', root, aptMirror()]);
      // The downloaded .debs and package lists are not part of a base image.
      rmSync(join(root, 'var/cache/apt/archives'), { recursive: true, force: true });
      mkdirSync(join(root, 'var/cache/apt/archives/partial'), { recursive: true });
      rmSync(join(root, 'var/lib/apt/lists'), { recursive: true, force: true });
      mkdirSync(join(root, 'var/lib/apt/lists/partial'), { recursive: true });
      const partial = `${MINBASE_TARBALL}.partial`;
      await run('sh', ['-c', `tar -C "$0" -c . | gzip -1 > "$1" && mv "$1" "$2"`, root, partial, MINBASE_TARBALL]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
  await dockerOk(['import', MINBASE_TARBALL, MINBASE]);
}
