// References inside the environment: a variable whose whole value names a secret
// (`sm://…`, `berglas://…`, or `secret-fetch:gs://…`) is replaced by that secret before the
// command starts, or by the path of a file holding it (`?destination=`). Parsing here is pure,
// so every form is table-tested; resolution fetches all references at once and fails closed.
//
// Plain `gs://` values are left alone: they are ordinary configuration (bucket paths) far more
// often than secrets, so a gs:// reference needs the explicit `secret-fetch:` prefix.

import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { FormatError, NotFoundError, SecretFetchError, UsageError } from '../errors.ts';
import { detectFormat, FORMATS, type Format, parseEntries } from '../formats/index.ts';
import { type Logger, show } from '../log.ts';
import type { Secret } from '../secret.ts';
import { isLoaderVariable } from '../sinks/env.ts';
import { namesAFile } from '../sinks/file.ts';
import { kindOf, SOURCE_KINDS } from './index.ts';
import { describeSource, parseSourceRef, type SourceRef, sourceFileName } from './reference.ts';

/** Where a resolved reference goes: into the variable, or into a file whose path the variable gets. */
export type Destination =
  | { readonly kind: 'value' }
  | { readonly kind: 'tempfile' }
  | { readonly kind: 'path'; readonly path: string };

export interface EnvReference {
  readonly variable: string;
  /** The reference without its query, as messages name it (never a secret). */
  readonly uri: string;
  readonly ref: SourceRef;
  readonly kmsKey: string | undefined;
  /** ?key=NAME: one entry of a JSON, YAML, TOML or dotenv secret instead of the whole secret. */
  readonly key: string | undefined;
  /** ?format=: how to parse the secret for ?key (default: by name, else by content). */
  readonly format: Exclude<Format, 'raw'> | undefined;
  readonly destination: Destination;
}

/** What makes a value a reference: each kind's prefix in the source-kind table, with its scheme. */
const PREFIXES = Object.entries(SOURCE_KINDS).flatMap(([scheme, kind]) =>
  kind.referencePrefix === undefined ? [] : [{ prefix: kind.referencePrefix, scheme }],
);
const PARAMETERS = new Set(['destination', 'key', 'format', 'kms-key']);
const UTF8 = new TextDecoder('utf-8', { fatal: true });
const KMS_KEY = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;

/** Whether a value is meant as a reference (and must then parse, or the run stops). */
export function looksLikeReference(value: string): boolean {
  return PREFIXES.some(({ prefix }) => value.startsWith(prefix));
}

/** Whether `environ` holds a reference (before any is parsed: a malformed one counts too). */
export function holdsReferences(environ: Readonly<Record<string, string | undefined>>): boolean {
  return Object.entries(environ).some(
    ([name, value]) => !name.startsWith('SECRET_FETCH_') && value !== undefined && looksLikeReference(value),
  );
}

/**
 * Every reference in `environ`, in name order. Variables that configure secret-fetch itself
 * (SECRET_FETCH_*) are options, not references, and are skipped.
 */
export function findEnvReferences(environ: Readonly<Record<string, string | undefined>>): EnvReference[] {
  return Object.keys(environ)
    .filter((name) => !name.startsWith('SECRET_FETCH_'))
    .sort()
    .flatMap((name) => {
      const value = environ[name];
      return value !== undefined && looksLikeReference(value) ? [parseEnvReference(name, value)] : [];
    });
}

