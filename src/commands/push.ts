// `secret-fetch push FILE TARGET`: validate, encrypt and write a secret in one step, replacing
// the hand-written `gcloud kms encrypt && gcloud storage cp` (or `gcloud secrets versions add`)
// chains. Safe by default: the file must parse in its format, gs:// objects are encrypted unless
// --plaintext says otherwise, and the write is conditional: create only, or replace exactly
// --if-generation (Cloud Storage); a first version, or one on top of exactly --if-version (Secret
// Manager, where that is a check just before the add: the API has no precondition).

import { validateKmsKey } from '../decrypt/kms.ts';
import { UsageError } from '../errors.ts';
import type { FlagSpec } from '../flags.ts';
import { FORMATS } from '../formats/index.ts';
import { writeSecret } from '../publish/index.ts';
import {
  payloadTooLarge,
  SECRET_MANAGER_MAX_PAYLOAD,
  secretUri,
  type VersionCondition,
} from '../publish/secretmanager.ts';
import type { Secret } from '../secret.ts';
import { readSecretFile } from '../sources/file.ts';
import { type ObjectRef, parseSourceRef, type SecretManagerRef } from '../sources/reference.ts';
import {
  chooseFormat,
  described,
  OPERATOR_MAX_BYTES,
  type ParsedSubcommand,
  parseSubcommand,
  type RemoteContext,
  remoteContext,
  type SubcommandSpec,
  validateSecret,
  writeStdout,
} from './common.ts';
import type { Subcommand } from './index.ts';

const FLAGS = [
  {
    name: 'kms-key',
    type: 'string',
    value: 'KEY',
    help: 'projects/P/locations/L/keyRings/R/cryptoKeys/K (gs:// unless --plaintext, berglas://)',
  },
  {
    name: 'if-generation',
    type: 'string',
    value: 'N',
    help: 'gs://, berglas://: replace generation N (secret-fetch show -v, gcloud storage objects describe)',
  },
  {
    name: 'if-version',
    type: 'string',
    value: 'N',
    help: 'sm://: add a version only if N is still the newest (gcloud secrets versions list)',
  },
  { name: 'create', type: 'boolean', help: 'sm://: create the secret (automatic replication), then add version 1' },
  { name: 'format', type: 'string', value: 'FORMAT', help: `${['auto', ...FORMATS].join('|')} (default auto)` },
  {
    name: 'plaintext',
    type: 'boolean',
    help: "gs:// only: upload without encryption (the bucket's own encryption only)",
  },
] as const satisfies readonly FlagSpec[];

export const PUSH: SubcommandSpec<typeof FLAGS> = {
  name: 'push',
  about: `Usage: secret-fetch push FILE TARGET [--kms-key KEY] [--if-generation N | --if-version N | --create] [--format F]

Checks that FILE parses in its format (by --format, else by TARGET's or FILE's name; a secret ID
has no extension, so for sm:// it is FILE's name), refuses an empty FILE, and writes it to TARGET:

  gs://BUCKET/OBJECT       encrypted with --kms-key (Cloud KMS; an envelope over 64 KiB) and uploaded
                           with Cache-Control: private, no-store. Without --if-generation the object
                           is created only if it does not exist; with --if-generation N only
                           generation N is replaced. Prints gs://BUCKET/OBJECT#GENERATION.
  berglas://BUCKET/OBJECT  a berglas secret under --kms-key (required): berglas's body, whose data
                           key is bound to the object name, and the berglas-kms-key and
                           berglas-secret metadata, so berglas and berglas:// sources read it.
                           Conditional as for gs://. Prints berglas://BUCKET/OBJECT#GENERATION.
  sm://PROJECT/SECRET      a new Secret Manager version, at most 64 KiB: FILE itself, or with
                           --kms-key its KMS ciphertext (read it with --source sm://... --kms-key).
                           Without a flag the secret must exist and have no version yet; with
                           --if-version N the newest version must still be N; --create creates the
                           secret first (and fails if it exists). Secret Manager takes no
                           precondition when adding a version, so --if-version is checked by a read
                           just before the add, not atomically as on Cloud Storage: a version
                           number higher than expected is reported as a warning. Prints
                           sm://PROJECT/SECRET#VERSION.

When a condition fails, push exits 75 and writes nothing. FILE may be - for stdin.`,
  flags: FLAGS,
  more: `IAM: gs:// and berglas:// need storage.objects.create (and .delete to replace: roles/storage.objectUser)
and roles/cloudkms.cryptoKeyEncrypter on the key; sm:// needs roles/secretmanager.secretVersionAdder
and, for the check of the newest version, roles/secretmanager.viewer on the secret (--create:
roles/secretmanager.admin on the project instead).

Examples:
  secret-fetch push app.env gs://vault/app.env.enc --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k
  secret-fetch push app.env gs://vault/app.env.enc --kms-key ... --if-generation 1700000000000001
  secret-fetch push app.env berglas://vault/app.env --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k
  secret-fetch push app.env sm://my-project/app-env --create
  secret-fetch push app.env sm://my-project/app-env --if-version 3`,
  positionals: { min: 2, max: 2 },
};

type PushFlags = ParsedSubcommand<typeof FLAGS>['values'];

