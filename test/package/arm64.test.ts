// npm run release and its arm64 binary (issue 14.4): both Bun-compiled binaries, glibc alone, built
// offline and the same bytes each time, SHA256SUMS and the SBOM, then the linux-arm64 binary's main
// paths under qemu-aarch64-static (Debian's qemu-user-static; its loader and glibc from
// libc6-arm64-cross, found through QEMU_LD_PREFIX).
//
// qemu-user runs one guest program: when the guest calls execve, the host kernel runs the new
// program. With no binfmt_misc handler, an arm64 secret-fetch refuses an x86-64 command (rightly for
// arm64 hardware), and its own restart (a runtime variable set) or an arm64 command would fail in
// execve. So the exec paths run in a user and mount namespace of their own, where a private
// binfmt_misc (Linux >= 6.7) hands arm64 programs to qemu-aarch64-static, as on a Docker host that
// runs arm64 images: nothing outside the namespace sees that handler.
//
// The release is built again when the source (or the release's scripts) changed since the last one.

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARCHES, BUN, bunBuildArgs, bunRuntime, isFresh } from '../../scripts/build-bun.ts';
import { bundledPackageDirs, npmPurl } from '../../scripts/release.ts';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { expectFailure, filesIn, KEY, type Result, ROOT, runBinary, tmpfsDir } from '../integration/harness.ts';
import { startTestServers } from '../servers/start.ts';

const DIST = join(ROOT, 'dist');
const ARM64 = join(DIST, 'secret-fetch-linux-arm64');
const X64 = join(DIST, 'secret-fetch-linux-x64');
const QEMU = 'qemu-aarch64-static';
const LIBS = '/usr/aarch64-linux-gnu';
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
/** What glibc's packages (libc6, libc6-arm64-cross) install: the loaders and glibc's own libraries. */
const GLIBC = /^(ld-linux-(x86-64|aarch64)\.so\.[12]|lib(c|m|dl|pthread|rt|resolv|util|anl)\.so\.[0-9]+)$/;
// Debian's /usr/lib/binfmt.d/qemu-aarch64.conf, with the static qemu opened now (F) as interpreter.
const BINFMT =
  ':qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:' +
  '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64-static:F';

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;
let out: ReturnType<typeof tmpfsDir>;

/** The arm64 binary under qemu-user, no binfmt handler: the guest's execve goes to the host kernel. */
function qemu(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return runBinary([ARM64, ...args], { command: QEMU, env: { QEMU_LD_PREFIX: LIBS, ...env } });
}

/** The same, in a namespace whose own binfmt_misc runs arm64 programs with qemu (one process: no fork). */
function qemuWithBinfmt(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const setup =
    'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && printf %s "$1" >/proc/sys/fs/binfmt_misc/register && shift && exec "$@"';
  return runBinary(['--user', '--map-root-user', '--mount', 'sh', '-c', setup, 'sh', BINFMT, QEMU, ARM64, ...args], {
    command: 'unshare',
    env: { QEMU_LD_PREFIX: LIBS, ...env },
  });
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** ELF e_machine: 62 x86-64, 183 aarch64. */
function machine(file: string): number {
  return readFileSync(file).readUInt16LE(18);
}

/** The NEEDED entries of an ELF file's dynamic section (`readelf -d`, what ldd resolves). */
function needed(file: string): string[] {
  const dynamic = execFileSync('readelf', ['-d', file], { encoding: 'utf8' });
  return [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1] as string);
}

beforeAll(async () => {
  // A release written after the source and the release's own scripts, and after its own files.
  const mtime = (file: string) => (existsSync(file) ? statSync(file).mtimeMs : Number.POSITIVE_INFINITY);
  const sums = join(DIST, 'SHA256SUMS');
  const scripts = ['release.ts', 'build-bun.ts'].map((file) => join(ROOT, 'scripts', file));
  if (
    !isFresh(sums, scripts) ||
    [X64, ARM64, join(DIST, 'secret-fetch.cdx.json')].some((f) => mtime(f) > mtime(sums))
  ) {
    execFileSync(process.execPath, [join(ROOT, 'scripts', 'release.ts')], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  }
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app/secrets.cfg.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(`SECRET_KEY = "${CANARY}"\nDEBUG = False\n`)),
  );
  out = tmpfsDir();
}, 600_000);

