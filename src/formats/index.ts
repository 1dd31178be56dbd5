// The secret formats: detection from a file name, and parsing text into NAME -> value entries.
// Every parser reports errors as `name:line:col: <kind of thing found>` and never quotes the
// secret text (see common.ts).

import { EXIT, SecretFetchError, UsageError } from '../errors.ts';
import type { SecretEntries } from '../secret.ts';
import { parseDotenv } from './dotenv.ts';
import { parseJson } from './json.ts';
import { parsePyfile } from './pyfile.ts';

export type Format = 'dotenv' | 'json' | 'yaml' | 'toml' | 'pyfile' | 'raw';

export const FORMATS: readonly Format[] = ['dotenv', 'json', 'yaml', 'toml', 'pyfile', 'raw'];

const BY_EXTENSION: Readonly<Record<string, Exclude<Format, 'raw'>>> = {
  env: 'dotenv',
  json: 'json',
  yaml: 'yaml',
  yml: 'yaml',
  toml: 'toml',
  cfg: 'pyfile',
  py: 'pyfile',
};

/** A --format value: one of FORMATS, or auto (by name); checked here for every command that takes it. */
export function formatFlag(given: string): Format | 'auto' {
  if (given === 'auto' || (FORMATS as readonly string[]).includes(given)) return given as Format | 'auto';
  throw new UsageError(`--format ${given} is not known`, `use one of auto, ${FORMATS.join(', ')}`);
}

/**
 * The format a file or object name implies. A trailing `.enc` or `.encrypted` is removed first
 * (`dir/secrets.cfg.enc` is a pyfile); the extension is matched case-insensitively; a file named
 * exactly `.env` is dotenv; anything unrecognised is raw.
 */
export function detectFormat(name: string): Format {
  const base = (name.split('/').pop() ?? '').toLowerCase().replace(/\.(?:enc|encrypted)$/, '');
  const dot = base.lastIndexOf('.');
  if (dot === -1) return 'raw';
  return BY_EXTENSION[base.slice(dot + 1)] ?? 'raw';
}

export interface ParseOptions {
  /** Receives warnings about entries other readers of the format would read differently (dotenv). */
  readonly notes?: ((message: string) => void) | undefined;
}

/**
 * Parses `text` (the decrypted file called `name`, used only in messages) into entries. Async
 * only so the YAML and TOML parsers (libraries, kept out of the binary's main script) load when
 * a secret in their format needs them, not on every start.
 */
export async function parseEntries(
  format: Exclude<Format, 'raw'>,
  text: string,
  name: string,
  options: ParseOptions = {},
): Promise<SecretEntries> {
  try {
    if (format === 'yaml') return (await import('./yaml.ts')).parseYaml(text, name);
    if (format === 'toml') return (await import('./toml.ts')).parseToml(text, name);
    if (format === 'dotenv') return parseDotenv(text, name, options.notes);
    return parse(format, text, name);
  } catch (err) {
    if (err instanceof SecretFetchError) throw err;
    // A foreign error (a bug, or a library throwing) could quote the text: never pass it on.
    throw new SecretFetchError(
      `${name}: the ${format} parser failed unexpectedly (details withheld: they could contain the secret)`,
      EXIT.internal,
      'please report this bug',
    );
  }
}

function parse(format: Exclude<Format, 'raw' | 'yaml' | 'toml' | 'dotenv'>, text: string, name: string): SecretEntries {
  switch (format) {
    case 'json':
      return parseJson(text, name);
    case 'pyfile':
      return parsePyfile(text, name);
    default: {
      const unknown: never = format;
      throw new UsageError(`the ${String(unknown)} format has no entries to parse`);
    }
  }
}
