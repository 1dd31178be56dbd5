// `secret-fetch edit SOURCE`: decrypt into a private file on tmpfs, open $VISUAL/$EDITOR, and
// write the result only if it is new, non-empty, parses in its format, and the source is still
// at what was read: the object's generation (a Cloud Storage precondition), or the secret's newest
// version (read just before the add: Secret Manager has no precondition). The temp directory is
// removed on every path, including the editor failing and an interrupt.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { validateKmsKey } from '../decrypt/kms.ts';
import { OutputError, UsageError } from '../errors.ts';
import type { FlagSpec } from '../flags.ts';
import { show } from '../log.ts';
import { openSource, planSource } from '../open-source.ts';
import { writeSecret } from '../publish/index.ts';
import { payloadTooLarge, SECRET_MANAGER_MAX_PAYLOAD } from '../publish/secretmanager.ts';
import { inheritedEnvironment } from '../sinks/env.ts';
import { isSharedDirectory, memoryFilesystemAt, StagedFiles } from '../sinks/file.ts';
import { readSecretFile } from '../sources/file.ts';
import { describeSource, parseSourceRef, sourceFileName } from '../sources/reference.ts';
import {
  chooseFormat,
  described,
  OPERATOR_MAX_BYTES,
  parseSubcommand,
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
    help: 'the key (gs://: required unless --plaintext; berglas://: the key it must name; sm://: when the payload is KMS ciphertext)',
  },
  { name: 'plaintext', type: 'boolean', help: 'gs:// only: the object is not encrypted' },
  {
    name: 'format',
    type: 'string',
    value: 'FORMAT',
    help: "how to validate the result (default: by the object's name; a secret ID has none)",
  },
  {
    name: 'tempfile-dir',
    type: 'string',
    value: 'DIR',
    env: true,
    help: 'where the private temp directory goes (tmpfs; default /dev/shm)',
  },
] as const satisfies readonly FlagSpec[];

export const EDIT: SubcommandSpec<typeof FLAGS> = {
  name: 'edit',
  about: `Usage: secret-fetch edit gs://BUCKET/OBJECT --kms-key KEY [--format F] [--tempfile-dir DIR]
       secret-fetch edit berglas://BUCKET/OBJECT [--kms-key KEY] [--format F] [--tempfile-dir DIR]
       secret-fetch edit sm://PROJECT/SECRET [--kms-key KEY] [--format F] [--tempfile-dir DIR]

Decrypts the object (or the secret's latest version) into a private file (mode 0600, in a new 0700
directory on tmpfs), opens $VISUAL or $EDITOR (default vi) on it, then re-encrypts and writes the
result only if it changed, is not empty, parses in its format, and nobody wrote in between (exit 75
if someone did; your edit is not written). Unchanged content writes nothing and exits 0. The temp
file is removed on every path. Prints TARGET#NEW_GENERATION, or sm://PROJECT/SECRET#NEW_VERSION.

For gs:// and berglas:// the upload is conditioned on the generation read; a berglas secret is
written back as berglas writes it, under the key its metadata names (--kms-key, if given, must be
that key). For sm:// a new version is added only
if the version read is still the newest; Secret Manager takes no precondition, so that is a read
just before the add, not an atomic check (a version number higher than expected is reported).`,
  flags: FLAGS,
  more: `Examples:
  EDITOR=nano secret-fetch edit gs://vault/app.env.enc --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k
  secret-fetch edit sm://my-project/app-env --format dotenv`,
  positionals: { min: 1, max: 1 },
};

