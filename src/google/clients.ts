// Cloud clients, each imported and constructed on first use and then shared by the whole run:
// a run that reads only local files never loads a Google library. Credentials are loaded once,
// before the first client that needs them, under the caller's retry policy and deadline.

import type { Storage } from '@google-cloud/storage';
import type { AuthClient } from 'google-auth-library';
import type { KmsClient } from '../decrypt/kms.ts';
import type { Logger } from '../log.ts';
import type { Retry } from '../retry.ts';
import { type ClientAuth, type CredentialsPlan, freshToken, loadCredentials } from './credentials.ts';
import { DEFAULT_ENDPOINTS, type Endpoints } from './endpoints.ts';
import type { SecretManagerClient } from './secretmanager.ts';
import type { SecretManagerReader } from './secretmanager-rest.ts';
import type { GcsReader } from './storage-rest.ts';

export interface Clients {
  /** The thin Cloud Storage reader every gs:// and berglas:// start uses (google/storage-rest.ts). */
  gcs(retry: Retry): Promise<GcsReader>;
  /** The Cloud Storage client, once its credentials are ready (retried with `retry`). */
  storage(retry: Retry): Promise<Storage>;
  kms(retry: Retry): Promise<KmsClient>;
  secretManager(retry: Retry): Promise<SecretManagerClient>;
  /** The thin Secret Manager reader every sm:// source and reference uses (google/secretmanager-rest.ts). */
  secretManagerReader(retry: Retry): Promise<SecretManagerReader>;
  /**
   * Opens the connection to a service's thin client now (google/rest.ts preconnect), so its
   * handshakes overlap the calls before it; a failure is left to the call that follows.
   */
  preconnect(service: keyof Endpoints): void;
}

export type { Endpoints } from './endpoints.ts';

/** `ca`: PEM certificates the thin clients trust besides the system roots (--ca-file). */
export function createClients(
  endpoints: Endpoints,
  credentials: CredentialsPlan,
  log?: Logger,
  ca?: readonly string[],
): Clients {
  let loaded: Promise<AuthClient | undefined> | undefined;
  const authFor = async (endpoint: string | undefined, retry: Retry): Promise<ClientAuth> => {
    if (endpoint?.startsWith('http:') && !credentials.loopbackAuth) return 'none';
    loaded ??= loadCredentials(credentials, retry).catch((error: unknown) => {
      loaded = undefined; // a later call (a --refresh) tries again
      throw error;
    });
    const credential = await loaded;
    if (credential === undefined) return 'adc';
    await freshToken(credential, credentials, retry);
    return credential;
  };
  const storage = onceWith('Cloud Storage library', log, (auth: ClientAuth) =>
    import('./storage.ts').then((m) => m.createStorageClient(endpoints.storage, auth)),
  );
  const gcs = onceWith('Cloud Storage', log, (auth: ClientAuth) =>
    import('./storage-rest.ts').then((m) => m.createGcsReader(endpoints.storage, auth, ca)),
  );
  const kms = onceWith('Cloud KMS', log, (auth: ClientAuth) =>
    import('../decrypt/kms.ts').then((m) => m.createKmsClient(endpoints.kms, auth, ca)),
  );
  const secretManagerReader = onceWith('Secret Manager', log, (auth: ClientAuth) =>
    import('./secretmanager-rest.ts').then((m) => m.createSecretManagerReader(endpoints.secretManager, auth, ca)),
  );
  const secretManager = onceWith('Secret Manager library', log, (auth: ClientAuth) =>
    import('./secretmanager.ts').then((m) => m.createSecretManagerClient(endpoints.secretManager, auth)),
  );
  return {
    gcs: async (retry) => gcs(await authFor(endpoints.storage, retry)),
    storage: async (retry) => storage(await authFor(endpoints.storage, retry)),
    kms: async (retry) => kms(await authFor(endpoints.kms, retry)),
    secretManager: async (retry) => secretManager(await authFor(endpoints.secretManager, retry)),
    secretManagerReader: async (retry) => secretManagerReader(await authFor(endpoints.secretManager, retry)),
    preconnect: (service) => {
      const url = endpoints[service] ?? DEFAULT_ENDPOINTS[service];
      log?.debug(`connecting to ${new URL(url).origin} ahead of its first call`);
      void import('./rest.ts').then((m) => m.preconnect(url, ca)).catch(() => {});
    },
  };
}

/** `make`, called on the first call only (with that call's argument); later calls share its result. */
function onceWith<A, T>(
  service: string,
  log: Logger | undefined,
  make: (arg: A) => Promise<T>,
): (arg: A) => Promise<T> {
  let made: Promise<T> | undefined;
  return (arg) => {
    if (made === undefined) {
      // Said once per run under --verbose: a second line would mean a second client.
      log?.debug(`creating the ${service} client`);
      made = make(arg);
    }
    return made;
  };
}
