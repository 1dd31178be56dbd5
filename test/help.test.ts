import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SUBCOMMANDS } from '../src/commands/index.ts';
import { EXIT, EXIT_CODES } from '../src/errors.ts';
import { envNameOf } from '../src/flags.ts';
import { renderExitCodeTable, renderFlagTable, renderHelp } from '../src/help.ts';
import { FLAGS } from '../src/options.ts';

const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');

function section(name: string): string {
  const match = new RegExp(`<!-- ${name}:begin[^>]*-->\\n([\\s\\S]*?)\\n<!-- ${name}:end -->`).exec(readme);
  if (!match?.[1]) throw new Error(`README has no ${name} section`);
  return match[1];
}

describe('help and README are rendered from one table', () => {
  it('README shows the exit codes exactly as errors.ts defines them', () => {
    expect(section('exit-codes')).toBe(renderExitCodeTable());
  });

  it('README shows the flags exactly as options.ts defines them', () => {
    expect(section('flags')).toBe(renderFlagTable());
  });

  it('--help lists every flag, its variable and every exit code', () => {
    const help = renderHelp('1.2.3');
    expect(help).toContain('secret-fetch 1.2.3');
    for (const flag of FLAGS) expect(help).toContain(`--${flag.name}`);
    for (const row of EXIT_CODES)
      expect(help).toMatch(
        new RegExp(
          `^  ${row.code.replace('+', '\\+')} +${row.meaning.slice(0, 20).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`,
          'm',
        ),
      );
  });

  it('every exit code is distinct', () => {
    const codes = Object.values(EXIT);
    expect(new Set(codes).size).toBe(codes.length);
  });
});

describe('every subcommand renders its --help from its flag spec', () => {
  it.each(Object.keys(SUBCOMMANDS))('%s --help names each flag it takes, with its variable', async (name) => {
    const command = await (SUBCOMMANDS[name] as (typeof SUBCOMMANDS)[string]).load();
    const help = command.help();
    expect(help).toMatch(new RegExp(`^Usage: secret-fetch ${name}\\b`));
    expect(help).toMatch(/^Examples?( \(.*\))?:$/m);
    expect(command.flags.length).toBeGreaterThan(0);
    for (const flag of command.flags) {
      const line = help.split('\n').find((l) => new RegExp(`--${flag.name}\\b`).test(l) && l.includes(flag.help));
      expect(line, `--${flag.name} in secret-fetch ${name} --help`).toBeDefined();
      if (flag.env) expect(line).toContain(`[${envNameOf(flag.name)}]`);
      else expect(line).not.toContain('[SECRET_FETCH_');
    }
  });
});
