// Flags for the main run and every subcommand: one spec shape, one parser, one SECRET_FETCH_*
// fallback, one renderer for --help, and the parsers of the values flags share (durations, sizes).
//
// We use node:util parseArgs rather than yargs: in the single executable, yargs alone costs
// ~30 ms of startup on a path whose whole budget is ~38 ms (see README, "Why not yargs").

import { parseArgs } from 'node:util';
import { UsageError } from './errors.ts';

export interface FlagSpec {
  readonly name: string;
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** The value's placeholder in --help (URI, PATH, ...). */
  readonly value?: string;
  readonly help: string;
  /** Read from SECRET_FETCH_<NAME> when the flag is absent (false for --help/--version). */
  readonly env?: boolean;
}

export type Environ = Readonly<Record<string, string | undefined>>;
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

export const envNameOf = (flag: string): string => `SECRET_FETCH_${flag.toUpperCase().replaceAll('-', '_')}`;

/**
 * Parses `argv` against `specs`, then fills each absent flag that has a variable from
 * SECRET_FETCH_<NAME> (an empty variable counts as unset). `command` names a subcommand in messages.
 */
export function parseFlags(
  specs: readonly FlagSpec[],
  argv: readonly string[],
  environ: Environ,
  command?: string,
): { values: FlagValues; positionals: string[]; fromEnv: Set<string> } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const flag of specs) {
    options[flag.name] = {
      type: flag.type,
      ...(flag.multiple ? { multiple: true } : {}),
      ...(flag.short ? { short: flag.short } : {}),
    };
  }
  let parsed: { values: FlagValues; positionals: string[]; fromEnv: Set<string> };
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
    parsed = { values: { ...values } as FlagValues, positionals, fromEnv: new Set() };
  } catch (error) {
    // parseArgs' messages name the flag (never a value): pass the first sentence on.
    const message = (error instanceof Error ? (error.message.split('. ')[0] ?? error.message) : String(error)).replace(
      /\.$/,
      '',
    );
    if (command === undefined) throw new UsageError(message);
    throw new UsageError(`${command}: ${message}`, `see secret-fetch ${command} --help`);
  }
  if (parsed.values.help === true) return parsed;
  for (const flag of specs) {
    if (flag.env && parsed.values[flag.name] === undefined) {
      const fromEnv = environ[envNameOf(flag.name)];
      if (fromEnv !== undefined && fromEnv !== '') {
        parsed.values[flag.name] = envValue(flag, fromEnv);
        parsed.fromEnv.add(flag.name);
      }
    }
  }
  return parsed;
}

export function envValue(flag: FlagSpec, raw: string): string | boolean | string[] {
  if (flag.type === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new UsageError(`${envNameOf(flag.name)}="${raw}" is not a boolean`, 'use 1/true/yes or 0/false/no');
  }
  return flag.multiple ? [raw] : raw;
}

/** The --help lines of `specs`: flag, value, what it does, and its variable in brackets. */
export function renderFlags(specs: readonly FlagSpec[]): string[] {
  return specs.map((flag) => {
    const name = `${flag.short ? `-${flag.short}, ` : '    '}--${flag.name}${flag.value ? ` ${flag.value}` : ''}`;
    const env = flag.env ? ` [${envNameOf(flag.name)}]` : '';
    return `  ${name.padEnd(28)} ${flag.help}${env}`;
  });
}

export function strings(value: FlagValues[string]): string[] {
  if (value === undefined || typeof value === 'boolean') return [];
  return Array.isArray(value) ? value : [value];
}

/** The last value given (a repeated single-valued flag: the last one wins). */
export function optionalString(value: FlagValues[string]): string | undefined {
  const all = strings(value);
  return all.length === 0 ? undefined : all[all.length - 1];
}

/** A repeatable flag's value for each of `count` sources: none, one per source, or (if allowShared) one for all. */
export function perSource(
  flag: string,
  given: readonly string[],
  count: number,
  allowShared: boolean,
): (string | undefined)[] {
  if (given.length === 0) return Array.from({ length: count }, () => undefined);
  if (given.length === count) return [...given];
  if (given.length === 1 && allowShared) return Array.from({ length: count }, () => given[0]);
  throw new UsageError(
    `${given.length} --${flag} for ${count} --source`,
    allowShared
      ? `give --${flag} once for all sources, or once per source in order`
      : `give --${flag} once per source, in order`,
  );
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(flag: string, text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(text);
  const ms = match ? Number(match[1]) * (UNITS[match[2] ?? 's'] ?? 1000) : Number.NaN;
  if (!(ms > 0) || ms > 24 * 3_600_000) {
    throw new UsageError(
      `--${flag} ${text} is not a duration`,
      'write e.g. 500ms, 30s, 5m (plain numbers are seconds)',
    );
  }
  return Math.round(ms);
}

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/** A byte count: a whole number, optionally with B, KiB, MiB or GiB (at most 1GiB). */
export function parseSize(flag: string, text: string): number {
  const match = /^([0-9]{1,10})(B|KiB|MiB|GiB)?$/.exec(text);
  const bytes = match ? Number(match[1]) * (SIZE_UNITS[match[2] ?? ''] ?? Number.NaN) : Number.NaN;
  if (!(bytes > 0) || bytes > 1024 ** 3) {
    throw new UsageError(`--${flag} ${text} is not a size`, 'write e.g. 64KiB, 1MiB or 65536 (bytes), at most 1GiB');
  }
  return bytes;
}

export function parseLogFormat(text: string | undefined): 'text' | 'json' {
  const format = text ?? 'text';
  if (format !== 'text' && format !== 'json') {
    throw new UsageError(`--log-format ${format} is not known`, 'use text or json');
  }
  return format;
}

export function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text))
    throw new UsageError(`--mode ${text} is not an octal file mode`, 'write e.g. 0400 or 0440');
  const mode = Number.parseInt(text, 8);
  if (mode & 0o002) throw new UsageError(`--mode ${text} makes the secret world-writable`, 'use 0400, 0440 or 0600');
  if (mode & 0o004) throw new UsageError(`--mode ${text} makes the secret world-readable`, 'use 0400, 0440 or 0600');
  return mode;
}

export function parseId(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,10}$/.test(text) || Number(text) > 0xfffffffe) {
    throw new UsageError(
      `--${flag} ${text} is not a numeric id`,
      `give a number, e.g. --${flag} 1000 (see: id -u APPUSER)`,
    );
  }
  return Number(text);
}
