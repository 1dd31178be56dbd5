// run(): the pipeline in-process. Parsing is synchronous, so the run's --timeout timer cannot
// interrupt it: the deadline is checked before and after each parse.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EXIT, UnavailableError } from '../src/errors.ts';
import type { Logger } from '../src/log.ts';
import { parseInvocation } from '../src/options.ts';
import { Deadline } from '../src/retry.ts';
import { run } from '../src/run.ts';
import { StagedFiles } from '../src/sinks/file.ts';

const clock = vi.hoisted(() => ({ now: 0, duringParse: 0 }));

vi.mock('../src/formats/index.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/index.ts')>();
  return {
    ...real,
    // A parse that takes `duringParse` ms of the deadline's clock.
    parseEntries: async (...args: Parameters<typeof real.parseEntries>) => {
      const parsed = await real.parseEntries(...args);
      clock.now += clock.duringParse;
      return parsed;
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'secret-fetch-run-'));
  clock.now = 0;
  clock.duringParse = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const lines: string[] = [];
const log: Logger = {
  debug: (m) => lines.push(m),
  info: (m) => lines.push(m),
  warn: (m) => lines.push(`warning: ${m}`),
  error: (m) => lines.push(`error: ${m}`),
};

async function runWith(argv: string[]): Promise<unknown> {
  const source = join(dir, 'app.env');
  writeFileSync(source, 'TOKEN=hunter2\nPASS=p#ss\n');
  const invocation = parseInvocation(['--source', source, '--env', '--timeout', '10s', ...argv], {});
  if (invocation.kind !== 'run') throw new Error(`unexpected ${invocation.kind}`);
  const deadline = new Deadline(10_000, () => clock.now);
  lines.length = 0;
  try {
    return await run(invocation.options, { environ: {}, cwd: dir, log, deadline, staged: new StagedFiles() });
  } catch (error) {
    return error;
  }
}

describe('run: --timeout covers parsing', () => {
  it('a parse that ends past the deadline stops the run (69), naming the file', async () => {
    clock.duringParse = 20_000;
    const error = await runWith([]);
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as UnavailableError).exitCode).toBe(EXIT.unavailable);
    expect((error as UnavailableError).message).toMatch(/could not parse .*app\.env within the --timeout of 10s/);
    expect((error as UnavailableError).hint).toMatch(/raise --timeout/);
  });

  it('a run within the deadline parses and finishes', async () => {
    clock.duringParse = 1_000;
    expect(await runWith([])).toBe(0);
  });
});

describe('run: -v notes what other dotenv readers read differently', () => {
  it('with -v, one warning per entry, without the value', async () => {
    await runWith(['-v']);
    const notes = lines.filter((line) => line.includes("contains a '#'"));
    expect(notes).toEqual([
      expect.stringMatching(/^warning: .*app\.env:2: the unquoted value of "PASS" contains a '#'/),
    ]);
    expect(lines.join('\n')).not.toContain('p#ss');
  });

  it('without -v, nothing', async () => {
    await runWith([]);
    expect(lines.filter((line) => line.includes("'#'"))).toEqual([]);
  });
});
