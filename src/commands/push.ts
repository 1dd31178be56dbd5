// `secret-fetch push FILE TARGET`: validate, encrypt and upload a secret in one step, replacing
// the hand-written `gcloud kms encrypt && gcloud storage cp` chains. Safe by default: the file
// must parse in its format, gs:// objects are encrypted unless --plaintext says otherwise, and
// the upload is conditional (create only, or replace exactly --if-generation).

import { UsageError } from '../errors.ts';
import { detectFormat, FORMATS, type Format, parseEntries } from '../formats/index.ts';
import { validateKmsKey } from '../options.ts';
import { uploadSecretObject } from '../publish/gcs.ts';
import type { Secret } from '../secret.ts';
import { readSecretFile } from '../sources/file.ts';
import { describeSource, parseSourceRef, type SourceRef, sourceFileName } from '../sources/reference.ts';
import { COMMON_HELP, parseSubcommand, remoteContext, writeStdout } from './common.ts';
import type { Subcommand } from './index.ts';
import { sealForUpload } from './seal.ts';

const HELP = `Usage: secret-fetch push FILE TARGET --kms-key KEY [--if-generation N] [--format F]

Checks that FILE parses in its format (by --format, else by TARGET's or FILE's name), encrypts it
with Cloud KMS and uploads it to TARGET (gs://BUCKET/OBJECT) with Cache-Control: private, no-store.
The upload is conditional: without --if-generation it creates the object only if it does not
exist; with --if-generation N it replaces generation N only, so two operators never overwrite
each other silently (exit 75 when the condition fails; nothing is written). Prints the new
generation as TARGET#GENERATION. FILE may be - for stdin.

Flags:
  --kms-key KEY        projects/P/locations/L/keyRings/R/cryptoKeys/K (required unless --plaintext)
  --if-generation N    replace generation N (see: secret-fetch show -v, or gcloud storage objects describe)
  --format FORMAT      ${['auto', ...FORMATS].join('|')} (default auto)
  --plaintext          upload without encryption (the bucket's own encryption only)

Example:
  secret-fetch push app.env gs://vault/app.env.enc --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k
  secret-fetch push app.env gs://vault/app.env.enc --kms-key ... --if-generation 1700000000000001

${COMMON_HELP}
`;

const FLAGS = {
  'kms-key': { type: 'string' },
  'if-generation': { type: 'string' },
  format: { type: 'string' },
  plaintext: { type: 'boolean' },
} as const;

export const pushCommand: Subcommand = {
  run: async (argv, context) => {
    const parsed = parseSubcommand(
      { name: 'push', help: HELP, flags: FLAGS, positionals: { min: 2, max: 2 } },
      argv,
      context,
    );
    if (parsed === undefined) return 0;
    const [file, targetUri] = parsed.positionals as [string, string];
    const target = parseTarget(targetUri);
    const { values } = parsed;
    const kmsKey = values['kms-key'];
    if (kmsKey !== undefined) validateKmsKey(kmsKey);
    if (kmsKey === undefined && values.plaintext !== true) {
      throw new UsageError(
        `push to ${targetUri} without --kms-key`,
        'add --kms-key KEY, or --plaintext to store it unencrypted',
      );
    }
    if (kmsKey !== undefined && values.plaintext === true) {
      throw new UsageError('--plaintext and --kms-key together', 'drop one of them');
    }
    const ifGeneration = values['if-generation'];
    if (ifGeneration !== undefined && !/^[1-9][0-9]{0,19}$/.test(ifGeneration)) {
      throw new UsageError(
        `--if-generation ${ifGeneration} is not a generation`,
        'give the decimal generation to replace',
      );
    }
    if (target.generation !== undefined) {
      throw new UsageError(
        `push target ${targetUri} names a generation`,
        'use --if-generation N to replace generation N',
      );
    }

    const plaintext = readInput(file);
    try {
      await validateSecret(plaintext, chooseFormat(values.format, target, file), file);
      const remote = remoteContext(parsed);
      const upload = async (): Promise<string> => {
        const data =
          kmsKey === undefined
            ? plaintext.reveal()
            : await sealForUpload(plaintext.reveal(), kmsKey, file, remote.clients, remote.retry);
        return uploadSecretObject(
          await remote.clients.storage(remote.retry),
          { bucket: target.bucket, object: target.object, data, ifGenerationMatch: ifGeneration ?? '0' },
          remote.retry,
          parsed.log,
        );
      };
      const generation = await Promise.race([upload(), remote.deadline.expire()]);
      writeStdout(Buffer.from(`${describeSource(target)}#${generation}\n`));
      return 0;
    } finally {
      plaintext.wipe();
    }
  },
};

type GsTarget = Extract<SourceRef, { scheme: 'gs' }>;

function parseTarget(uri: string): GsTarget {
  const ref = parseSourceRef(uri);
  if (ref.scheme !== 'gs') {
    throw new UsageError(`push target ${uri} is not a gs:// object`, 'write gs://BUCKET/OBJECT');
  }
  return ref;
}

/** The file, or stdin for "-"; refuses an empty one. */
export function readInput(file: string): Secret {
  const { data } = file === '-' ? readStdin() : readSecretFile(file, 64 * 1024 ** 2);
  if (data.byteLength === 0) {
    throw new UsageError(`${file === '-' ? 'stdin' : file} is empty`, 'refusing to upload an empty secret');
  }
  return data;
}

function readStdin() {
  // Reads to EOF: a pipe's size is unknown up front.
  return readSecretFile('/dev/stdin', 64 * 1024 ** 2);
}

export function chooseFormat(given: string | undefined, target: SourceRef, file: string): Format {
  if (given !== undefined && given !== 'auto') {
    if (!(FORMATS as readonly string[]).includes(given)) {
      throw new UsageError(`--format ${given} is not known`, `use one of auto, ${FORMATS.join(', ')}`);
    }
    return given as Format;
  }
  const byTarget = detectFormat(sourceFileName(target));
  return byTarget !== 'raw' ? byTarget : detectFormat(file);
}

/** A secret that would stop every start is refused before it is uploaded. */
export async function validateSecret(secret: Secret, format: Format, name: string): Promise<void> {
  if (format === 'raw') return;
  await parseEntries(format, secret.text(name), name);
}
