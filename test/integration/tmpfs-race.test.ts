// The tmpfs check against a racing attacker: while the built binary writes --out through a
// symlinked directory, another process flips that link between a tmpfs directory and a disk
// directory as fast as it can. Whatever the interleaving, each run either writes to the tmpfs or
// refuses (73), and no byte ever reaches the disk directory, not even a temp file. (Before the
// directory was pinned, a few runs in a hundred left the secret on disk.) Bounded in runs and time.

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { expectNoCanary, ROOT, runBinary, tmpfsDir } from './harness.ts';

const TMPFS_MAGIC = 0x01021994;
const MAX_RUNS = 150;
const MAX_MS = 40_000;
const CANARY = `canary-${randomBytes(8).toString('hex')}`;

// Flips LINK between the two directories: a new link beside it, renamed over it (atomic).
const FLIPPER = `
const { renameSync, rmSync, symlinkSync } = require('node:fs');
const [memory, disk, link] = process.argv.slice(1);
for (let i = 0; ; i++) {
  rmSync(link + '.next', { force: true });
  symlinkSync(i % 2 ? memory : disk, link + '.next');
  renameSync(link + '.next', link);
}`;

let scratch: { dir: string; cleanup: () => void };
let disk: string;
let flipper: ChildProcess | undefined;

beforeEach(() => {
  scratch = tmpfsDir();
  disk = mkdtempSync(join(ROOT, '.it-race-disk-'));
  expect(statfsSync(disk).type).not.toBe(TMPFS_MAGIC);
});
afterEach(() => {
  flipper?.kill('SIGKILL');
  scratch.cleanup();
  rmSync(disk, { recursive: true, force: true });
});

describe('the tmpfs check cannot be raced', () => {
  it('a parent directory flipped between tmpfs and disk during the write never lands a byte on disk', async () => {
    const memory = join(scratch.dir, 'memory');
    mkdirSync(memory);
    const source = join(scratch.dir, 'source.txt');
    writeFileSync(source, CANARY);
    const link = join(scratch.dir, 'link');
    flipper = spawn(process.execPath, ['-e', FLIPPER, memory, disk, link], { stdio: 'ignore' });
    const started = Date.now();
    const outcomes = { written: 0, refused: 0, vanished: 0, diskTouched: 0, otherFailures: [] as string[] };
    for (let run = 0; run < MAX_RUNS && Date.now() - started < MAX_MS; run++) {
      const result = await runBinary(['--source', `file:${source}`, '--out', join(link, 'secret.txt')]);
      expectNoCanary(result, [CANARY]);
      if (result.code === 0) outcomes.written++;
      else if (
        result.code === EXIT.output &&
        / is not on tmpfs or ramfs, so the secret would reach a disk /.test(result.stderr)
      )
        outcomes.refused++;
      // A path walk that meets the link mid-swap can see neither directory (seen once in ~300
      // runs under load): refused before anything is opened, which is failing closed too.
      else if (result.code === EXIT.output && /: the directory .* does not exist /.test(result.stderr))
        outcomes.vanished++;
      else outcomes.otherFailures.push(`${result.code}: ${result.stderr}`);
      const onDisk = readdirSync(disk);
      if (onDisk.length > 0) {
        outcomes.diskTouched++;
        for (const name of onDisk) rmSync(join(disk, name), { force: true });
      }
    }
    flipper.kill('SIGKILL');
    // The race was live: both directories were opened by some run.
    expect(outcomes.written, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(outcomes.refused, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(outcomes.diskTouched, JSON.stringify(outcomes)).toBe(0);
    expect(outcomes.otherFailures).toEqual([]);
    // Every temp file was renamed or removed where it was made: only the target is left on tmpfs.
    expect(readdirSync(memory)).toEqual(['secret.txt']);
    expect(readFileSync(join(memory, 'secret.txt'), 'utf8')).toBe(CANARY);
  }, 90_000);
});
