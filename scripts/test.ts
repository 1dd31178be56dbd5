// npm test: typecheck, lint, build the binary the integration tests run, then the whole suite.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'node_modules', '.bin');
const report = join(root, 'build', 'vitest-report.json');

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
  step('tests', join(bin, 'vitest'), [
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${report}`,
    ...process.argv.slice(2),
  ]);
} catch {
  summarize();
  process.exit(1);
}
summarize();

// One plain closing line that any CI can read, whatever the runner prints.
function summarize(): void {
  try {
    const { numPassedTests, numFailedTests, numPendingTests } = JSON.parse(readFileSync(report, 'utf8'));
    console.log(`\ntests: ${numPassedTests} passed, ${numFailedTests} failed, ${numPendingTests} skipped`);
  } catch {
    // The suite did not get as far as writing its report.
  }
}
