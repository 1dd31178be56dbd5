// Application Default Credentials, loaded once before the first API call, under the run's retry
// policy and --timeout. On GKE, Cloud Run and GCE they come from the metadata server, which may not
// answer yet when a pod starts (GKE's Workload Identity server needs a few seconds on a new pod).
// google-auth-library probes it once and takes a failed probe as "not on Google Cloud"; a failed
// token request fails the call. Here both are retried within the deadline, one warning line per retry.
//
// gcp-metadata retries each metadata request itself (3 times, after 0.1, 0.5 and 1.5 s, for 5xx,
// 429 and no answer) and has no switch for it: one of our attempts includes those.

import type { AuthClient, Compute } from 'google-auth-library';
import { PermissionError, type SecretFetchError, UnavailableError, UsageError } from '../errors.ts';
import type { Retry } from '../retry.ts';
import { ENDPOINT_FLAGS, type Endpoints } from './endpoints.ts';

/** Where credentials come from, decided from the environment by the CLI (options.ts). */
export interface CredentialsPlan {
  /** The metadata server google-auth-library asks (GCE_METADATA_IP or GCE_METADATA_HOST, or the default). */
  readonly metadataServer: string;
  /**
   * A metadata server should be there (in a Kubernetes pod, on Cloud Run, or named by
   * GCE_METADATA_HOST or METADATA_SERVER_DETECTION): when the library's probe finds none, wait for
   * one within --timeout instead of reporting that there are no credentials.
   */
  readonly expectMetadataServer: boolean;
  /** GOOGLE_APPLICATION_CREDENTIALS: the credentials come from this file, not the metadata server. */
  readonly credentialsFile: string | undefined;
  /**
   * Test hook (SECRET_FETCH_TEST_LOOPBACK_AUTH=1): send credentials to http:// endpoints too, which
   * the CLI allows only on the loopback interface. The tests use it to run the real credential
   * path against the local test servers.
   */
  readonly loopbackAuth: boolean;
}

/**
 * How a client authenticates: 'none' (a local emulator over http://), 'adc' (the client library
 * finds Application Default Credentials itself), or this credential, loaded up front and shared.
 */
export type ClientAuth = 'none' | 'adc' | AuthClient;

/** Without a credential loaded up front: http:// endpoints (emulators) get none, the rest find their own. */
export function defaultAuth(endpoint: string | undefined): ClientAuth {
  return endpoint?.startsWith('http:') ? 'none' : 'adc';
}

/** Constructor options for a REST-mode (fallback) Google API client: endpoint, port, protocol, auth. */
export interface FallbackClientOptions {
  [option: string]: string | number | boolean | object | undefined;
  fallback: true;
  apiEndpoint?: string;
  port?: number;
  protocol?: string;
  auth?: InstanceType<typeof import('google-auth-library').GoogleAuth>;
}

/**
 * The options the KMS and Secret Manager clients share: `endpoint` split into host, port and
 * protocol, and `auth` as the library takes it ('none': a local emulator gets no credentials at
 * all; an AuthClient: the one credential the run loaded, and waited for, shared by every client).
 */
export async function fallbackClientOptions(
  endpoint: string | undefined,
  auth: ClientAuth,
): Promise<FallbackClientOptions> {
  const options: FallbackClientOptions = { fallback: true };
  if (endpoint !== undefined) {
    const url = new URL(endpoint);
    const secure = url.protocol === 'https:';
    options.apiEndpoint = url.hostname;
    options.port = Number(url.port || (secure ? 443 : 80));
    options.protocol = secure ? 'https' : 'http';
  }
  if (auth !== 'adc') {
    const { GoogleAuth, PassThroughClient } = await import('google-auth-library');
    options.auth = new GoogleAuth({ authClient: auth === 'none' ? new PassThroughClient() : auth });
  }
  return options;
}

export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

const METADATA_HINT =
  'on GKE, check that Workload Identity is enabled on the node pool and that the Kubernetes service ' +
  'account is bound to a Google service account; off Google Cloud, set GOOGLE_APPLICATION_CREDENTIALS';

