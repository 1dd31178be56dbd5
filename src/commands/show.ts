// `secret-fetch show SOURCE` and `secret-fetch get SOURCE KEY`: the fetch and decrypt stages of
// the main run, with stdout as the only sink. For operators checking what a service will see.

import { NotFoundError, UsageError } from '../errors.ts';
import { detectFormat, FORMATS, type Format, parseEntries } from '../formats/index.ts';
import { ENCRYPTED_NAME, masterKeySource, validateKmsKey } from '../options.ts';
import { fetchPlaintext } from '../run.ts';
import { guessFormat } from '../sources/env-references.ts';
import type { FetchContext } from '../sources/index.ts';
import { parseSourceRef, sourceFileName } from '../sources/reference.ts';
import { COMMON_HELP, OPERATOR_MAX_BYTES, parseSubcommand, remoteContext, writeStdout } from './common.ts';
import type { CommandContext, Subcommand } from './index.ts';

const FLAGS = {
  'kms-key': { type: 'string' },
  'master-key-file': { type: 'string' },
  format: { type: 'string' },
} as const;

const SHOW_HELP = `Usage: secret-fetch show SOURCE [--kms-key KEY | --master-key-file PATH]

Fetches SOURCE (gs://, sm://, berglas://, a file), decrypts it as the main run would, and
writes the plaintext to stdout, byte for byte. Nothing is written anywhere else.

Example:
  secret-fetch show gs://vault/app.env.enc --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k

${COMMON_HELP}
`;

const GET_HELP = `Usage: secret-fetch get SOURCE KEY [--kms-key KEY] [--format FORMAT]

Fetches and decrypts SOURCE, parses it (--format, or by name and content) and writes the value
of the one entry KEY to stdout, without a trailing newline: $(secret-fetch get ...) is exact.

Example:
  DB_PASSWORD=$(secret-fetch get gs://vault/app.env.enc DB_PASSWORD --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k)

${COMMON_HELP}
`;

export const showCommand: Subcommand = {
  run: async (argv, context) => {
    const secret = await fetchNamed('show', SHOW_HELP, 1, argv, context);
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
  run: async (argv, context) => {
    const secret = await fetchNamed('get', GET_HELP, 2, argv, context);
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

async function fetchNamed(name: string, help: string, args: number, argv: readonly string[], context: CommandContext) {
  const parsed = parseSubcommand({ name, help, flags: FLAGS, positionals: { min: args, max: args } }, argv, context);
  if (parsed === undefined) return undefined;
  const [uri, key] = parsed.positionals as [string, string | undefined];
  const ref = parseSourceRef(uri);
  const kmsKey = parsed.values['kms-key'];
  if (kmsKey !== undefined) validateKmsKey(kmsKey);
  const format = parsed.values.format ?? 'auto';
  if (format !== 'auto' && !(FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`--format ${format} is not known`, `use one of auto, ${FORMATS.join(', ')}`);
  }
  const remote = remoteContext(parsed);
  const fetch: FetchContext = {
    clients: remote.clients,
    retry: remote.retry,
    log: parsed.log,
    maxBytes: OPERATOR_MAX_BYTES,
  };
  // A .enc name without --kms-key is a Flask-Vault file, as in the main run.
  const flaskVault = kmsKey === undefined && ref.scheme !== 'berglas' && ENCRYPTED_NAME.test(sourceFileName(ref));
  const masterKey = flaskVault
    ? masterKeySource(parsed.values['master-key-file'] ?? context.environ.SECRET_FETCH_MASTER_KEY_FILE, context.environ)
    : undefined;
  const plan = { uri, ref, kmsKey, masterKey, format: detectFormat(sourceFileName(ref)), out: undefined };
  const { secret } = await remote.deadline.race(fetchPlaintext(plan, ref, fetch));
  return { data: secret, uri, name: sourceFileName(ref), key, format: format as Format | 'auto' };
}