export const pushCommand: Subcommand = {
  ...described(PUSH),
  run: async (argv, context) => {
    const parsed = parseSubcommand(PUSH, argv, context);
    if (parsed === undefined) return 0;
    const [file, targetUri] = parsed.positionals as [string, string];
    const target = parseTarget(targetUri);
    const { values } = parsed;
    const kmsKey = values['kms-key'];
    if (kmsKey !== undefined) validateKmsKey(kmsKey);
    const write = target.scheme === 'sm' ? planVersion(target, values) : planObject(target, targetUri, values);

    const plaintext = readInput(file);
    try {
      await validateSecret(plaintext, chooseFormat(values.format, target, file), file);
      // Refused before any call: no KMS ciphertext of it could fit either.
      if (target.scheme === 'sm' && plaintext.byteLength > SECRET_MANAGER_MAX_PAYLOAD) {
        throw payloadTooLarge(secretUri(target), plaintext.byteLength);
      }
      const remote = remoteContext(parsed);
      const written = await remote.deadline.race(write(plaintext, kmsKey, file, remote, parsed));
      writeStdout(Buffer.from(`${written}\n`));
      return 0;
    } finally {
      plaintext.wipe();
    }
  },
};

/** Writes the checked plaintext; resolves to what push prints (TARGET#GENERATION or #VERSION). */
type Write = (
  plaintext: Secret,
  kmsKey: string | undefined,
  file: string,
  remote: RemoteContext,
  parsed: ParsedSubcommand<typeof FLAGS>,
) => Promise<string>;

/** gs:// and berglas://: flags checked up front, then an upload conditioned on the generation. */
function planObject(target: ObjectRef, uri: string, values: PushFlags): Write {
  const kmsKey = values['kms-key'];
  refuse(
    values['if-version'] !== undefined || values.create === true,
    `--if-version and --create are for sm:// targets`,
    `to replace an object, use --if-generation N`,
  );
  if (target.scheme === 'berglas') {
    refuse(
      kmsKey === undefined,
      `push to ${uri} without --kms-key`,
      'a berglas secret is always encrypted: add --kms-key KEY',
    );
    refuse(
      values.plaintext === true,
      '--plaintext with a berglas:// target',
      'a berglas secret is always encrypted: drop --plaintext',
    );
  } else {
    refuse(
      kmsKey === undefined && values.plaintext !== true,
      `push to ${uri} without --kms-key`,
      'add --kms-key KEY, or --plaintext to store it unencrypted',
    );
    refuse(kmsKey !== undefined && values.plaintext === true, '--plaintext and --kms-key together', 'drop one of them');
  }
  const ifGeneration = values['if-generation'];
  refuse(
    ifGeneration !== undefined && !/^[1-9][0-9]{0,19}$/.test(ifGeneration),
    `--if-generation ${ifGeneration} is not a generation`,
    'give the decimal generation to replace',
  );
  refuse(
    target.generation !== undefined,
    `push target ${uri} names a generation`,
    'use --if-generation N to replace generation N',
  );

  return (plaintext, key, file, remote, parsed) =>
    writeSecret(plaintext.reveal(), key, { ref: target, ifGenerationMatch: ifGeneration ?? '0' }, file, {
      ...remote,
      log: parsed.log,
    });
}

/** sm://: flags checked up front, then the condition read and the version added. */
function planVersion(target: SecretManagerRef, values: PushFlags): Write {
  const where = secretUri(target);
  refuse(
    values['if-generation'] !== undefined,
    '--if-generation is for gs:// and berglas:// targets',
    `to add a version on top of version N of ${where}, use --if-version N`,
  );
  refuse(
    values.plaintext === true,
    `--plaintext with ${where}`,
    'drop it: without --kms-key the file itself is the payload (Secret Manager encrypts it at rest)',
  );
  const ifVersion = values['if-version'];
  refuse(
    ifVersion !== undefined && !/^[1-9][0-9]{0,19}$/.test(ifVersion),
    `--if-version ${ifVersion} is not a version number`,
    'give the number of the newest version (gcloud secrets versions list)',
  );
  refuse(
    ifVersion !== undefined && values.create === true,
    '--create and --if-version together',
    'a secret being created has no version: drop --if-version',
  );
  const condition: VersionCondition =
    values.create === true
      ? { kind: 'create' }
      : ifVersion === undefined
        ? { kind: 'first' }
        : { kind: 'on-top', version: ifVersion };

  return (plaintext, kmsKey, file, remote, parsed) =>
    writeSecret(plaintext.reveal(), kmsKey, { ref: target, condition }, file, { ...remote, log: parsed.log });
}

function refuse(condition: boolean, message: string, hint: string): void {
  if (condition) throw new UsageError(message, hint);
}

type Target = ObjectRef | SecretManagerRef;

function parseTarget(uri: string): Target {
  const ref = parseSourceRef(uri);
  if (ref.scheme === 'file') {
    throw new UsageError(
      `push target ${uri} is not a gs://, berglas:// or sm:// target`,
      'write gs://BUCKET/OBJECT, berglas://BUCKET/OBJECT or sm://PROJECT/SECRET',
    );
  }
  // The reference fills in `latest`: look at what was written.
  if (ref.scheme === 'sm' && (uri.includes('#') || uri.includes('/versions/'))) {
    throw new UsageError(
      `push target ${uri} names a version`,
      `push adds a new version: write ${secretUri(ref)} (and --if-version N to add on top of version N)`,
    );
  }
  return ref;
}

/** The file, or stdin for "-"; refuses an empty one. */
export function readInput(file: string): Secret {
  const { data } = file === '-' ? readStdin() : readSecretFile(file, OPERATOR_MAX_BYTES);
  if (data.byteLength === 0) {
    throw new UsageError(`${file === '-' ? 'stdin' : file} is empty`, 'refusing to upload an empty secret');
  }
  return data;
}

function readStdin() {
  // Reads to EOF: a pipe's size is unknown up front.
  return readSecretFile('/dev/stdin', OPERATOR_MAX_BYTES);
}
