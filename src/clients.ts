// Cloud clients, each imported and constructed on first use and then shared by the whole run:
// a run that reads only local files never loads a Google library.

import type { Storage } from '@google-cloud/storage';
import type { KmsClient } from './decrypt/kms.ts';
import type { Logger } from './log.ts';
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

export function createClients(endpoints: Endpoints, log?: Logger): Clients {
  return {
    storage: once('Cloud Storage', log, async () =>
      (await import('./sources/gcs.ts')).createStorageClient(endpoints.storage),
    ),
    kms: once('Cloud KMS', log, async () => (await import('./decrypt/kms.ts')).createKmsClient(endpoints.kms)),
    secretManager: once('Secret Manager', log, async () =>
      (await import('./sources/secretmanager.ts')).createSecretManagerClient(endpoints.secretManager),
    ),
  };
}

function once<T>(service: string, log: Logger | undefined, make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => {
    if (made === undefined) {
      // Said once per run under --verbose: a second line would mean a second client.
      log?.debug(`creating the ${service} client`);
      made = make();
    }
    return made;
  };
}
