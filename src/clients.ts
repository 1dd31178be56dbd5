// Cloud clients, each imported and constructed on first use and then shared by the whole run:
// a run that reads only local files never loads a Google library.

import type { Storage } from '@google-cloud/storage';
import type { KmsClient } from './decrypt/kms.ts';
import type { SecretManagerClient } from './sources/secretmanager.ts';

export interface Clients {
  storage(): Promise<Storage>;
  kms(): Promise<KmsClient>;
  secretManager(): Promise<SecretManagerClient>;
}

export interface Endpoints {
  readonly storage: string | undefined;
  readonly kms: string | undefined;
  readonly secretManager: string | undefined;
}

export function createClients(endpoints: Endpoints): Clients {
  return {
    storage: once(async () => (await import('./sources/gcs.ts')).createStorageClient(endpoints.storage)),
    kms: once(async () => (await import('./decrypt/kms.ts')).createKmsClient(endpoints.kms)),
    secretManager: once(async () =>
      (await import('./sources/secretmanager.ts')).createSecretManagerClient(endpoints.secretManager),
    ),
  };
}

function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => {
    made ??= make();
    return made;
  };
}
