// The source stage: a reference in, the secret's bytes out. What each kind of source can do is
// declared once, in SOURCE_KINDS; everything that branches on a kind asks this table. A new kind is
// one entry here, one reader file, and its syntax in reference.ts.

import type { Clients } from '../google/clients.ts';
import type { Logger } from '../log.ts';
import type { Retry } from '../retry.ts';
import type { Secret } from '../secret.ts';
import type { VerifyKey } from '../signing/verify.ts';
import { fileVersion, readSecretFile } from './file.ts';
import type { SourceRef } from './reference.ts';

export interface FetchContext {
  readonly clients: Clients;
  readonly retry: Retry;
  readonly log: Logger;
  /** Larger secrets are refused before they are downloaded. */
  readonly maxBytes: number;
  /** --verify-key: object readers refuse what is not signed by it (see src/signing/verify.ts). */
  readonly verifyKey?: VerifyKey | undefined;
  /** How the KMS key was given, for messages: --kms-key unless told (?kms-key= in a reference). */
  readonly kmsKeyOption?: string;
}

export interface FetchedSecret {
  readonly data: Secret;
  /** The file or object name, which --format auto reads. */
  readonly name: string;
  /** The object generation or secret version that was read, when the source has one. */
  readonly version?: string;
  /** The reader checked the bytes against FetchContext.verifyKey (openSource refuses them otherwise). */
  readonly signatureVerified?: boolean;
  /** A reader that decrypts itself: the KMS key it decrypted with (berglas: the one the object names). */
  readonly keyName?: string;
}

export type Scheme = SourceRef['scheme'];

/** What one kind of source can do. */
export interface SourceKind<R extends SourceRef = SourceRef> {
  /** What one immutable content of it is called in messages; undefined: it has none (a file). */
  readonly versionNoun: 'generation' | 'version' | undefined;
  /** Its reader checks a secret-fetch signature under --verify-key (src/signing/verify.ts). */
  readonly verifiable: boolean;
  /**
   * Its reader decrypts (a berglas:// object names its own key): the decrypt stage must not, and a
   * --kms-key is the key the object must name.
   */
  readonly decryptsItself: boolean;
  /** Its name can end in an extension (.env, .enc) that --format auto and the Flask-Vault rule read. */
  readonly nameCarriesFormat: boolean;
  /** The value prefix that makes an environment variable a reference to it; undefined: none. */
  readonly referencePrefix: string | undefined;
  /** The secret's bytes (decrypted only if decryptsItself; `kmsKey` is then the key it must name). */
  read(ref: R, context: FetchContext, kmsKey: string | undefined): Promise<FetchedSecret>;
  /**
   * What identifies the current content, read cheaply (--refresh): a generation or version number
   * from metadata, or a file's device, inode, size and mtime (a Kubernetes secret volume swaps a
   * symlink, which changes the inode).
   */
  version(ref: R, context: FetchContext): Promise<string>;
}

type KindOf<S extends Scheme> = SourceKind<Extract<SourceRef, { scheme: S }>>;

// Readers are imported on first use: a run that reads only files never loads a cloud reader.
export const SOURCE_KINDS: { readonly [S in Scheme]: KindOf<S> } = {
  gs: {
    versionNoun: 'generation',
    verifiable: true,
    decryptsItself: false,
    nameCarriesFormat: true,
    // A bare gs:// value is too often plain configuration (a bucket path) to be taken as a secret.
    referencePrefix: 'secret-fetch:gs://',
    read: async (ref, context) => (await import('./gcs.ts')).fetchObject(ref, context),
    version: async (ref, context) => (await import('./gcs.ts')).objectGeneration(ref, context),
  },
  berglas: {
    versionNoun: 'generation',
    verifiable: true,
    decryptsItself: true,
    nameCarriesFormat: true,
    referencePrefix: 'berglas://',
    read: async (ref, context, kmsKey) => (await import('./berglas.ts')).fetchBerglasSecret(ref, context, kmsKey),
    version: async (ref, context) => (await import('./gcs.ts')).objectGeneration(ref, context),
  },
  sm: {
    versionNoun: 'version',
    verifiable: false,
    decryptsItself: false,
    // A secret ID holds no dot.
    nameCarriesFormat: false,
    referencePrefix: 'sm://',
    read: async (ref, context) => (await import('./secretmanager.ts')).accessSecretVersion(ref, context),
    version: async (ref, context) => (await import('./secretmanager.ts')).currentSecretVersion(ref, context),
  },
  file: {
    versionNoun: undefined,
    verifiable: false,
    decryptsItself: false,
    nameCarriesFormat: true,
    referencePrefix: undefined,
    read: async (ref, context) => readSecretFile(ref.path, context.maxBytes),
    version: async (ref) => fileVersion(ref.path),
  },
};

export function kindOf(ref: SourceRef): SourceKind {
  return SOURCE_KINDS[ref.scheme] as SourceKind;
}

/** The secret's bytes, as its kind reads them (see SourceKind.read). */
export function fetchSource(ref: SourceRef, context: FetchContext, kmsKey?: string): Promise<FetchedSecret> {
  return kindOf(ref).read(ref, context, kmsKey);
}

/** What identifies the source's current content (see SourceKind.version). */
export function sourceVersion(ref: SourceRef, context: FetchContext): Promise<string> {
  return kindOf(ref).version(ref, context);
}
