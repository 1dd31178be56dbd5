// npm run build: esbuild bundle -> Node single executable application -> dist/secret-fetch.
// Runs offline: the SEA base is the pinned Node 24 binary from node_modules, not a download.

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
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { inject } from 'postject';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const output = join(root, 'dist', 'secret-fetch');

if (!process.version.startsWith('v24.')) {
  throw new Error(`build with the pinned Node 24 (npm run build), not ${process.version}`);
}

// A private work directory and an atomic rename at the end: concurrent builds (and tests running
// the previous binary) never see a half-written file.
mkdirSync(join(root, 'build'), { recursive: true });
mkdirSync(dirname(output), { recursive: true });
const work = mkdtempSync(join(root, 'build', 'work-'));

const started = Date.now();
const bundle = join(work, 'secret-fetch.cjs');
const result = await build({
  entryPoints: [join(root, 'src', 'cli.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  minify: true,
  // protobufjs and google-gax look types up by constructor name: renaming them breaks KMS calls.
  keepNames: true,
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
});
writeFileSync(join(root, 'build', 'meta.json'), JSON.stringify(result.metafile));

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
    // The binary must not read NODE_OPTIONS or argv as Node options: its flags are its own.
    execArgvExtension: 'none',
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
console.log(`built ${output} ${version} (bundle ${(bytes / 1024).toFixed(0)} KiB) in ${Date.now() - started} ms`);
