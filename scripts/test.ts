// npm test: typecheck, lint, build the binary the integration tests run, then the whole suite.

import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'node_modules', '.bin');

function step(name: string, command: string, args: string[]): void {
  console.log(`\n== ${name}`);
  execFileSync(command, args, {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
}

try {
  step('typecheck', join(bin, 'tsc'), ['-p', 'tsconfig.json']);
  step('lint', join(bin, 'biome'), ['ci', 'src', 'test', 'scripts']);
  step('build', process.execPath, [join(root, 'scripts', 'build.ts')]);
  step('tests', join(bin, 'vitest'), ['run', ...process.argv.slice(2)]);
} catch {
  process.exit(1);
}
