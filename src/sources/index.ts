// The source stage: a reference in, the secret's bytes out.

import type { Clients } from '../clients.ts';
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
  /** The reader checked the bytes against FetchContext.verifyKey (run.ts refuses them otherwise). */
  readonly signatureVerified?: boolean;
}

/**
 * The secret's bytes: as stored for gs:// and files (the decrypt stage follows), already decrypted
 * for berglas://, whose key comes from the object's metadata; `kmsKey` (--kms-key), if given,
 * is the key that metadata must name.
 */
export async function fetchSource(ref: SourceRef, context: FetchContext, kmsKey?: string): Promise<FetchedSecret> {
  switch (ref.scheme) {
    case 'gs':
      return (await import('./gcs.ts')).fetchObject(ref, context);
    case 'berglas':
      return (await import('./berglas.ts')).fetchBerglasSecret(ref, context, kmsKey);
    case 'file':
      return readSecretFile(ref.path, context.maxBytes);
    case 'sm':
      return (await import('./secretmanager.ts')).accessSecretVersion(ref, context);
  }
}

/** Whether fetchSource decrypts this source itself (the decrypt stage must not). */
export function decryptsItself(ref: SourceRef): boolean {
  return ref.scheme === 'berglas';
}

/**
 * What identifies the current content of a source, read cheaply (--refresh): the generation of
 * a gs:// or berglas:// object (metadata only), the version number an sm:// version ID resolves
 * to (metadata only), or device, inode, size and mtime of a file (a Kubernetes secret volume swaps
 * a symlink, which changes the inode).
 */
export async function sourceVersion(ref: SourceRef, context: FetchContext): Promise<string> {
  switch (ref.scheme) {
    case 'gs':
    case 'berglas':
      return (await import('./gcs.ts')).objectGeneration(ref, context);
    case 'file':
      return fileVersion(ref.path);
    case 'sm':
      return (await import('./secretmanager.ts')).currentSecretVersion(ref, context);
  }
}
