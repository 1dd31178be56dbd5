// npm run package: the npm package for operators' laptops (macOS, Windows, Linux), where the container
// binary does not run. One bundled script run by the user's own Node >= 22, no dependencies to
// install, packed with `npm pack` into dist/secret-fetch-VERSION.tgz (publish-ready).
// The operator commands (push, show, get, edit, sign, doctor) run the same code as the binary; the
// exec path refuses unless that Node has process.execve (src/launch/exec.ts).

import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build', 'package');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  version: string;
  description: string;
  license: string;
};

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'bin'), { recursive: true });
await build({
  entryPoints: [join(root, 'src', 'cli.ts')],
  outfile: join(out, 'lib', 'secret-fetch.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node22',
  minify: true,
  // protobufjs and google-gax look types up by constructor name (as in scripts/build.ts).
  keepNames: true,
  legalComments: 'eof',
  logLevel: 'warning',
  external: ['bun:ffi'], // src/launch/sys.ts loads it only under Bun
});

// Plain ES5 so that an older Node reaches the version check instead of a syntax error.
const bin = join(out, 'bin', 'secret-fetch.cjs');
writeFileSync(
  bin,
  `#!/usr/bin/env node
'use strict';
if (Number(process.versions.node.split('.')[0]) < 22) {
  process.stderr.write('secret-fetch: needs Node.js 22 or newer, this is ' + process.version + ' (install a newer Node.js)\\n');
  process.exit(64);
}
require('../lib/secret-fetch.cjs');
`,
);
chmodSync(bin, 0o755);
writeFileSync(
  join(out, 'package.json'),
  `${JSON.stringify(
    {
      name: 'secret-fetch',
      version: manifest.version,
      description: manifest.description,
      license: manifest.license,
      bin: { 'secret-fetch': 'bin/secret-fetch.cjs' },
      files: ['bin', 'lib'],
      engines: { node: '>=22' },
    },
    null,
    2,
  )}\n`,
);
mkdirSync(join(root, 'dist'), { recursive: true });
const packed = execFileSync('npm', ['pack', '--silent', '--pack-destination', join(root, 'dist')], {
  cwd: out,
  encoding: 'utf8',
}).trim();
console.log(`packed ${join('dist', packed)}`);
