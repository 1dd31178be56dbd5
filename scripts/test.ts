// npm test: typecheck, lint, build the binary the integration tests run, then the whole suite.

import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'node_modules', '.bin');
const report = join(root, 'build', 'vitest-report.json');
// A report left by an earlier run must not pass for this one's (e.g. when lint stops it first).
rmSync(report, { force: true });

function step(name: string, command: string, args: string[]): void {
  console.log(`\n== ${name}`);
  execFileSync(command, args, {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
}

ensureSystemPackages();
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

// test/e2e runs real gunicorn + Flask from Debian's packages, test/integration/supervise.test.ts
// runs tini as PID 1, test/containers starts Debian's dockerd and makes its base images with
// debootstrap, and test/package/arm64.test.ts builds the release and runs its arm64 binary under
// qemu-user (with the arm64 glibc); a fresh machine installs them here, so the README's one test
// command works anywhere we run as root (CI does).
function ensureSystemPackages(): void {
  const cross = ['qemu-user-static', 'libc6-arm64-cross'];
  const has = (command: string, args: string[]) => {
    try {
      execFileSync(command, args, { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (
    has('sh', ['-c', 'command -v gunicorn']) &&
    has('/usr/bin/python3', ['-c', 'import flask']) &&
    has('sh', ['-c', 'test -x /usr/bin/tini']) &&
    has('sh', ['-c', 'command -v dockerd && command -v docker && command -v debootstrap']) &&
    has('sh', ['-c', 'command -v qemu-aarch64-static && test -e /usr/aarch64-linux-gnu/lib/libc.so.6'])
  ) {
    return;
  }
  if (process.getuid?.() !== 0) {
    console.error(
      `npm test needs the Debian packages gunicorn, python3-flask, tini, docker.io, debootstrap and ${cross.join(', ')}: apt-get install gunicorn python3-flask tini docker.io debootstrap ${cross.join(' ')}`,
    );
    process.exit(1);
  }
  step('system packages', 'apt-get', ['update']);
  step('system packages', 'apt-get', [
    'install',
    '-y',
    '--no-install-recommends',
    'gunicorn',
    'python3-flask',
    'tini',
    'docker.io',
    'debootstrap',
    ...cross,
  ]);
}