afterAll(async () => {
  await servers?.close();
  out?.cleanup();
});

describe('npm run release', () => {
  it('writes a binary per architecture, and SHA256SUMS that sha256sum -c verifies', () => {
    expect(machine(X64)).toBe(62);
    expect(machine(ARM64)).toBe(183);
    expect(execFileSync(X64, ['--version'], { encoding: 'utf8', env: {} })).toBe(`${manifest.version}\n`);
    const sums = readFileSync(join(DIST, 'SHA256SUMS'), 'utf8');
    expect(
      sums
        .trimEnd()
        .split('\n')
        .map((line) => line.split('  ')[1]),
    ).toEqual(['secret-fetch-linux-x64', 'secret-fetch-linux-arm64', 'secret-fetch.cdx.json']);
    const checked = execFileSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: DIST, encoding: 'utf8' });
    expect(checked).toBe('secret-fetch-linux-x64: OK\nsecret-fetch-linux-arm64: OK\nsecret-fetch.cdx.json: OK\n');
  });

  it("writes an SBOM naming each binary's hash, its own Bun runtime and the packages inside it", () => {
    const bom = JSON.parse(readFileSync(join(DIST, 'secret-fetch.cdx.json'), 'utf8')) as {
      components: { 'bom-ref': string; type: string; hashes?: { content: string }[] }[];
      dependencies: { ref: string; dependsOn: string[] }[];
    };
    const x64 = npmPurl('@oven/bun-linux-x64', manifest.devDependencies.bun);
    const arm64 = npmPurl('@oven/bun-linux-aarch64', manifest.devDependencies.bun);
    for (const [file, runtime, other] of [
      [X64, x64, arm64],
      [ARM64, arm64, x64],
    ] as const) {
      const name = file.slice(DIST.length + 1);
      const ref = `file:${name}`;
      expect(bom.components.find((c) => c['bom-ref'] === ref)?.hashes).toEqual([
        { alg: 'SHA-256', content: sha256(file) },
      ]);
      // Exactly the packages Bun put into this binary (its metafile), each as its package.json says.
      const meta = JSON.parse(readFileSync(join(ROOT, 'build', 'release', `${name}.meta.json`), 'utf8'));
      const packages = bundledPackageDirs(Object.keys(meta.inputs)).map((dir) => {
        const pkg = JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8'));
        return npmPurl(pkg.name, pkg.version);
      });
      expect(packages).toContain(`pkg:npm/yaml@${manifest.dependencies.yaml}`);
      const needs = bom.dependencies.find((d) => d.ref === ref)?.dependsOn ?? [];
      expect(needs).toEqual([...new Set([runtime, ...packages])].sort());
      expect(needs).not.toContain(other);
    }
    expect(bom.components.filter((c) => c.type === 'platform').map((c) => c['bom-ref'])).toEqual([arm64, x64]);
  });

  it('links glibc alone, no C++ runtime (readelf -d, the list ldd resolves)', () => {
    for (const [file, loader] of [
      [X64, '/lib64/ld-linux-x86-64.so.2'],
      [ARM64, '/lib/ld-linux-aarch64.so.1'],
    ] as const) {
      const libraries = needed(file);
      expect(libraries).toContain('libc.so.6');
      expect(libraries.filter((library) => !GLIBC.test(library))).toEqual([]);
      expect(libraries.join(' ')).not.toMatch(/libstdc\+\+|libgcc_s/);
      const headers = execFileSync('readelf', ['-l', file], { encoding: 'utf8' });
      expect(headers).toContain(`[Requesting program interpreter: ${loader}]`);
    }
  });

  it('compiles without the network to the same bytes: Bun downloads no runtime, and a rebuild matches the release', () => {
    const work = mkdtempSync('/tmp/secret-fetch-release-');
    try {
      for (const arch of ARCHES) {
        const name = `secret-fetch-linux-${arch}`;
        // A network namespace with loopback only, and an empty home: no download, no cached runtime.
        const built = spawnSync(
          'unshare',
          ['--user', '--map-root-user', '--net', BUN, ...bunBuildArgs(bunRuntime(arch), join(work, name))],
          { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: work } },
        );
        expect(built.status, built.stderr).toBe(0);
        expect(sha256(join(work, name)), name).toBe(sha256(join(DIST, name)));
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('the linux-arm64 binary under qemu-aarch64-static', () => {
  it('prints its version and help', async () => {
    const version = await qemu(['--version']);
    expect(version).toMatchObject({ code: 0, stdout: `${manifest.version}\n`, stderr: '' });
    const help = await qemu(['--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(new RegExp(`^secret-fetch ${manifest.version}: `));
    expect(help.stdout).toContain('Usage: secret-fetch [options] [-- COMMAND [ARG...]]');
  });

  it('refuses bad input with one line and its exit code, before any command starts', async () => {
    const marker = join(out.dir, 'started');
    const missing = await qemu(['--source', join(out.dir, 'missing.env'), '--env', '--', 'touch', marker]);
    expectFailure(missing, EXIT.notFound, /^secret-fetch: error: .*missing\.env/);
    // Without a binfmt handler, an x86-64 command is for another CPU: found by reading its header.
    const env = join(out.dir, 'a.env');
    writeFileSync(env, `A=${CANARY}\n`);
    const foreign = await qemu(['--source', env, '--env', '--', '/bin/touch', marker]);
    expectFailure(
      foreign,
      EXIT.notExecutable,
      /^secret-fetch: error: cannot run \/bin\/touch: .*it is a program for x86-64 \(amd64\), but this machine is ARM64 \(aarch64\)/,
      [CANARY],
    );
    expect(existsSync(marker)).toBe(false);
  });

  it('execs a command in its own process with the env of a local source, x86-64 or arm64', async () => {
    const env = join(out.dir, 'local.env');
    writeFileSync(env, `A=${CANARY}\nB=two words\n`);
    const host = await qemuWithBinfmt(['--source', env, '--env', '--', '/bin/sh', '-c', 'echo "pid=$$ a=$A b=$B"']);
    expect(host.stderr).toBe('');
    expect(host.code).toBe(0);
    expect(host.stdout).toBe(`pid=${host.pid} a=${CANARY} b=two words\n`);
    // An arm64 command through the namespace's binfmt handler: the pinned arm64 Bun, started by the
    // cross packages' loader (a static program), since this machine has no /lib/ld-linux-aarch64.so.1.
    const arm = await qemuWithBinfmt([
      '--source',
      env,
      '--env',
      '--',
      join(LIBS, 'lib', 'ld-linux-aarch64.so.1'),
      '--library-path',
      join(LIBS, 'lib'),
      bunRuntime('arm64').executable,
      '-e',
      "console.log('pid=' + process.pid, process.arch, 'a=' + process.env.A)",
    ]);
    expect(arm.stderr).toBe('');
    expect(arm).toMatchObject({ code: 0, stdout: `pid=${arm.pid} arm64 a=${CANARY}\n` });
  });

  it('fetches gs:// through KMS to tmpfs and the env, then execs; also after restarting without NODE_*, BUN_*', async () => {
    const restarts: Record<string, string>[] = [
      {},
      { NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt', BUN_CONFIG_VERBOSE_FETCH: 'curl' },
    ];
    for (const restart of restarts) {
      const cfg = join(out.dir, 'app.cfg');
      const result = await qemuWithBinfmt(
        [
          '--source',
          'gs://vault/app/secrets.cfg.enc',
          '--kms-key',
          KEY,
          '--out',
          cfg,
          '--env',
          '--',
          '/bin/sh',
          '-c',
          'echo "pid=$$ key=$SECRET_KEY debug=$DEBUG extra=$NODE_EXTRA_CA_CERTS verbose=$BUN_CONFIG_VERBOSE_FETCH"',
        ],
        { ...servers.env, ...restart },
      );
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(
        `pid=${result.pid} key=${CANARY} debug=false extra=${restart.NODE_EXTRA_CA_CERTS ?? ''} verbose=${restart.BUN_CONFIG_VERBOSE_FETCH ?? ''}\n`,
      );
      expect(readFileSync(cfg, 'utf8')).toBe(`SECRET_KEY = "${CANARY}"\nDEBUG = False\n`);
      expect(lstatSync(cfg).mode & 0o777).toBe(0o400);
      expect(filesIn(out.dir)).toContain('app.cfg');
      rmSync(cfg);
    }
  });
});