export function parseEnvReference(variable: string, value: string): EnvReference {
  const fail = (problem: string, hint: string): never => {
    throw new UsageError(`$${variable}: ${problem}`, hint);
  };
  // REF[#VERSION][?QUERY] or, as berglas writes it, REF?QUERY#VERSION.
  let base = value;
  let query = '';
  const q = value.indexOf('?');
  if (q !== -1) {
    base = value.slice(0, q);
    query = value.slice(q + 1);
    const hash = query.indexOf('#');
    if (hash !== -1) {
      if (base.includes('#')) fail('the reference has two #versions', 'give the version once');
      base = `${base}${query.slice(hash)}`;
      query = query.slice(0, hash);
    }
  }
  // As a --source would say it: secret-fetch:gs://B/O is gs://B/O.
  const kind = PREFIXES.find(({ prefix }) => base.startsWith(prefix));
  const uri = kind === undefined ? base : `${kind.scheme}://${base.slice(kind.prefix.length)}`;
  let ref: SourceRef;
  try {
    ref = parseSourceRef(uri);
  } catch (error) {
    if (!(error instanceof SecretFetchError)) throw error;
    const { message, hint } = error;
    throw new UsageError(`$${variable}: ${message.replace(/^--source /, '')}`, hint);
  }

  const params = new Map<string, string>();
  for (const pair of query === '' ? [] : query.split('&')) {
    const eq = pair.indexOf('=');
    const name = eq === -1 ? pair : pair.slice(0, eq);
    let text: string;
    try {
      text = decodeURIComponent(eq === -1 ? '' : pair.slice(eq + 1));
    } catch {
      return fail(`the ?${name}= value is not percent-encoded correctly`, 'encode special characters as %XX');
    }
    if (!PARAMETERS.has(name)) {
      fail(`?${name}= is not a reference parameter`, `use ${[...PARAMETERS].map((p) => `${p}=`).join(', ')}`);
    }
    if (params.has(name)) fail(`?${name}= is given twice`, 'give each parameter once');
    if (text === '') fail(`?${name}= is empty`, `give a value, or drop ?${name}=`);
    params.set(name, text);
  }

  const kmsKey = params.get('kms-key');
  if (kmsKey !== undefined) {
    if (!KMS_KEY.test(kmsKey)) {
      fail(
        `?kms-key=${kmsKey} is not a key name`,
        'write projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY',
      );
    }
  }
  const format = params.get('format');
  if (format !== undefined && (format === 'raw' || !(FORMATS as readonly string[]).includes(format))) {
    fail(
      `?format=${format} has no entries to pick a key from`,
      `use one of ${FORMATS.filter((f) => f !== 'raw').join(', ')}`,
    );
  }
  if (format !== undefined && !params.has('key')) fail('?format= without ?key=', 'add ?key=NAME, or drop ?format=');
  return Object.freeze({
    variable,
    uri,
    ref,
    kmsKey,
    key: params.get('key'),
    format: format as Exclude<Format, 'raw'> | undefined,
    destination: parseDestination(params.get('destination'), fail),
  });
}

function parseDestination(text: string | undefined, fail: (problem: string, hint: string) => never): Destination {
  if (text === undefined) return { kind: 'value' };
  if (text === 'tempfile') return { kind: 'tempfile' };
  if (!text.startsWith('/')) {
    fail(
      `?destination=${show(text)} is neither tempfile nor an absolute path`,
      'write ?destination=tempfile or ?destination=/abs/path',
    );
  }
  if (!namesAFile(text))
    fail(`?destination=${show(text)} does not name a file`, 'give a file path, without a trailing slash');
  return { kind: 'path', path: text };
}

/** Another file the run writes, which no ?destination= may name. */
export interface RunOutput {
  readonly path: string;
  /** How a message names it: "an --out file", "the --ready-file". */
  readonly what: string;
}

/**
 * What the references may not do given the rest of the run, checked before anything is fetched:
 * share a ?destination= file with another reference or another output of the run (the last rename
 * would win, and one variable would name the other's secret), or escape --verify-key (only gs://
 * and berglas:// objects carry a signature, as for --source). Files are compared by `locate`, which
 * the run gives as their real location (so two paths through a symlinked directory are one file).
 */
export function checkReferences(
  references: readonly EnvReference[],
  run: {
    readonly outputs: readonly RunOutput[];
    readonly verifying: boolean;
    readonly locate?: (path: string) => string;
    readonly allowLoaderEnv?: boolean;
  },
): void {
  const locate = run.locate ?? resolve;
  const taken = new Map<string, { problem: string; hint: string }>(
    run.outputs.map(({ path, what }) => [
      locate(path),
      { problem: `is also ${what}`, hint: 'give each secret its own file' },
    ]),
  );
  for (const { variable, ref, destination } of references) {
    if (!run.allowLoaderEnv && isLoaderVariable(variable)) {
      // Its value (or the file it names) would be the secret's: whoever writes the secret picks the code.
      throw new UsageError(
        `$${variable}: a reference would let the secret decide ${variable}, which decides what code the command's loader runs; refused`,
        'set it in the environment itself, or pass --allow-loader-env if the secret is meant to set it',
      );
    }
    if (run.verifying && !kindOf(ref).verifiable) {
      throw new UsageError(
        `$${variable}: --verify-key cannot check ${describeSource(ref)}: only gs:// and berglas:// objects carry a secret-fetch signature`,
        'reference a signed Cloud Storage object instead, or drop --verify-key',
      );
    }
    if (destination.kind !== 'path') continue;
    const location = locate(destination.path);
    const other = taken.get(location);
    if (other !== undefined) {
      throw new UsageError(`$${variable}: ?destination=${show(destination.path)} ${other.problem}`, other.hint);
    }
    taken.set(location, {
      problem: `is also the destination of $${variable}`,
      hint: 'give each reference its own file',
    });
  }
}

