// Parsing of --source URIs into references. Pure: no I/O here, so every form is table-tested.

import { UsageError } from '../errors.ts';

export type SourceRef =
  | { readonly scheme: 'gs'; readonly bucket: string; readonly object: string; readonly generation?: string }
  | { readonly scheme: 'berglas'; readonly bucket: string; readonly object: string; readonly generation?: string }
  | { readonly scheme: 'sm'; readonly project: string; readonly secret: string; readonly version: string }
  | { readonly scheme: 'file'; readonly path: string };

export type ObjectRef = Extract<SourceRef, { scheme: 'gs' | 'berglas' }>;
export type SecretManagerRef = Extract<SourceRef, { scheme: 'sm' }>;

// Cloud Storage bucket names: 3-63 (or up to 222 with dots) of lowercase letters, digits, -, _ and .
const BUCKET = /^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$/;
const GENERATION = /^[1-9][0-9]{0,19}$/;
const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;
// A project ID (6-30 of a-z, 0-9, -) or a project number.
const PROJECT = /^([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$/;
// Secret IDs: letters, digits, - and _, at most 255.
const SECRET_ID = /^[A-Za-z0-9_-]{1,255}$/;
// A version number, latest, or an alias (letters, digits, - and _).
const SECRET_VERSION = /^([1-9][0-9]{0,19}|latest|[A-Za-z][A-Za-z0-9_-]{0,62})$/;
const FULL_SECRET_NAME = /^projects\/([^/]+)\/secrets\/([^/]+)(?:\/versions\/([^/]+))?$/;

const FORMS = 'gs://BUCKET/OBJECT, sm://PROJECT/SECRET, berglas://BUCKET/OBJECT, file:PATH or a path';

export function parseSourceRef(uri: string): SourceRef {
  if (uri === '') throw new UsageError('--source is empty', `give ${FORMS}`);
  if (uri.startsWith('gs://')) return parseObject(uri, 'gs');
  if (uri.startsWith('berglas://')) return parseObject(uri, 'berglas');
  if (uri.startsWith('sm://')) return parseSecretManager(uri, uri.slice('sm://'.length));
  if (FULL_SECRET_NAME.test(uri) && uri.includes('/versions/')) return parseSecretManager(uri, uri);
  if (uri.startsWith('file://')) {
    const path = uri.slice('file://'.length);
    if (!path.startsWith('/')) {
      throw new UsageError(
        `--source ${uri}: a file:// URI needs an absolute path`,
        'write file:///abs/path or file:rel/path',
      );
    }
    return { scheme: 'file', path: decodeURIComponent(path) };
  }
  if (uri.startsWith('file:')) return { scheme: 'file', path: nonEmptyPath(uri, uri.slice('file:'.length)) };
  const scheme = SCHEME.exec(uri);
  if (scheme) {
    throw new UsageError(`--source ${uri}: the scheme ${scheme[1]}:// is not supported`, `use ${FORMS}`);
  }
  return { scheme: 'file', path: uri };
}

function parseObject(uri: string, scheme: 'gs' | 'berglas'): ObjectRef {
  const form = `${scheme}://BUCKET/OBJECT`;
  const rest = uri.slice(`${scheme}://`.length);
  const hash = rest.lastIndexOf('#');
  const location = hash === -1 ? rest : rest.slice(0, hash);
  const generation = hash === -1 ? undefined : rest.slice(hash + 1);
  const slash = location.indexOf('/');
  const bucket = slash === -1 ? location : location.slice(0, slash);
  const object = slash === -1 ? '' : location.slice(slash + 1);
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new UsageError(`--source ${uri}: "${bucket}" is not a valid bucket name`, `write ${form}`);
  }
  if (object === '') {
    throw new UsageError(`--source ${uri}: no object name after the bucket`, `write ${form}`);
  }
  if (generation !== undefined && !GENERATION.test(generation)) {
    throw new UsageError(
      `--source ${uri}: "#${generation}" is not an object generation`,
      'a generation is the decimal number gcloud storage objects describe prints',
    );
  }
  return generation === undefined ? { scheme, bucket, object } : { scheme, bucket, object, generation };
}

/** sm://PROJECT/SECRET[#VERSION], sm://projects/P/secrets/S[/versions/V] or projects/P/secrets/S/versions/V. */
function parseSecretManager(uri: string, rest: string): SecretManagerRef {
  const form = 'write sm://PROJECT/SECRET[#VERSION] or projects/PROJECT/secrets/SECRET/versions/VERSION';
  let project: string | undefined;
  let secret: string | undefined;
  let version: string | undefined;
  const full = FULL_SECRET_NAME.exec(rest);
  if (full) {
    [, project, secret, version] = full;
  } else {
    const hash = rest.lastIndexOf('#');
    const location = hash === -1 ? rest : rest.slice(0, hash);
    version = hash === -1 ? undefined : rest.slice(hash + 1);
    const parts = location.split('/');
    if (parts.length !== 2) {
      throw new UsageError(`--source ${uri}: not a Secret Manager secret name`, form);
    }
    [project, secret] = parts;
  }
  if (project === undefined || !PROJECT.test(project)) {
    throw new UsageError(`--source ${uri}: "${project ?? ''}" is not a project ID or number`, form);
  }
  if (secret === undefined || !SECRET_ID.test(secret)) {
    throw new UsageError(`--source ${uri}: "${secret ?? ''}" is not a secret ID`, form);
  }
  if (version !== undefined && !SECRET_VERSION.test(version)) {
    throw new UsageError(
      `--source ${uri}: "${version}" is not a secret version`,
      'a version is a number, latest, or an alias',
    );
  }
  return { scheme: 'sm', project, secret, version: version ?? 'latest' };
}

function nonEmptyPath(uri: string, path: string): string {
  if (path === '') throw new UsageError(`--source ${uri}: no path after file:`, 'write file:PATH');
  return path;
}

/** A Cloud Storage object (gs:// or berglas://): versioned by generation. */
export function isObjectRef(ref: SourceRef): ref is ObjectRef {
  return ref.scheme === 'gs' || ref.scheme === 'berglas';
}

/** The full resource name of a secret version, as the Secret Manager API takes it. */
export function secretVersionName(ref: SecretManagerRef): string {
  return `projects/${ref.project}/secrets/${ref.secret}/versions/${ref.version}`;
}

/**
 * A source that names one immutable version: a gs:// or berglas:// object at a #GENERATION, or an
 * sm:// secret at a version number (not latest or an alias). --refresh never polls these.
 */
export function isPinned(ref: SourceRef): boolean {
  switch (ref.scheme) {
    case 'gs':
    case 'berglas':
      return ref.generation !== undefined;
    case 'sm':
      return /^[1-9][0-9]*$/.test(ref.version);
    case 'file':
      return false;
  }
}

/**
 * The source pinned to `version` (a gs:// or berglas:// generation, or an sm:// version number, as sourceVersion
 * reported it), so a refresh fetches exactly what the poll saw. A file has no version to pin: it
 * is returned as it is.
 */
export function atVersion(ref: SourceRef, version: string): SourceRef {
  switch (ref.scheme) {
    case 'gs':
    case 'berglas':
      return { ...ref, generation: version };
    case 'sm':
      return { ...ref, version };
    case 'file':
      return ref;
  }
}

/** The name a format is detected from: the object name, the secret ID or the file path. */
export function sourceFileName(ref: SourceRef): string {
  switch (ref.scheme) {
    case 'gs':
    case 'berglas':
      return ref.object;
    case 'sm':
      return ref.secret;
    case 'file':
      return ref.path;
  }
}

export function describeSource(ref: SourceRef): string {
  switch (ref.scheme) {
    case 'gs':
    case 'berglas':
      return `${ref.scheme}://${ref.bucket}/${ref.object}${ref.generation ? `#${ref.generation}` : ''}`;
    case 'sm':
      return `sm://${ref.project}/${ref.secret}#${ref.version}`;
    case 'file':
      return ref.path;
  }
}
