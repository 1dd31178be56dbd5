// Which Application Default Credentials the Google clients would use here, found the way they
// find them (google-auth-library, loaded only now): the kind, where they came from, the email
// grants must name, and the project. Nothing is sent to Google to find them (the metadata server
// is asked for its email when that is where they come from) and no token is requested: whether
// they work is what the permission checks show. A private key or token is never read out of the
// library's answer, so it cannot be printed.

import { statSync } from 'node:fs';
import { PermissionError } from '../../errors.ts';
import { type Check, failFrom, ok, warn } from './checklist.ts';
import { PLACEHOLDERS } from './grants.ts';

export interface Credentials {
  /** For people: service account key, gcloud user credentials, metadata server, ... */
  readonly kind: string;
  /** Where they were found: GOOGLE_APPLICATION_CREDENTIALS=PATH, gcloud's ADC file, the metadata server. */
  readonly source: string;
  readonly email: string | undefined;
  readonly project: string | undefined;
  /** The IAM member a grant names: serviceAccount:EMAIL, user:EMAIL, or one with a placeholder. */
  readonly member: string;
}

export type CredentialsLookup =
  | { readonly found: Credentials }
  | { readonly found: undefined; readonly problem: PermissionError; readonly broken: boolean };

const SCOPES = ['https://www.googleapis.com/auth/cloud-platform'];
const ADC_FILE = "gcloud's application_default_credentials.json";

/** Looks credentials up as the clients will; `environ` names the key file in the report. */
export async function findCredentials(
  environ: Readonly<Record<string, string | undefined>>,
): Promise<CredentialsLookup> {
  const auth = await import('google-auth-library');
  const google = new auth.GoogleAuth({ scopes: SCOPES });
  const keyFile = environ.GOOGLE_APPLICATION_CREDENTIALS || undefined;
  let client: unknown;
  try {
    client = await google.getClient();
  } catch {
    // The library's message may quote the file (JSON.parse shows text around an error): never print it.
    return keyFile === undefined
      ? { found: undefined, problem: noneFound(), broken: false }
      : { found: undefined, problem: unusableKeyFile(keyFile), broken: true };
  }
  let kind: string;
  if (client instanceof auth.JWT) kind = 'service account key';
  else if (client instanceof auth.UserRefreshClient) kind = 'gcloud user credentials (application-default login)';
  else if (client instanceof auth.Impersonated) kind = 'impersonated service account';
  else if (client instanceof auth.ExternalAccountAuthorizedUserClient) kind = 'workforce identity user';
  else if (client instanceof auth.BaseExternalAccountClient) kind = 'external account (Workload Identity Federation)';
  else if (client instanceof auth.Compute) kind = 'attached service account';
  else kind = (client as object).constructor.name;
  const source =
    client instanceof auth.Compute
      ? 'the metadata server (GKE Workload Identity, Cloud Run, GCE)'
      : keyFile !== undefined
        ? `GOOGLE_APPLICATION_CREDENTIALS=${keyFile}`
        : ADC_FILE;
  // Only client_email is read: getCredentials() also returns the private key.
  const email = await google.getCredentials().then(
    (c) => c.client_email || undefined,
    () => undefined,
  );
  const project = await google.getProjectId().then(
    (p) => p || undefined,
    () => undefined,
  );
  const member =
    email === undefined
      ? client instanceof auth.UserRefreshClient
        ? `user:${PLACEHOLDERS.user}`
        : client instanceof auth.BaseExternalAccountClient
          ? PLACEHOLDERS.principal
          : `serviceAccount:${PLACEHOLDERS.serviceAccount}`
      : memberOf(email);
  return { found: { kind, source, email, project, member } };
}

/** The IAM member for an email: service accounts are serviceAccount:, anything else user:. */
export function memberOf(email: string): string {
  return /\.gserviceaccount\.com$/.test(email) ? `serviceAccount:${email}` : `user:${email}`;
}

/** The member grants name when no credentials were found. */
export const UNKNOWN_MEMBER = `serviceAccount:${PLACEHOLDERS.serviceAccount}`;

/**
 * The credentials line. `users` names what will present them (e.g. "Cloud Storage at
 * https://storage.googleapis.com"); when nothing does (http:// test endpoints, local files only,
 * said by `idle`), finding none is fine and a broken key file only a warning.
 */
export function credentialsCheck(lookup: CredentialsLookup, users: readonly string[], idle: string): Check {
  if (lookup.found === undefined) {
    const { problem } = lookup;
    if (users.length > 0) return failFrom('credentials', 'credentials', problem);
    if (lookup.broken)
      return warn(
        'credentials',
        'credentials',
        `credentials: ${problem.message}; none are needed here (${idle})`,
        problem.hint,
      );
    return ok('credentials', 'credentials', `credentials: none found, and none needed (${idle})`);
  }
  const { kind, source, email, project } = lookup.found;
  const who = [email ?? 'no email in them', project === undefined ? 'project unknown' : `project ${project}`];
  const details: Record<string, string> = { kind, source };
  if (email !== undefined) details.email = email;
  if (project !== undefined) details.project = project;
  const use = users.length > 0 ? `used for ${users.join(' and ')}` : `not used here (${idle})`;
  return ok('credentials', 'credentials', `credentials: ${kind} from ${source}: ${who.join(', ')}; ${use}`, details);
}

function noneFound(): PermissionError {
  return new PermissionError(
    'no credentials found (Application Default Credentials: no GOOGLE_APPLICATION_CREDENTIALS, no gcloud login, no metadata server)',
    'run on a workload with a service account (GKE Workload Identity, Cloud Run, GCE), set GOOGLE_APPLICATION_CREDENTIALS to a key file, or run gcloud auth application-default login',
  );
}

function unusableKeyFile(path: string): PermissionError {
  let why = 'is not a credentials file the Google auth library accepts';
  try {
    statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    why = code === 'ENOENT' || code === 'ENOTDIR' ? 'does not exist' : `cannot be read (${code})`;
  }
  return new PermissionError(
    `GOOGLE_APPLICATION_CREDENTIALS=${path} ${why}`,
    'point it at a service account key or external account JSON file, or unset it to use the metadata server',
  );
}