/**
 * Finds the Application Default Credential. A metadata-server credential comes back with a fresh
 * access token, for every client to share; any other kind (a key file, an external account, gcloud
 * user credentials) is only checked to exist (undefined is returned), and each client library
 * loads it as it always did.
 */
export async function loadCredentials(plan: CredentialsPlan, retry: Retry): Promise<AuthClient | undefined> {
  const { Compute, GoogleAuth, gcpMetadata } = await import('google-auth-library');
  let auth: InstanceType<typeof GoogleAuth> | undefined;
  return retry(
    describeLoad(plan),
    async () => {
      if (auth === undefined) {
        // The library caches a failed probe of the metadata server for the whole process: probe again.
        gcpMetadata.resetIsAvailableCache();
        auth = new GoogleAuth({ scopes: [CLOUD_PLATFORM_SCOPE] });
      }
      let client: AuthClient;
      try {
        client = await auth.getClient();
      } catch (error) {
        auth = undefined;
        throw error;
      }
      if (!(client instanceof Compute)) return undefined;
      await client.getAccessToken();
      return client;
    },
    (error) => classifyCredentialError(error, plan),
    plan.credentialsFile === undefined ? METADATA_HINT : undefined,
  );
}

/** Refreshes the shared metadata-server token if it is about to expire (a --refresh run lasts). */
export async function freshToken(client: AuthClient, plan: CredentialsPlan, retry: Retry): Promise<void> {
  await retry(
    `get an access token from the metadata server at ${plan.metadataServer}`,
    () => (client as Compute).getAccessToken(),
    (error) => classifyCredentialError(error, plan),
    METADATA_HINT,
  );
}

function describeLoad(plan: CredentialsPlan): string {
  return plan.credentialsFile === undefined
    ? `get an access token from the metadata server at ${plan.metadataServer}`
    : `load the credentials in ${plan.credentialsFile} (GOOGLE_APPLICATION_CREDENTIALS)`;
}

const NO_ADC = 'Could not load the default credentials';
/** No answer from the metadata server: it may still be starting. */
const NO_ANSWER = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'TimeoutError',
  'AbortError',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/** What went wrong while loading credentials, in our terms; never the library's message, which may quote a file. */
export function classifyCredentialError(error: unknown, plan: CredentialsPlan): SecretFetchError | undefined {
  const server = plan.metadataServer;
  const message = error instanceof Error ? error.message : '';
  if (message.startsWith(NO_ADC)) {
    if (plan.expectMetadataServer)
      return new UnavailableError(`no metadata server answered at ${server}`, METADATA_HINT);
    return new PermissionError(
      `no Google credentials: GOOGLE_APPLICATION_CREDENTIALS is not set and no metadata server answered at ${server}`,
      'run on Google Cloud as a service account (GKE Workload Identity, Cloud Run, GCE), set ' +
        'GOOGLE_APPLICATION_CREDENTIALS to a credentials file, or set GCE_METADATA_HOST to wait for a metadata server',
    );
  }
  if (plan.credentialsFile !== undefined) {
    return new PermissionError(
      `cannot load the credentials in ${plan.credentialsFile} (GOOGLE_APPLICATION_CREDENTIALS)`,
      'check that the file exists, is readable, and holds a service account key or an external account configuration',
    );
  }
  // From here on, the error came from the metadata server's token endpoint.
  const { response, status, code } = (error ?? {}) as {
    response?: { status?: unknown };
    status?: unknown;
    code?: unknown;
  };
  const httpStatus = typeof response?.status === 'number' ? response.status : status;
  if (typeof httpStatus === 'number') {
    if (httpStatus === 404) {
      // GKE's Workload Identity server answers 404 until the pod's identity is ready.
      return new UnavailableError(
        `the metadata server at ${server} has no access token for this workload yet (404)`,
        METADATA_HINT,
      );
    }
    if (httpStatus === 429 || httpStatus >= 500) {
      return new UnavailableError(
        `the metadata server at ${server} answered ${httpStatus} for an access token`,
        METADATA_HINT,
      );
    }
    return new PermissionError(
      `the metadata server at ${server} refused an access token (${httpStatus})`,
      'check the service account this runs as, and its access scopes',
    );
  }
  if (typeof code === 'string' && NO_ANSWER.has(code)) {
    return new UnavailableError(`the metadata server at ${server} did not answer (${code})`, METADATA_HINT);
  }
  if (error instanceof RangeError && message.includes('Metadata-Flavor')) {
    return new PermissionError(
      `${server} answered, but not as a metadata server (no Metadata-Flavor: Google header)`,
      'point GCE_METADATA_HOST at a metadata server, or unset it',
    );
  }
  // A 200 whose body is not a token (not JSON, no access_token): something else answered, or the
  // server is not ready; retried like a 503 within --timeout. Never the body itself: it may be anything.
  return new UnavailableError(
    `the metadata server at ${server} answered with something that is not an access token`,
    METADATA_HINT,
  );
}

