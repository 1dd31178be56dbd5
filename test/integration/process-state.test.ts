// What secret-fetch's own process holds and what the command inherits of it (issue 14,
// src/launch/process-state.ts): inherited descriptors and ignored signals reach the command as if
// it had been exec'd directly, the core limit too, and the process that holds the secrets is not
// dumpable. Most of it needs the syscall module, so it runs against the Bun binary.

import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BINARY, RUNTIME, runBinary, tmpfsDir } from './harness.ts';

let dir: string;
let cleanup: () => void;
let secret: string;
beforeEach(() => {
  ({ dir, cleanup } = tmpfsDir());
  chmodSync(dir, 0o755);
  secret = join(dir, 'app.env');
  writeFileSync(secret, 'GREETING=hello\n', { mode: 0o644 });
});
afterEach(() => cleanup());

/** Runs `script` under sh, which opens fds 3, 5 and 7 and then execs secret-fetch with `args`. */
function withFds(args: string[], env: Record<string, string> = {}) {
  const line = ['exec 3</etc/hostname 5</etc/passwd 7</etc/hosts; exec "$@"', 'sh', BINARY, ...args];
  return runBinary(['-c', ...line], { command: 'sh', env });
}
/** secret-fetch's arguments to supervise `sh -c SCRIPT` (SCRIPT to follow) with the secret in its environment. */
const supervisedShell = () => ['--source', secret, '--env', '--supervise', '--', 'sh', '-c'];
const fdsOf = (text: string) => /fds (.*)/.exec(text)?.[1]?.split(' ').map(Number);
const listFds = 'echo fds $(ls /proc/$$/fd | sort -n)';

describe.runIf(RUNTIME === 'bun')('inherited descriptors', () => {
  it("fds 3, 5 and 7 reach an exec'd command, as they would without secret-fetch", async () => {
    const result = await withFds(['--source', secret, '--env', '--', 'sh', '-c', listFds]);
    expect(result.code, result.stderr).toBe(0);
    expect(fdsOf(result.stdout)).toEqual(expect.arrayContaining([0, 1, 2, 3, 5, 7]));
  });

  it('they survive the restart that drops a runtime variable', async () => {
    const result = await withFds(['--source', secret, '--env', '-v', '--', 'sh', '-c', listFds], {
      NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt',
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/restarted without NODE_EXTRA_CA_CERTS/);
    expect(fdsOf(result.stdout)).toEqual(expect.arrayContaining([3, 5, 7]));
  });

  it('a supervised command gets them too', async () => {
    const result = await withFds(['--source', secret, '--env', '--supervise', '--', 'sh', '-c', listFds]);
    expect(result.code, result.stderr).toBe(0);
    expect(fdsOf(result.stdout)).toEqual(expect.arrayContaining([3, 5, 7]));
  });

  it("secret-fetch's own descriptors do not leak into the command", async () => {
    const result = await runBinary(['--source', secret, '--env', '--', 'sh', '-c', listFds]);
    const direct = await runBinary(['-c', listFds], { command: 'sh' });
    expect(fdsOf(result.stdout)).toEqual(fdsOf(direct.stdout));
  });
});

describe.runIf(RUNTIME === 'bun')('signals the parent ignored (nohup)', () => {
  const ignoring = (args: string[]) =>
    runBinary(['-c', `trap '' HUP USR2; exec "$@"`, 'sh', BINARY, ...args], {
      command: 'sh',
      onSpawn: (pid) => setTimeout(() => process.kill(pid, 'SIGHUP'), 300),
    });
  const ignored = (text: string) => BigInt(`0x${/SigIgn:\s*([0-9a-f]+)/.exec(text)?.[1] ?? 'x'}`);

  it("stay ignored in the exec'd command, and do not stop secret-fetch", async () => {
    const result = await ignoring([
      '--source',
      secret,
      '--env',
      '--',
      'sh',
      '-c',
      'sleep 0.6; grep SigIgn /proc/self/status',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(ignored(result.stdout) & ((1n << 0n) | (1n << 11n))).toBe((1n << 0n) | (1n << 11n)); // SIGHUP, SIGUSR2
  });

  it('stay ignored in a supervised command, and are neither forwarded nor stop the supervisor', async () => {
    const result = await ignoring([...supervisedShell(), 'sleep 0.6; grep SigIgn /proc/self/status']);
    expect(result.code, result.stderr).toBe(0);
    expect(ignored(result.stdout)).toBe((1n << 0n) | (1n << 11n)); // exactly SIGHUP and SIGUSR2
  });
});

describe('the core limit and dumpability', () => {
  it("an exec'd command gets the core limit secret-fetch was given", async () => {
    const result = await runBinary(
      ['--core=1234:5678', BINARY, '--source', secret, '--env', '--', 'sh', '-c', 'grep "core file" /proc/self/limits'],
      { command: 'prlimit' },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Max core file size\s+1234\s+5678\s+bytes\s*$/);
  });

  it.runIf(RUNTIME === 'bun')(
    'a supervisor holding secrets has a core limit of 0 and cannot be read by its own user; its command can',
    async () => {
      const script = [
        'grep "core file" /proc/$PPID/limits /proc/self/limits',
        'cat /proc/$PPID/environ >/dev/null 2>&1 && echo "supervisor readable" || echo "supervisor unreadable"',
        'cat /proc/$$/environ >/dev/null 2>&1 && echo "command readable" || echo "command unreadable"',
      ].join('; ');
      const result = await runBinary(
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          'prlimit',
          '--core=1234:5678',
          BINARY,
          ...supervisedShell(),
          script,
        ],
        { command: 'setpriv' },
      );
      expect(result.code, result.stderr).toBe(0);
      const lines = result.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^\/proc\/\d+\/limits:Max core file size\s+0\s+5678\s+bytes\s*$/);
      expect(lines[1]).toMatch(/^\/proc\/self\/limits:Max core file size\s+1234\s+5678\s+bytes\s*$/);
      expect(lines.slice(2)).toEqual(['supervisor unreadable', 'command readable']);
    },
  );
});
