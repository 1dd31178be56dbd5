// Parsing of --source URIs into references. Pure: no I/O here, so every form is table-tested.

import { UsageError } from '../errors.ts';

export type SourceRef =
  | { readonly scheme: 'gs'; readonly bucket: string; readonly object: string; readonly generation?: string }
  | { readonly scheme: 'file'; readonly path: string };

// Cloud Storage bucket names: 3-63 (or up to 222 with dots) of lowercase letters, digits, -, _ and .
const BUCKET = /^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$/;
const GENERATION = /^[1-9][0-9]{0,19}$/;
const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;

export function parseSourceRef(uri: string): SourceRef {
  if (uri === '') throw new UsageError('--source is empty', 'give gs://BUCKET/OBJECT, file:PATH or a path');
  if (uri.startsWith('gs://')) return parseGs(uri);
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
    throw new UsageError(
      `--source ${uri}: the scheme ${scheme[1]}:// is not supported`,
      'use gs://BUCKET/OBJECT, file:PATH or a plain path',
    );
  }
  return { scheme: 'file', path: uri };
}

function parseGs(uri: string): SourceRef {
  const rest = uri.slice('gs://'.length);
  const hash = rest.lastIndexOf('#');
  const location = hash === -1 ? rest : rest.slice(0, hash);
  const generation = hash === -1 ? undefined : rest.slice(hash + 1);
  const slash = location.indexOf('/');
  const bucket = slash === -1 ? location : location.slice(0, slash);
  const object = slash === -1 ? '' : location.slice(slash + 1);
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new UsageError(`--source ${uri}: "${bucket}" is not a valid bucket name`, 'write gs://BUCKET/OBJECT');
  }
  if (object === '') {
    throw new UsageError(`--source ${uri}: no object name after the bucket`, 'write gs://BUCKET/OBJECT');
  }
  if (generation !== undefined && !GENERATION.test(generation)) {
    throw new UsageError(
      `--source ${uri}: "#${generation}" is not an object generation`,
      'a generation is the decimal number gcloud storage objects describe prints',
    );
  }
  return generation === undefined ? { scheme: 'gs', bucket, object } : { scheme: 'gs', bucket, object, generation };
}

function nonEmptyPath(uri: string, path: string): string {
  if (path === '') throw new UsageError(`--source ${uri}: no path after file:`, 'write file:PATH');
  return path;
}

/** The name a format is detected from: the object name or the file path. */
export function sourceFileName(ref: SourceRef): string {
  return ref.scheme === 'gs' ? ref.object : ref.path;
}

export function describeSource(ref: SourceRef): string {
  if (ref.scheme === 'gs') return `gs://${ref.bucket}/${ref.object}${ref.generation ? `#${ref.generation}` : ''}`;
  return ref.path;
}