const DETECTION_MODES = ['assume-present', 'none', 'bios-only', 'ping-only'];
/** Variables set in every Kubernetes pod, and on Cloud Run and Cloud Functions, where a metadata server is expected. */
const HOSTED = ['KUBERNETES_SERVICE_HOST', 'K_SERVICE', 'CLOUD_RUN_JOB', 'CLOUD_RUN_WORKER_POOL', 'FUNCTION_NAME'];
const LOOPBACK = /^http:\/\/(127\.[0-9.]+|\[::1\]|localhost)(:[0-9]+)?\/?$/;

/**
 * Where Google credentials come from, read from the variables google-auth-library reads itself
 * (GOOGLE_APPLICATION_CREDENTIALS, GCE_METADATA_HOST/IP, METADATA_SERVER_DETECTION), so that
 * secret-fetch knows when to wait for the metadata server and what to name in its messages.
 */
export function credentialsPlan(
  environ: Readonly<Record<string, string | undefined>>,
  endpoints: Endpoints,
): CredentialsPlan {
  const detection = (environ.METADATA_SERVER_DETECTION ?? '').trim().toLowerCase();
  if (detection !== '' && !DETECTION_MODES.includes(detection)) {
    throw new UsageError(
      `METADATA_SERVER_DETECTION=${environ.METADATA_SERVER_DETECTION} is not known`,
      `use ${DETECTION_MODES.join(', ')}, or unset it`,
    );
  }
  const host = nonEmpty(environ.GCE_METADATA_IP) ?? nonEmpty(environ.GCE_METADATA_HOST);
  const credentialsFile = nonEmpty(environ.GOOGLE_APPLICATION_CREDENTIALS);
  const loopbackAuth = /^(1|true|yes|on)$/i.test(environ.SECRET_FETCH_TEST_LOOPBACK_AUTH ?? '');
  if (loopbackAuth) {
    for (const [key, url] of Object.entries(endpoints) as [keyof Endpoints, string | undefined][]) {
      if (url?.startsWith('http:') && !LOOPBACK.test(url)) {
        throw new UsageError(
          `SECRET_FETCH_TEST_LOOPBACK_AUTH would send credentials in clear text to --${ENDPOINT_FLAGS[key]} ${url}`,
          'it is a test hook for loopback endpoints only: unset it',
        );
      }
    }
  }
  return Object.freeze({
    metadataServer: host === undefined ? 'http://169.254.169.254' : /^https?:\/\//.test(host) ? host : `http://${host}`,
    expectMetadataServer:
      credentialsFile === undefined &&
      detection !== 'none' &&
      (host !== undefined ||
        detection === 'assume-present' ||
        detection === 'ping-only' ||
        HOSTED.some((name) => nonEmpty(environ[name]) !== undefined)),
    credentialsFile,
    loopbackAuth,
  });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
