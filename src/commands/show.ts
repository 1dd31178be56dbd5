// `secret-fetch show SOURCE` and `secret-fetch get SOURCE KEY`: the fetch and decrypt stages of
// the main run, with stdout as the only sink. For operators checking what a service will see.

import { masterKeySource } from '../decrypt/master-key.ts';
import { NotFoundError, UsageError } from '../errors.ts';
import type { FlagSpec } from '../flags.ts';
import { FORMATS, type Format, formatFlag, parseEntries } from '../formats/index.ts';
import { openSource, planSource } from '../open-source.ts';
import { guessFormat } from '../sources/env-references.ts';
import type { FetchContext } from '../sources/index.ts';
import { sourceFileName } from '../sources/reference.ts';
import {
  described,
  OPERATOR_MAX_BYTES,
  parseSubcommand,
  remoteContext,
  type SubcommandSpec,
  writeStdout,
} from './common.ts';
import type { CommandContext, Subcommand } from './index.ts';

const FLAGS = [
  {
    name: 'kms-key',
    type: 'string',
    value: 'NAME',
    help: 'decrypt with Cloud KMS: projects/P/locations/L/keyRings/R/cryptoKeys/K (berglas://: the key the object must name)',
  },
  {
    name: 'master-key-file',
    type: 'string',
    value: 'PATH',
    env: true,
    help: 'decrypt a .enc source without --kms-key as a Flask-Vault file with this master.key (or SECRET_FETCH_MASTER_KEY)',
  },
  {
    name: 'format',
    type: 'string',
    value: 'FORMAT',
    help: `get: how to parse the secret, ${['auto', ...FORMATS].join('|')} (default auto: by name, then content)`,
  },
] as const satisfies readonly FlagSpec[];

export const SHOW: SubcommandSpec<typeof FLAGS> = {
  name: 'show',
  about: `Usage: secret-fetch show SOURCE [--kms-key KEY | --master-key-file PATH]

Fetches SOURCE (gs://, sm://, berglas://, a file), decrypts it as the main run would, and
writes the plaintext to stdout, byte for byte. Nothing is written anywhere else.`,
  flags: FLAGS,
  more: `Example:
  secret-fetch show gs://vault/app.env.enc --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k`,
  positionals: { min: 1, max: 1 },
};

export const GET: SubcommandSpec<typeof FLAGS> = {
  name: 'get',
  about: `Usage: secret-fetch get SOURCE KEY [--kms-key KEY] [--format FORMAT]

Fetches and decrypts SOURCE, parses it (--format, or by name and content) and writes the value
of the one entry KEY to stdout, without a trailing newline: $(secret-fetch get ...) is exact.`,
  flags: FLAGS,
  more: `Example:
  DB_PASSWORD=$(secret-fetch get gs://vault/app.env.enc DB_PASSWORD --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k)`,
  positionals: { min: 2, max: 2 },
};

export const showCommand: Subcommand = {
  ...described(SHOW),
  run: async (argv, context) => {
    const secret = await fetchNamed(SHOW, argv, context);
    if (secret === undefined) return 0;
    try {
      writeStdout(secret.data.reveal());
    } finally {
      secret.data.wipe();
    }
    return 0;
  },
};

export const getCommand: Subcommand = {
  ...described(GET),
  run: async (argv, context) => {
    const secret = await fetchNamed(GET, argv, context);
    if (secret === undefined) return 0;
    const { uri, name, key, format } = secret;
    try {
      const text = secret.data.text(uri);
      const chosen = format === 'auto' ? guessFormat(name, text) : format;
      if (chosen === 'raw')
        throw new UsageError('get needs entries, but --format is raw', 'use show for the whole secret');
      const entries = await parseEntries(chosen, text, uri);
      const value = entries.get(key as string);
      if (value === undefined) {
        throw new NotFoundError(
          `${uri} (read as ${chosen}) has no entry ${key}`,
          entries.size > 0 ? `its entries are ${entries.names().join(', ')}` : 'it has no entries at all',
        );
      }
      writeStdout(Buffer.from(value));
    } finally {
      secret.data.wipe();
    }
    return 0;
  },
};

async function fetchNamed(spec: SubcommandSpec<typeof FLAGS>, argv: readonly string[], context: CommandContext) {
  const parsed = parseSubcommand(spec, argv, context);
  if (parsed === undefined) return undefined;
  const [uri, key] = parsed.positionals as [string, string | undefined];
  const format = formatFlag(parsed.values.format ?? 'auto');
  // The plaintext goes out as it is (raw: this run parses nothing itself); a .enc name without
  // --kms-key is a Flask-Vault file, as in the main run, when a master key is given.
  const plan = planSource({
    uri,
    kmsKey: parsed.values['kms-key'],
    masterKey: masterKeySource(parsed.values['master-key-file'], context.environ),
    format: 'raw',
  });
  const remote = remoteContext(parsed);
  const fetch: FetchContext = {
    clients: remote.clients,
    retry: remote.retry,
    log: parsed.log,
    maxBytes: OPERATOR_MAX_BYTES,
  };
  const { secret } = await remote.deadline.race(openSource(plan, fetch));
  return { data: secret, uri, name: sourceFileName(plan.ref), key, format: format as Format | 'auto' };
}