export interface ResolveContext {
  /** Fetches and decrypts one reference's secret (the same stages as a --source). */
  fetch(reference: EnvReference): Promise<Secret>;
  /** Stages a file under the same tmpfs, permission and atomicity rules as --out. */
  stage(path: string, data: Uint8Array): void;
  /** Where ?destination=tempfile files go. */
  readonly tempfileDir: string;
  readonly log: Logger;
}

/**
 * Resolves every reference concurrently and returns the variables to overlay on the
 * environment. Fails closed: the first failure stops the launch, named after the variable.
 */
export async function resolveEnvReferences(
  references: readonly EnvReference[],
  context: ResolveContext,
): Promise<Record<string, string>> {
  const values = await Promise.all(
    references.map((reference) => namedAfter(reference, () => resolveOne(reference, context))),
  );
  return Object.fromEntries(references.map((reference, i) => [reference.variable, values[i] as string]));
}

/** `work`, whose failure is named after the reference's variable (at start and on a refresh). */
export async function namedAfter<T>(reference: EnvReference, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw error instanceof SecretFetchError ? error.within(`$${reference.variable}`) : error;
  }
}

async function resolveOne(reference: EnvReference, context: ResolveContext): Promise<string> {
  const secret = await context.fetch(reference);
  try {
    const { destination } = reference;
    const path =
      destination.kind === 'value'
        ? undefined
        : destination.kind === 'path'
          ? destination.path
          : tempfilePath(context.tempfileDir, reference.variable);
    return await placeReference(reference, secret, path, context);
  } finally {
    secret.wipe();
  }
}

/**
 * What the variable gets for `secret` (the reference's secret, or its ?key= entry): the text
 * itself, or `path` once the bytes are staged there (a ?destination=). A refresh calls this again
 * with the path the run chose at start.
 */
export async function placeReference(
  reference: EnvReference,
  secret: Secret,
  path: string | undefined,
  context: Pick<ResolveContext, 'stage' | 'log'>,
): Promise<string> {
  let bytes: Buffer = secret.reveal();
  if (reference.key !== undefined) bytes = Buffer.from(await pickEntry(reference, secret, reference.key));
  if (path !== undefined) {
    context.stage(path, bytes);
    context.log.debug(`$${reference.variable}: ${reference.uri} written to ${show(path)}`);
    return path;
  }
  const text = variableValue(reference, bytes);
  context.log.debug(`$${reference.variable}: resolved from ${reference.uri}`);
  return text;
}

/** The secret as a variable's value: text without NUL bytes, or a refusal that says how to take it. */
function variableValue(reference: EnvReference, bytes: Buffer): string {
  const problem = (what: string) =>
    new FormatError(
      `${reference.uri} ${what}, which no environment variable can hold`,
      'add ?destination=tempfile to get it as a file',
    );
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw problem('is not UTF-8 text');
  }
  if (text.includes('\0')) throw problem('contains a NUL byte');
  return text;
}

async function pickEntry(reference: EnvReference, secret: Secret, key: string): Promise<string> {
  let text: string;
  try {
    text = UTF8.decode(secret.reveal());
  } catch {
    throw new FormatError(
      `${reference.uri} is not UTF-8 text, so it has no entries for ?key=${key}`,
      'drop ?key= (and add ?destination=tempfile for a binary secret)',
    );
  }
  const format = reference.format ?? guessFormat(sourceFileName(reference.ref), text);
  const entries = await parseEntries(format, text, reference.uri);
  const value = entries.get(key);
  if (value === undefined) {
    throw new NotFoundError(
      `${reference.uri} (read as ${format}) has no entry ${key}`,
      entries.size > 0 ? `its entries are ${entries.names().join(', ')}` : 'it has no entries at all',
    );
  }
  return value;
}

const DOTENV_LINE = /^\s*(?:#.*|(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=.*)?$/;

/** By name first; a name without a known extension (most secret IDs) by content. */
export function guessFormat(name: string, text: string): Exclude<Format, 'raw'> {
  const byName = detectFormat(name);
  if (byName !== 'raw') return byName;
  if (/^\s*[{[]/.test(text)) return 'json';
  return text.split('\n').every((line) => DOTENV_LINE.test(line)) ? 'dotenv' : 'yaml';
}

function tempfilePath(dir: string, variable: string): string {
  return join(dir, `secret-fetch-${variable.replace(/[^A-Za-z0-9_.-]/g, '_')}-${randomBytes(6).toString('hex')}`);
}
