// The Bun-compiled binary (issue 14), what `npm run build` writes to dist/secret-fetch unless
// --runtime=node; test/bun-runtime.test.ts builds dist/secret-fetch-bun; npm run release builds one per architecture (scripts/release.ts). The one
// place that holds Bun's build flags, and the runtime each architecture's binary is made of.

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The pinned Bun (devDependency): the binary it compiles carries this very runtime. */
export const BUN = join(root, 'node_modules', '.bin', 'bun');
/** Where the bench and the tests keep the Bun build beside the default one. */
export const BUN_BINARY = join(root, 'dist', 'secret-fetch-bun');

/**
 * Flags of `bun build` for src/cli.ts. --minify-identifiers is left out: Bun's --keep-names keeps
 * no names (oven-sh/bun#12304, #25332), and protobufjs and google-gax look types up by constructor
 * name ("Long"), so every Secret Manager write ended in "internal error". (Renaming them too made
 * no difference to the start or the RSS, measured on copies on the same filesystem.)
 */
export const BUN_BUILD_FLAGS: readonly string[] = [
  '--compile',
  '--bytecode',
  // ESM with splitting: what only some runs need (the cloud clients, the subcommands) stays in
  // chunks that load on import(), so the local path maps and runs less: 1.2 MiB less peak RSS
  // than one CommonJS file, measured on the local path.
  '--format=esm',
  '--splitting',
  '--minify-syntax',
  '--minify-whitespace',
  // The compiled binary must not read the working directory's .env (and hand it to the command),
  // bunfig.toml (preload scripts), tsconfig.json or package.json.
  '--no-compile-autoload-dotenv',
  '--no-compile-autoload-bunfig',
  '--no-compile-autoload-tsconfig',
  '--no-compile-autoload-package-json',
];

export type BuildRuntime = 'node' | 'bun';

/** `--runtime=bun|node` on the command line, else SECRET_FETCH_BUILD_RUNTIME, else bun (issue 14: the README's "Choices"). */
export function buildRuntime(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): BuildRuntime {
  const i = argv.indexOf('--runtime');
  const flag = i === -1 ? argv.find((a) => a.startsWith('--runtime='))?.slice(10) : argv[i + 1];
  const value = flag ?? env.SECRET_FETCH_BUILD_RUNTIME ?? 'bun';
  if (value !== 'node' && value !== 'bun') {
    throw new Error(`--runtime / SECRET_FETCH_BUILD_RUNTIME must be node or bun, not ${JSON.stringify(value)}`);
  }
  return value;
}

/** The architectures npm run release ships. */
export const ARCHES = ['x64', 'arm64'] as const;
export type Arch = (typeof ARCHES)[number];

/** Bun's name of each architecture in its npm packages (@oven/bun-linux-aarch64). */
const BUN_CPU: Record<Arch, string> = { x64: 'x64', arm64: 'aarch64' };

/** The Bun runtime that a binary for `arch` is made of. */
export interface BunRuntime {
  readonly arch: Arch;
  /** Its npm package, @oven/bun-linux-ARCH (its package.json names it in the SBOM). */
  readonly packageDir: string;
  /** The bun executable that `--compile` copies into the binary. */
  readonly executable: string;
}

/** This machine's architecture, if secret-fetch is built for it. */
export function hostArch(): Arch {
  const arch = ARCHES.find((a) => a === process.arch);
  if (arch === undefined) throw new Error(`secret-fetch is built for linux-x64 or linux-arm64, not ${process.arch}`);
  return arch;
}

/**
 * The pinned runtime for `arch`. This machine's is the devDependency `bun` itself (its install
 * script moved the binary of @oven/bun-linux-ARCH to node_modules/bun/bin). Another architecture's
 * is that package of the same version, which package-lock.json pins with its integrity as bun's
 * optional dependency and npm ci skips on this CPU: `npm pack` fetches it (from npm's cache when
 * it is there) into build/bun-runtimes/linux-ARCH, checked against the lockfile's integrity.
 */
export function bunRuntime(arch: Arch): BunRuntime {
  const name = `@oven/bun-linux-${BUN_CPU[arch]}`;
  if (arch === hostArch()) return { arch, packageDir: join(root, 'node_modules', name), executable: BUN };
  const dir = join(root, 'build', 'bun-runtimes', `linux-${arch}`);
  const pinned = lockedPackage(name);
  const bun = lockedPackage('bun').version;
  if (pinned.version !== bun) throw new Error(`package-lock.json pins ${name}@${pinned.version} beside bun@${bun}`);
  if (!existsSync(join(dir, 'integrity')) || readFileSync(join(dir, 'integrity'), 'utf8') !== pinned.integrity) {
    unpackPinned(name, pinned, dir);
  }
  return { arch, packageDir: join(dir, 'package'), executable: join(dir, 'package', 'bin', 'bun') };
}

export interface LockedPackage {
  version: string;
  integrity: string;
}

