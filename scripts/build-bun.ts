// The Bun-compiled binary (issue 14): `npm run build -- --runtime=bun` (or
// SECRET_FETCH_BUILD_RUNTIME=bun) writes dist/secret-fetch with it; the bench and the tests build
// dist/secret-fetch-bun. The one place that holds Bun's build flags.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
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

/** Compiles src/cli.ts with the pinned Bun into `output`, replaced atomically. */
export function buildWithBun(output: string): void {
  mkdirSync(dirname(output), { recursive: true });
  const work = `${output}.${process.pid}.tmp`;
  const built = spawnSync(BUN, ['build', ...BUN_BUILD_FLAGS, join(root, 'src', 'cli.ts'), '--outfile', work], {
    cwd: root,
    encoding: 'utf8',
  });
  if (built.status !== 0) {
    rmSync(work, { force: true });
    throw new Error(`bun build --compile failed: ${built.stderr}${built.stdout}`);
  }
  renameSync(work, output);
}

/**
 * dist/secret-fetch-bun, built first when it is missing or older than the source (src/,
 * package.json, this file): the tests' beforeAll and the bench share one build.
 */
export function ensureBunBinary(force = false): string {
  if (force || !isFresh(BUN_BINARY)) buildWithBun(BUN_BINARY);
  return BUN_BINARY;
}

function isFresh(binary: string): boolean {
  let built: number;
  try {
    built = statSync(binary).mtimeMs;
  } catch {
    return false;
  }
  const inputs = [join(root, 'package.json'), fileURLToPath(import.meta.url), ...filesUnder(join(root, 'src'))];
  return inputs.every((file) => statSync(file).mtimeMs <= built);
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}
