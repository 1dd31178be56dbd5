// Service endpoints: --storage-endpoint (or STORAGE_EMULATOR_HOST), --kms-endpoint and
// --secret-manager-endpoint, checked once for the main run and every subcommand.

import { UsageError } from '../errors.ts';

type Environ = Readonly<Record<string, string | undefined>>;

export interface Endpoints {
  readonly storage: string | undefined;
  readonly kms: string | undefined;
  readonly secretManager: string | undefined;
}

/** Google's own endpoints, where none is given. */
export const DEFAULT_ENDPOINTS: { readonly [K in keyof Endpoints]-?: string } = {
  storage: 'https://storage.googleapis.com',
  kms: 'https://cloudkms.googleapis.com',
  secretManager: 'https://secretmanager.googleapis.com',
};

export const ENDPOINT_FLAGS: Record<keyof Endpoints, string> = {
  storage: 'storage-endpoint',
  kms: 'kms-endpoint',
  secretManager: 'secret-manager-endpoint',
};

const ENDPOINT_URL = /^https?:\/\/[^/\s]+\/?$/;

/**
 * The Cloud Storage endpoint: --storage-endpoint (or its variable), else STORAGE_EMULATOR_HOST. The
 * Go and Python clients, and the emulators' own instructions, give that variable as HOST:PORT, so
 * without a scheme it means http://HOST:PORT. A bad value is named as given, by its own name.
 */
export function storageEndpoint(flag: string | undefined, environ: Environ): string | undefined {
  if (flag !== undefined) return flag;
  const host = nonEmpty(environ.STORAGE_EMULATOR_HOST);
  if (host === undefined) return undefined;
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(host) ? host : `http://${host}`;
  if (!ENDPOINT_URL.test(url)) {
    throw new UsageError(
      `STORAGE_EMULATOR_HOST=${host} is not an emulator address`,
      'write HOST:PORT or http://HOST:PORT (or give --storage-endpoint URL)',
    );
  }
  return url;
}

/** Checks each endpoint is a bare http(s)://HOST[:PORT] URL; the result is frozen. */
export function parseEndpoints(endpoints: Endpoints): Endpoints {
  for (const [key, url] of Object.entries(endpoints) as [keyof Endpoints, string | undefined][]) {
    if (url !== undefined && !ENDPOINT_URL.test(url)) {
      throw new UsageError(
        `--${ENDPOINT_FLAGS[key]} ${url} is not an endpoint URL`,
        'write http://HOST:PORT or https://HOST',
      );
    }
  }
  return Object.freeze({ ...endpoints });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
