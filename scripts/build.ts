// npm run build: esbuild bundle -> Node single executable application -> dist/secret-fetch.
// Runs offline: the SEA base is the pinned Node 24 binary from node_modules, not a download.
// `npm run build -- --runtime=bun` (or SECRET_FETCH_BUILD_RUNTIME=bun) writes dist/secret-fetch
// with the pinned Bun instead (scripts/build-bun.ts).

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
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { build, type Metafile, type PluginBuild } from 'esbuild';
import { inject } from 'postject';
import { buildRuntime, buildWithBun } from './build-bun.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const output = join(root, 'dist', 'secret-fetch');

if (buildRuntime(process.argv.slice(2), process.env) === 'bun') {
  const started = Date.now();
  buildWithBun(output);
  const version = execFileSync(output, ['--version'], { encoding: 'utf8', cwd: '/', env: {} }).trim();
  console.log(`built ${output} ${version} with Bun in ${Date.now() - started} ms`);
  process.exit(0);
}

if (!process.version.startsWith('v24.')) {
  throw new Error(`build with the pinned Node 24 (npm run build), not ${process.version}`);
}

// A private work directory and an atomic rename at the end: concurrent builds (and tests running
// the previous binary) never see a half-written file.
mkdirSync(join(root, 'build'), { recursive: true });
mkdirSync(dirname(output), { recursive: true });
const work = mkdtempSync(join(root, 'build', 'work-'));

// Libraries most runs never need go into separate scripts, one per group, each loaded on first
// use by scripts/sea-vendor-loader.js: the fast local path never parses or runs them.
// Secret Manager's client (google-gax, gRPC and protobuf definitions: about 1.3 MiB) is a group of
// its own, so a gs:// run does not deserialize it; it takes google-auth-library from the google
// group, so every client shares one copy of the credential classes.
const VENDOR_GROUPS: Record<string, string[]> = {
  google: ['@google-cloud/storage', 'google-auth-library'],
  gax: ['@google-cloud/secret-manager/build/src/v1/secret_manager_service_client.js', 'google-gax/fallback'],
  yaml: ['yaml'],
  toml: ['smol-toml'],
};
const groupOf = Object.fromEntries(
  Object.entries(VENDOR_GROUPS).flatMap(([group, ids]) => ids.map((id) => [id, group])),
);
const VENDOR_PATTERN = /^(@google-cloud\/|google-auth-library$|google-gax(\/|$)|yaml$|smol-toml$)/;

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
  logLevel: 'warning',
} as const;

// Our own code that only the operator subcommands run (push, edit, sign, doctor, ...) is one more
// group, so the entrypoint's script stays small. It must share the main script's module instances
// (error classes, Secret, the pipeline), so its imports of modules the main script holds become
// "@secret-fetch/core/<path>" requires, answered from globalThis.__sfCore, which the main script fills.
const INTERNAL_GROUPS: Record<string, string[]> = {
  ops: ['show', 'push', 'edit', 'sign', 'doctor'].map((name) => `src/commands/${name}.ts`),
};
for (const [group, files] of Object.entries(INTERNAL_GROUPS)) {
  for (const file of files) groupOf[`@secret-fetch/${group}/${file}`] = group;
}
const internalOf = Object.fromEntries(
  Object.entries(INTERNAL_GROUPS).flatMap(([group, files]) => files.map((file) => [file, group])),
);

const vendorExternal = {
  name: 'vendor-external',
  setup(b: PluginBuild) {
    b.onResolve({ filter: VENDOR_PATTERN }, (args) => {
      if (!(args.path in groupOf)) throw new Error(`${args.path}: add it to VENDOR_GROUPS in scripts/build.ts`);
      return { path: args.path, external: true };
    });
  },
};
/** The main script reaches a subcommand module only through the loader. */
const internalExternal = {
  name: 'internal-external',
  setup(b: PluginBuild) {
    b.onResolve({ filter: /^\.\.?\// }, (args) => {
      const file = relative(root, resolve(args.resolveDir, args.path));
      const group = internalOf[file];
      return group === undefined ? undefined : { path: `@secret-fetch/${group}/${file}`, external: true };
    });
  },
};
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
  plugins: [vendorExternal, internalExternal],
});
const coreFiles = new Set(Object.keys(core.metafile.inputs).filter((file) => file.startsWith('src/')));

const metafiles: Metafile[] = [];
const assets: Record<string, string> = {};
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
  plugins: [vendorExternal, internalExternal],
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
  writeFileSync(join(work, `${group}.cache`), codeCache(code, warmIds));
  assets[`${group}.js`] = file;
  assets[`${group}.cache`] = join(work, `${group}.cache`);
  vendorBytes += code.length;
}
writeFileSync(join(root, 'build', 'meta.json'), JSON.stringify(mergeMetafiles(metafiles)));

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
execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: 'inherit' });

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
  `built ${output} ${version} (main ${(bytes / 1024).toFixed(0)} KiB, lazy groups ${(vendorBytes / 1024).toFixed(0)} KiB) in ${Date.now() - started} ms`,
);

// Compile a vendor script, run it and load each of its libraries once, so the cache also holds
// the functions that only compile when called; the binary's V8 is this Node's, so it accepts it.
function codeCache(code: string, ids: string[] | undefined): Buffer {
  const script = new Script(code, { filename: 'vendor.js' });
  if (ids === undefined) return script.createCachedData();
  const module = { exports: {} as (id: string) => unknown };
  script.runInThisContext()(createRequire(import.meta.url), module, module.exports, '/secret-fetch', '/');
  for (const id of ids) module.exports(id);
  return script.createCachedData();
}

function mergeMetafiles(all: Metafile[]): Metafile {
  return {
    inputs: Object.assign({}, ...all.map((m) => m.inputs)),
    outputs: Object.assign({}, ...all.map((m) => m.outputs)),
  };
}
