// The source stage: a reference in, the secret's bytes out.

import type { Clients } from '../clients.ts';
import { UsageError } from '../errors.ts';
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

export async function fetchSource(ref: SourceRef, context: FetchContext): Promise<FetchedSecret> {
  switch (ref.scheme) {
    case 'gs':
      return (await import('./gcs.ts')).fetchObject(ref, context);
    case 'file':
      return readSecretFile(ref.path, context.maxBytes);
    case 'sm':
      return (await import('./secretmanager.ts')).accessSecretVersion(ref, context);
    case 'berglas':
      throw notYet(ref);
  }
}

/**
 * What identifies the current content of a source, read cheaply (--refresh): the generation of
 * a gs:// object (metadata only), the version number an sm:// version ID resolves to (metadata
 * only), or device, inode, size and mtime of a file (a Kubernetes secret volume swaps a symlink,
 * which changes the inode).
 */
export async function sourceVersion(ref: SourceRef, context: FetchContext): Promise<string> {
  switch (ref.scheme) {
    case 'gs':
      return (await import('./gcs.ts')).objectGeneration(ref, context);
    case 'file':
      return fileVersion(ref.path);
    case 'sm':
      return (await import('./secretmanager.ts')).currentSecretVersion(ref, context);
    case 'berglas':
      throw notYet(ref);
  }
}

// Interim, while the berglas:// reader is built (issue 3): parsed, but not fetched.
function notYet(ref: SourceRef): UsageError {
  return new UsageError(`--source ${ref.scheme}:// cannot be read by this build yet`, 'use gs://, sm:// or a file');
}
