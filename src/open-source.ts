// One place opens a source: planSource decides, before any I/O, how a secret is read and
// decrypted; openSource follows that plan (fetch, then decrypt). The main run, --refresh, the
// environment references and the show, get and edit commands all read secrets through these two,
// so the decrypt rules (Cloud KMS, a Flask-Vault master key, a source that decrypts itself) are
// written once.

import { validateKmsKey } from './decrypt/kms.ts';
import {
  decryptWithMasterKey,
  describeMasterKey,
  MASTER_KEY_VARIABLE,
  type MasterKeySource,
} from './decrypt/master-key.ts';
import { UsageError } from './errors.ts';
import { detectFormat, type Format, formatFlag } from './formats/index.ts';
import type { Secret } from './secret.ts';
import { type FetchContext, fetchSource, kindOf } from './sources/index.ts';
import { describeSource, parseSourceRef, type SourceRef, sourceFileName } from './sources/reference.ts';

/** How the bytes a source holds become the secret. */
export type Decrypt =
  | { readonly kind: 'none' }
  /** Cloud KMS ciphertext or a secret-fetch envelope under this key (--kms-key). */
  | { readonly kind: 'kms'; readonly key: string }
  /** A Flask-Vault file (a .enc name without --kms-key), with this master key. */
  | { readonly kind: 'flask-vault'; readonly masterKey: MasterKeySource }
  /** The reader decrypts (berglas://); `kmsKey`, if given, is the key the object must name. */
  | { readonly kind: 'self'; readonly kmsKey: string | undefined };

export interface SourcePlan {
  /** The source as given, as messages name it. */
  readonly uri: string;
  readonly ref: SourceRef;
  readonly decrypt: Decrypt;
  /** How the run parses the plaintext; raw: it does not (a file, a reference, a command's own use). */
  readonly format: Format;
}

/** Names of Flask-Vault files (and of Cloud KMS ciphertext, which comes with --kms-key). */
export const ENCRYPTED_NAME = /\.enc$/i;

/**
 * The plan for one source. `format` is a --format value (default auto: by name). A .enc name
 * without a KMS key is a Flask-Vault file: decrypted with `masterKey`, or, without one, refused
 * when the run would parse it (its ciphertext is never parsed as text).
 */
export function planSource(given: {
  readonly uri: string;
  /** The parsed `uri`, when the caller parsed it already (a reference, with its own messages). */
  readonly ref?: SourceRef;
  readonly kmsKey?: string | undefined;
  readonly masterKey?: MasterKeySource | undefined;
  readonly format?: string | undefined;
}): SourcePlan {
  const ref = given.ref ?? parseSourceRef(given.uri);
  const kind = kindOf(ref);
  const { kmsKey, masterKey } = given;
  if (kmsKey !== undefined) validateKmsKey(kmsKey);
  const flag = formatFlag(given.format ?? 'auto');
  const format = flag === 'auto' ? detectFormat(sourceFileName(ref)) : flag;
  let decrypt: Decrypt;
  if (kind.decryptsItself) decrypt = { kind: 'self', kmsKey };
  else if (kmsKey !== undefined) decrypt = { kind: 'kms', key: kmsKey };
  else if (kind.nameCarriesFormat && ENCRYPTED_NAME.test(sourceFileName(ref))) {
    if (masterKey !== undefined) decrypt = { kind: 'flask-vault', masterKey };
    else if (format === 'raw') decrypt = { kind: 'none' };
    else {
      throw new UsageError(
        `${describeSource(ref)} is encrypted (.enc) but no key is given`,
        `add --master-key-file PATH (or ${MASTER_KEY_VARIABLE}) for a Flask-Vault file, or --kms-key NAME for Cloud KMS`,
      );
    }
  } else decrypt = { kind: 'none' };
  return Object.freeze({ uri: given.uri, ref, decrypt: Object.freeze(decrypt), format });
}

export interface OpenedSource {
  readonly secret: Secret;
  /** The generation or version read, when the source has one. */
  readonly version: string | undefined;
  /** The KMS key that decrypted it, if one did (berglas: the key the object names). */
  readonly keyName: string | undefined;
}

/**
 * Fetches the plan's source (or `at`, the same source pinned to a version, for a refresh) and
 * decrypts it as planned. The fetched bytes are wiped once decrypted.
 */
export async function openSource(
  plan: SourcePlan,
  context: FetchContext,
  at: SourceRef = plan.ref,
): Promise<OpenedSource> {
  const { decrypt, uri } = plan;
  // Cloud KMS's handshakes overlap the fetch, instead of following it (berglas, the one kind that
  // decrypts itself, unwraps its data key with KMS too).
  if (decrypt.kind === 'kms' || decrypt.kind === 'self') context.clients.preconnect('kms');
  const fetched = await fetchSource(at, context, decrypt.kind === 'self' ? decrypt.kmsKey : undefined);
  if (context.verifyKey !== undefined && fetched.signatureVerified !== true) {
    fetched.data.wipe();
    throw new Error(`the ${at.scheme}:// reader ignored --verify-key`); // a bug: fail closed
  }
  const { version } = fetched;
  const noun = kindOf(at).versionNoun;
  context.log.debug(
    `fetched ${uri}${version && noun ? ` at ${noun} ${version}` : ''}: ${fetched.data.byteLength} bytes`,
  );
  if (decrypt.kind === 'none' || decrypt.kind === 'self') {
    return { secret: fetched.data, version, keyName: fetched.keyName };
  }
  try {
    if (decrypt.kind === 'flask-vault') {
      context.log.debug(
        `decrypting ${uri} as a Flask-Vault file with the master key from ${describeMasterKey(decrypt.masterKey)}`,
      );
      return {
        secret: decryptWithMasterKey(fetched.data.reveal(), decrypt.masterKey, uri),
        version,
        keyName: undefined,
      };
    }
    const client = await context.clients.kms(context.retry);
    const { decryptSecret } = await import('./decrypt/index.ts');
    const secret = await decryptSecret(
      client,
      { keyName: decrypt.key, data: fetched.data.reveal(), what: uri },
      context.retry,
    );
    return { secret, version, keyName: decrypt.key };
  } finally {
    fetched.data.wipe();
  }
}