export const editCommand: Subcommand = {
  ...described(EDIT),
  run: async (argv, context) => {
    const parsed = parseSubcommand(EDIT, argv, context);
    if (parsed === undefined) return 0;
    const [uri] = parsed.positionals as [string];
    const ref = parseSourceRef(uri);
    if (ref.scheme === 'file') {
      throw new UsageError(
        `edit ${uri}: only gs:// and berglas:// objects and sm:// secrets can be edited`,
        'write gs://BUCKET/OBJECT, berglas://BUCKET/OBJECT or sm://PROJECT/SECRET',
      );
    }
    if (ref.scheme !== 'sm' && ref.generation !== undefined) {
      throw new UsageError(`edit ${uri} names a generation`, 'edit the live object: drop the #generation');
    }
    // The reference fills in `latest`: look at what was written.
    if (ref.scheme === 'sm' && (uri.includes('#') || uri.includes('/versions/'))) {
      throw new UsageError(`edit ${uri} names a version`, 'edit the latest version: drop the #version');
    }
    const { values, log } = parsed;
    const kmsKey = values['kms-key'];
    if (kmsKey !== undefined) validateKmsKey(kmsKey);
    if (ref.scheme === 'sm' && values.plaintext === true) {
      throw new UsageError(`--plaintext with ${uri}`, 'drop it: without --kms-key the payload is the secret itself');
    }
    if (ref.scheme === 'berglas' && values.plaintext === true) {
      throw new UsageError(`--plaintext with ${uri}`, 'a berglas secret is always encrypted: drop --plaintext');
    }
    if (ref.scheme === 'gs' && kmsKey === undefined && values.plaintext !== true) {
      throw new UsageError(
        `edit ${uri} without --kms-key`,
        'add --kms-key KEY, or --plaintext for an unencrypted object',
      );
    }
    const name = sourceFileName(ref);
    const format = chooseFormat(values.format, ref, name);
    const tempfileDir = values['tempfile-dir'] ?? '/dev/shm';
    checkTmpfs(tempfileDir);

    // The generation (or version) read is the one the write must still find.
    const reading = remoteContext(parsed);
    const fetch = { clients: reading.clients, retry: reading.retry, log, maxBytes: OPERATOR_MAX_BYTES };
    // Read as it is stored (raw: the edit validates the result itself, in `format`).
    const plan = planSource({ uri, ref, kmsKey, format: 'raw' });
    const { secret: original, version, keyName } = await reading.deadline.race(openSource(plan, fetch));
    if (version === undefined) {
      original.wipe();
      throw new Error(`the ${ref.scheme}:// reader reported no version`); // a bug: fail closed
    }
    const read = version;
    // A berglas secret is written back under the key it names (which --kms-key, if given, matched).
    const writeKey = ref.scheme === 'berglas' ? keyName : kmsKey;

    const dir = mkdtempSync(join(tempfileDir, 'secret-fetch-edit-'));
    const removeDir = () => rmSync(dir, { recursive: true, force: true });
    const forget = context.onExit(removeDir);
    try {
      const path = join(dir, basename(name));
      const staged = new StagedFiles();
      // Checked again through the handle it is written by: a --tempfile-dir flipped to a disk since is refused.
      staged.stage(path, original.reveal(), { mode: 0o600, allowDisk: false, uid: undefined, gid: undefined });
      staged.commit();

      const editor = context.environ.VISUAL || context.environ.EDITOR || 'vi';
      const restore = context.ignoreInterrupts();
      const child = startEditor(editor, path, context.environ);
      // A TERM/HUP (or a failure) ends the session: take the editor down with it.
      const stopEditor = context.onExit(() => child.kill('SIGTERM'));
      let status: number | string;
      try {
        status = await new Promise<number | string>((resolve, reject) => {
          child.on('error', reject);
          child.on('exit', (code, signal) => resolve(signal ?? code ?? 1));
        });
      } finally {
        restore();
        stopEditor();
      }
      if (status !== 0) {
        throw new UsageError(
          `the editor (${editor}) ${typeof status === 'string' ? `was killed by ${status}` : `exited with status ${status}`}; nothing was uploaded`,
          'set $VISUAL or $EDITOR to an editor that exits 0 when you save',
        );
      }
      const edited = readSecretFile(path, OPERATOR_MAX_BYTES).data;
      try {
        if (edited.byteLength === 0) {
          throw new UsageError(
            `the edited ${describeSource(ref)} is empty; nothing was uploaded`,
            'refusing to upload an empty secret',
          );
        }
        if (edited.reveal().equals(original.reveal())) {
          log.info(`${describeSource(ref)} unchanged; nothing was uploaded`);
          return 0;
        }
        await validateSecret(edited, format, describeSource(ref));
        if (ref.scheme === 'sm' && edited.byteLength > SECRET_MANAGER_MAX_PAYLOAD) {
          throw payloadTooLarge(`sm://${ref.project}/${ref.secret}`, edited.byteLength);
        }
        const writing = remoteContext(parsed);
        const target =
          ref.scheme === 'sm'
            ? { ref, condition: { kind: 'on-top', version: read } as const }
            : { ref, ifGenerationMatch: read };
        const written = await writing.deadline.race(
          writeSecret(edited.reveal(), writeKey, target, describeSource(ref), { ...writing, log }),
        );
        writeStdout(Buffer.from(`${written}\n`));
        return 0;
      } finally {
        edited.wipe();
      }
    } finally {
      original.wipe();
      removeDir();
      forget();
    }
  },
};

/** Starts `$EDITOR path` through sh, as git does, so EDITOR may carry arguments ("code --wait"). */
function startEditor(
  editor: string,
  path: string,
  environ: Readonly<Record<string, string | undefined>>,
): ChildProcess {
  // Not secret-fetch's own variables: SECRET_FETCH_MASTER_KEY and the like are no business of an editor.
  const env = inheritedEnvironment(environ);
  return spawn('/bin/sh', ['-c', `exec ${editor} "$1"`, 'secret-fetch-editor', path], { stdio: 'inherit', env });
}

function checkTmpfs(dir: string): void {
  let memory: boolean;
  try {
    memory = memoryFilesystemAt(dir) !== undefined;
  } catch {
    throw new OutputError(`--tempfile-dir ${show(dir)} does not exist`, 'give a directory on tmpfs, e.g. /dev/shm');
  }
  if (!memory) {
    throw new OutputError(
      `refusing to decrypt into ${show(dir)}: it is not on tmpfs or ramfs, so the secret would reach a disk`,
      'give --tempfile-dir a tmpfs directory, e.g. /dev/shm',
    );
  }
  // Another user could rename the private directory away and put one of theirs in its place.
  if (isSharedDirectory(statSync(dir))) {
    throw new OutputError(
      `refusing to decrypt into ${show(dir)}: every user can write it and it has no sticky bit`,
      'give --tempfile-dir a directory only its owner can write, or a sticky one such as /dev/shm',
    );
  }
}