/** The version and integrity package-lock.json pins for node_modules/NAME. */
export function lockedPackage(name: string): LockedPackage {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, Partial<LockedPackage>>;
  };
  const { version, integrity } = lock.packages[`node_modules/${name}`] ?? {};
  if (version === undefined || integrity === undefined) throw new Error(`package-lock.json pins no ${name}`);
  return { version, integrity };
}

/** `npm pack` of name@version, checked against the lockfile's integrity, unpacked as dir/package. */
export function unpackPinned(name: string, pinned: LockedPackage, dir: string): void {
  const work = `${dir}.${process.pid}.tmp`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const packed = execFileSync(
    'npm',
    ['pack', `${name}@${pinned.version}`, '--prefer-offline', '--pack-destination', work, '--json'],
    { cwd: work, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const tarball = join(work, (JSON.parse(packed) as { filename: string }[])[0]?.filename ?? '');
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  if (integrity !== pinned.integrity) {
    rmSync(work, { recursive: true, force: true });
    throw new Error(`npm pack ${name}@${pinned.version} is not what package-lock.json pins: ${integrity}`);
  }
  execFileSync('tar', ['-xzf', tarball, '-C', work]);
  rmSync(tarball);
  writeFileSync(join(work, 'integrity'), pinned.integrity);
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
}

/**
 * `bun build` arguments that compile src/cli.ts into `outfile` for `runtime`'s architecture. The
 * runtime is always given: Bun downloads a target's runtime from GitHub when it has none.
 */
export function bunBuildArgs(runtime: BunRuntime, outfile: string, metafile?: string): string[] {
  return [
    'build',
    ...BUN_BUILD_FLAGS,
    `--target=bun-linux-${runtime.arch}`,
    `--compile-executable-path=${runtime.executable}`,
    ...(metafile === undefined ? [] : [`--metafile=${metafile}`]),
    join(root, 'src', 'cli.ts'),
    '--outfile',
    outfile,
  ];
}

/**
 * Compiles src/cli.ts with the pinned Bun into `output` (for `arch`, this machine's by default),
 * replaced atomically, and writes what it bundled (esbuild's metafile format) to `metafile`.
 */
export function buildWithBun(output: string, options: { arch?: Arch; metafile?: string } = {}): void {
  const runtime = bunRuntime(options.arch ?? hostArch());
  mkdirSync(dirname(output), { recursive: true });
  // Bun writes the output's file name into the binary: built under that name in a directory of its
  // own, the same source gives the same bytes each time.
  const work = mkdtempSync(join(dirname(output), '.bun-build-'));
  try {
    const meta = join(work, 'meta.json');
    const args = bunBuildArgs(runtime, join(work, basename(output)), options.metafile === undefined ? undefined : meta);
    const built = spawnSync(BUN, args, { cwd: root, encoding: 'utf8' });
    if (built.status !== 0) throw new Error(`bun build --compile failed: ${built.stderr}${built.stdout}`);
    if (options.metafile !== undefined) {
      mkdirSync(dirname(options.metafile), { recursive: true });
      renameSync(meta, options.metafile);
    }
    renameSync(join(work, basename(output)), output);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * dist/secret-fetch-bun, built first when it is missing or older than the source (src/,
 * package.json, this file): the tests' beforeAll and the bench share one build.
 */
export function ensureBunBinary(force = false): string {
  if (force || !isFresh(BUN_BINARY)) buildWithBun(BUN_BINARY);
  return BUN_BINARY;
}

/** Where the bench and the tests keep the other candidate, the Node SEA (`npm run build -- --runtime=node`). */
export const SEA_BINARY = join(root, 'dist', 'secret-fetch-sea');

/** dist/secret-fetch-sea, built first when it is missing or older than its source. */
export function ensureSeaBinary(force = false): string {
  const scripts = ['build.ts', 'bundle-plan.ts', 'code-cache.ts', 'sea-vendor-loader.js'].map((f) =>
    join(root, 'scripts', f),
  );
  if (force || !isFresh(SEA_BINARY, scripts)) {
    const built = spawnSync(
      process.execPath,
      [join(root, 'scripts', 'build.ts'), '--runtime=node', '--output', SEA_BINARY],
      {
        cwd: root,
        encoding: 'utf8',
      },
    );
    if (built.status !== 0) throw new Error(`building the Node SEA failed: ${built.stderr}${built.stdout}`);
  }
  return SEA_BINARY;
}

/** Whether `built` exists and is newer than the source it is built from (and `more` files). */
export function isFresh(built: string, more: string[] = []): boolean {
  let time: number;
  try {
    time = statSync(built).mtimeMs;
  } catch {
    return false;
  }
  const inputs = [
    join(root, 'package.json'),
    fileURLToPath(import.meta.url),
    ...filesUnder(join(root, 'src')),
    ...more,
  ];
  return inputs.every((file) => statSync(file).mtimeMs <= time);
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}
