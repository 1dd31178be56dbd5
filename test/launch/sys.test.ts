// src/launch/sys.ts: each system call made for real by the pinned Bun (test/fixtures/sys-probe.ts),
// and what the kernel says afterwards. Under Node (this test's own runtime) there is no FFI.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUN } from '../../scripts/build-bun.ts';
import { loadSys } from '../../src/launch/sys.ts';

const PROBE = join(import.meta.dirname, '..', 'fixtures', 'sys-probe.ts');

/** Runs one case of the probe, as `user` when given (setpriv), and parses its JSON line. */
function probe(name: string, user?: number): Record<string, unknown> {
  const command =
    user === undefined
      ? [BUN, PROBE, name]
      : ['setpriv', `--reuid=${user}`, `--regid=${user}`, '--clear-groups', BUN, PROBE, name];
  const [file = BUN, ...args] = command;
  const run = spawnSync(file, args, { encoding: 'utf8' });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  return JSON.parse(run.stdout) as Record<string, unknown>;
}

describe('src/launch/sys.ts', () => {
  it('is not there under Node: the callers keep to what Node can do', async () => {
    expect(await loadSys()).toBeUndefined();
  });

  it('setDumpable(false) stops another process of the same user from reading this one, until set back', () => {
    expect(probe('dumpable', 65534)).toEqual({ before: true, after: false, restored: true });
  });

  it('setRlimit lowers the core limit the kernel enforces; getRlimit reads both limits back', () => {
    const result = probe('rlimit');
    expect(result.limits).toEqual(['0', 'unlimited']);
    expect(result.core).toEqual({ soft: '0', hard: '18446744073709551615' });
    expect(Number((result.nofile as { soft: string }).soft)).toBeGreaterThan(0);
  });

  it('as a subreaper, reapOrphans reaps exited orphans and never one that the runtime claims', () => {
    const result = probe('reap');
    const [kept, reaped] = result.expected as [number, number];
    expect(result.zombies).toEqual([kept, reaped]);
    // The claimed zombie comes first: nothing is reaped in that round, not even the one behind it.
    expect(result.claimedFirst).toEqual([]);
    expect(result.second).toEqual([kept, reaped]);
    expect(result.third).toEqual([]);
    expect(result.left).toEqual([]);
  });

  it('reads and sets close-on-exec, and names the call and errno when one fails', () => {
    expect(probe('cloexec')).toEqual({
      opened: true,
      cleared: false,
      set: true,
      error: expect.stringMatching(/^fcntl\(\d+, F_GETFD\): EBADF$/),
    });
  });

  it('ignoreSignal keeps a signal that the runtime cannot catch from ending the process; defaultSignal undoes it', () => {
    expect(probe('ignore')).toEqual({ alive: true, ignored: true, restored: false });
  });
});
