// Flags and SECRET_FETCH_* variables become one validated, frozen Options object, before any
// I/O. Nothing below this module reads process.argv or process.env for options.
//
// We use node:util parseArgs rather than yargs: in the single executable, yargs alone costs
// ~30 ms of startup on a path whose whole budget is ~38 ms (see README, "Why not yargs").

import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import type { Endpoints } from './clients.ts';
import type { CredentialsPlan } from './credentials.ts';
import { decodeMasterKey } from './decrypt/flask-vault.ts';
import { KMS_KEY_NAME } from './decrypt/kms.ts';
import type { MasterKeySource } from './decrypt/master-key.ts';
import { FormatError, UsageError } from './errors.ts';
import { detectFormat, FORMATS, type Format } from './formats/index.ts';
import { type LogFormat, show } from './log.ts';
import { Secret } from './secret.ts';
import { checkFilePath } from './sinks/file.ts';
import { describeSource, parseSourceRef, type SourceRef, sourceFileName } from './sources/reference.ts';

export interface SourcePlan {
  readonly uri: string;
  readonly ref: SourceRef;
  readonly kmsKey: string | undefined;
  /** Decrypt as a Flask-Vault file with this master key (a .enc source without --kms-key). */
  readonly masterKey: MasterKeySource | undefined;
  readonly format: Format;
  readonly out: string | undefined;
}

export interface Options {
  readonly sources: readonly SourcePlan[];
  /** Parse every source and overlay its entries on the command's environment. */
  readonly injectEnv: boolean;
  readonly fileMode: number;
  readonly allowDisk: boolean;
  /** Let a secret (an entry, or a reference's value) set LD_* and the other loader variables (--allow-loader-env). */
  readonly allowLoaderEnv: boolean;
  readonly owner: { readonly uid: number | undefined; readonly gid: number | undefined };
  /** [command, ...args], or undefined for the init-container pattern (write outputs, exit 0). */
  readonly command: readonly string[] | undefined;
  readonly chdir: string | undefined;
  readonly timeoutMs: number;
  /** The largest secret accepted from any source (--max-size), in bytes. */
  readonly maxBytes: number;
  readonly log: { readonly format: LogFormat; readonly verbose: boolean };
  readonly endpoints: Endpoints;
  /** --ca-file: a PEM bundle trusted besides the system roots. */
  readonly caFile: string | undefined;
  /** Where Google credentials come from (the metadata server, or GOOGLE_APPLICATION_CREDENTIALS). */
  readonly credentials: CredentialsPlan;
  /** Run the command as a child and stay (--supervise) instead of exec'ing it. */
  readonly supervise: boolean;
  /** After forwarding SIGTERM/SIGINT, how long the child has before SIGKILL (--grace). */
  readonly graceMs: number;
  /** Remove the --out files when the supervised command exits (--cleanup). */
  readonly cleanup: boolean;
  /** Poll the sources this often for a new version (--refresh); undefined: never. */
  readonly refreshMs: number | undefined;
  /** What a refresh that changed a secret does to the command (--on-change). */
  readonly onChange: OnChange;
  /** Written atomically once the first outputs are in place (--ready-file); undefined: none. */
  readonly readyFile: string | undefined;
  /** Resolve secret references in the command's environment (not --ignore-references). */
  readonly resolveReferences: boolean;
  /** Where ?destination=tempfile references are written (--tempfile-dir). */
  readonly tempfileDir: string;
  /** A PEM public key every source must be signed with (--verify-key), read at run time; undefined: none. */
  readonly verifyKey: string | undefined;
}

/** --on-change: send a signal, restart the command (new environment), or exit. */
export type OnChange =
  | { readonly kind: 'signal'; readonly signal: NodeJS.Signals }
  | { readonly kind: 'restart' }
  | { readonly kind: 'exit' };

export type Invocation =
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'run'; readonly options: Options };

interface FlagSpec {
  readonly name: string;
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  readonly value?: string;
  readonly help: string;
  /** Read from SECRET_FETCH_<NAME> when the flag is absent (false for --help/--version). */
  readonly env?: boolean;
}

/** The master key's text itself: a variable only, never a flag (argv is visible to every user in ps). */
export const MASTER_KEY_VARIABLE = 'SECRET_FETCH_MASTER_KEY';

export const FLAGS: readonly FlagSpec[] = [
  {
    name: 'source',
    type: 'string',
    multiple: true,
    value: 'URI',
    env: true,
    help: 'gs://BUCKET/OBJECT[#GENERATION], sm://PROJECT/SECRET[#VERSION], berglas://BUCKET/OBJECT[#GENERATION], file:PATH or PATH; repeatable',
  },
  {
    name: 'kms-key',
    type: 'string',
    multiple: true,
    value: 'NAME',
    env: true,
    help: 'decrypt with Cloud KMS: projects/P/locations/L/keyRings/R/cryptoKeys/K (berglas://: the key the object must name)',
  },
  {
    name: 'verify-key',
    type: 'string',
    value: 'PATH',
    env: true,
    help: 'refuse a gs:// or berglas:// object unless its secret-fetch sign signature verifies with this PEM public key (offline, before decrypting)',
  },
  {
    name: 'master-key-file',
    type: 'string',
    value: 'PATH',
    env: true,
    help: `decrypt .enc sources without --kms-key as Flask-Vault files with this master.key (or give the key's text in ${MASTER_KEY_VARIABLE})`,
  },
  {
    name: 'out',
    type: 'string',
    multiple: true,
    value: 'PATH',
    env: true,
    help: 'write the plaintext there (tmpfs only, atomically, mode --mode)',
  },
  {
    name: 'env',
    type: 'boolean',
    env: true,
    help: "parse the secret and add its entries to the command's environment",
  },
  {
    name: 'format',
    type: 'string',
    multiple: true,
    value: 'FORMAT',
    env: true,
    help: `${['auto', ...FORMATS].join('|')} (default auto: by file name)`,
  },
  { name: 'mode', type: 'string', value: 'OCTAL', env: true, help: 'permissions of --out files (default 0400)' },
  { name: 'uid', type: 'string', value: 'UID', env: true, help: 'owner of --out files (numeric; needs root)' },
  { name: 'gid', type: 'string', value: 'GID', env: true, help: 'group of --out files (numeric; needs root)' },
  { name: 'allow-disk', type: 'boolean', env: true, help: 'allow an --out target that is not on tmpfs/ramfs' },
  {
    name: 'allow-loader-env',
    type: 'boolean',
    env: true,
    help: "let a secret set the command's LD_* and other loader variables (refused by default)",
  },
  {
    name: 'ignore-references',
    type: 'boolean',
    env: true,
    help: 'leave sm://, berglas:// and secret-fetch:gs:// values in the environment unresolved',
  },
  {
    name: 'tempfile-dir',
    type: 'string',
    value: 'DIR',
    env: true,
    help: 'where ?destination=tempfile references are written (tmpfs; default /dev/shm)',
  },
  { name: 'chdir', type: 'string', value: 'DIR', env: true, help: "the command's working directory" },
  {
    name: 'timeout',
    type: 'string',
    value: 'DURATION',
    env: true,
    help: 'deadline for all fetching and decrypting, e.g. 30s, 2m (default 30s)',
  },
  {
    name: 'max-size',
    type: 'string',
    value: 'SIZE',
    env: true,
    help: 'refuse a secret larger than this, e.g. 64KiB, 1MiB (default 64MiB)',
  },
  {
    name: 'log-format',
    type: 'string',
    value: 'text|json',
    env: true,
    help: 'json writes Cloud Logging lines (severity, message)',
  },
  { name: 'verbose', type: 'boolean', short: 'v', env: true, help: 'say what is fetched and written (never values)' },
  {
    name: 'storage-endpoint',
    type: 'string',
    value: 'URL',
    env: true,
    help: 'Cloud Storage endpoint (also STORAGE_EMULATOR_HOST); http:// uses no credentials',
  },
  {
    name: 'ca-file',
    type: 'string',
    value: 'PATH',
    env: true,
    help: 'PEM bundle of CAs to trust besides the system roots (private endpoints, TLS proxies)',
  },
  {
    name: 'kms-endpoint',
    type: 'string',
    value: 'URL',
    env: true,
    help: 'Cloud KMS endpoint; http:// uses no credentials',
  },
  {
    name: 'secret-manager-endpoint',
    type: 'string',
    value: 'URL',
    env: true,
    help: 'Secret Manager endpoint; http:// uses no credentials',
  },
  {
    name: 'supervise',
    type: 'boolean',
    env: true,
    help: 'run the command as a child and stay: forward signals, exit with its status',
  },
  {
    name: 'grace',
    type: 'string',
    value: 'DURATION',
    env: true,
    help: 'with --supervise: SIGKILL the command this long after forwarding TERM/INT (default 10s)',
  },
  {
    name: 'cleanup',
    type: 'boolean',
    env: true,
    help: 'with --supervise: remove the --out files when the command exits',
  },
  {
    name: 'refresh',
    type: 'string',
    value: 'DURATION',
    env: true,
    help: 'with --supervise (or without a command: sidecar): poll the sources this often; on a new version, rewrite --out and apply --on-change',
  },
  {
    name: 'on-change',
    type: 'string',
    value: 'ACTION',
    env: true,
    help: 'after a refresh: a signal name to send the command (default SIGHUP), restart or exit',
  },
  {
    name: 'ready-file',
    type: 'string',
    value: 'PATH',
    env: true,
    help: 'once the first outputs are in place, write this file (atomically); see secret-fetch probe',
  },
  { name: 'help', type: 'boolean', short: 'h', help: 'show this help' },
  { name: 'version', type: 'boolean', help: 'print the version' },
];

export const envNameOf = (flag: string): string => `SECRET_FETCH_${flag.toUpperCase().replaceAll('-', '_')}`;

type Environ = Readonly<Record<string, string | undefined>>;
type Values = Record<string, string | boolean | string[] | undefined>;

export function parseInvocation(argv: readonly string[], environ: Environ): Invocation {
  const split = argv.indexOf('--');
  const own = split === -1 ? argv : argv.slice(0, split);
  const command = split === -1 ? undefined : argv.slice(split + 1);

  const values = parseFlags(own);
  if (values.help === true) return { kind: 'help' };
  if (values.version === true) return { kind: 'version' };
  for (const flag of FLAGS) {
    if (flag.env && values[flag.name] === undefined) {
      const fromEnv = environ[envNameOf(flag.name)];
      if (fromEnv !== undefined && fromEnv !== '') values[flag.name] = envValue(flag, fromEnv);
    }
  }
  if (command !== undefined && command.length === 0) {
    throw new UsageError('nothing follows --', 'give the command to run after --, or drop the --');
  }
  return { kind: 'run', options: buildOptions(values, command, environ) };
}

function parseFlags(argv: readonly string[]): Values {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const flag of FLAGS) {
    options[flag.name] = {
      type: flag.type,
      ...(flag.multiple ? { multiple: true } : {}),
      ...(flag.short ? { short: flag.short } : {}),
    };
  }
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
    if (positionals.length > 0) {
      throw new UsageError(
        `unexpected argument "${positionals[0]}"`,
        'put the command after --, as in: secret-fetch --source ... --env -- COMMAND ARGS',
      );
    }
    return { ...values } as Values;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    // parseArgs' messages name the flag (never a value): pass the first sentence on.
    const message = error instanceof Error ? (error.message.split('. ')[0] ?? error.message) : String(error);
    throw new UsageError(message.replace(/\.$/, ''));
  }
}

export function envValue(flag: FlagSpec, raw: string): string | boolean | string[] {
  if (flag.type === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new UsageError(`${envNameOf(flag.name)}="${raw}" is not a boolean`, 'use 1/true/yes or 0/false/no');
  }
  return flag.multiple ? [raw] : raw;
}

function buildOptions(values: Values, command: string[] | undefined, environ: Environ): Options {
  const uris = strings(values.source);
  const injectEnv = values.env === true;
  const outs = strings(values.out);
  const kmsKeys = strings(values['kms-key']);
  const formats = strings(values.format);

  if (uris.length === 0) {
    if (outs.length > 0 || injectEnv || kmsKeys.length > 0) {
      throw new UsageError('no --source given', 'say where the secret lives: --source gs://BUCKET/OBJECT');
    }
    if (command === undefined) throw new UsageError('nothing to do: no --source and no command');
  }
  if (uris.length > 0 && outs.length === 0 && !injectEnv) {
    throw new UsageError('no --out and no --env: nothing would receive the secret', 'add --out PATH, --env, or both');
  }
  const outFor = perSource('out', outs, uris.length, false);
  const keyFor = perSource('kms-key', kmsKeys, uris.length, true);
  const formatFor = perSource('format', formats, uris.length, true);
  const masterKey = masterKeySource(optionalString(values['master-key-file']), environ);

  const seenOuts = new Set<string>();
  const sources = uris.map((uri, i): SourcePlan => {
    const ref = parseSourceRef(uri);
    const out = outFor[i];
    if (out !== undefined) {
      if (out === '') throw new UsageError('--out is empty', 'give a file path on a tmpfs volume');
      checkFilePath('--out', out);
      if (seenOuts.has(out))
        throw new UsageError(`--out ${show(out)} is given for two sources`, 'give each source its own --out');
      seenOuts.add(out);
    }
    const kmsKey = keyFor[i];
    if (kmsKey !== undefined) validateKmsKey(kmsKey);
    const format = resolveFormat(formatFor[i] ?? 'auto', ref);
    if (injectEnv && format === 'raw') {
      throw new UsageError(
        `--env needs entries, but ${describeSource(ref)} is read as raw`,
        `name the format with --format ${FORMATS.filter((f) => f !== 'raw').join('|')}, or drop --env and use --out`,
      );
    }
    // A .enc name without --kms-key is a Flask-Vault file: never parse its ciphertext as text.
    // (A berglas:// object names its own key, and a Secret Manager ID cannot hold a dot.)
    const encrypted = kmsKey === undefined && ref.scheme !== 'berglas' && ENCRYPTED_NAME.test(sourceFileName(ref));
    if (encrypted && masterKey === undefined && format !== 'raw') {
      throw new UsageError(
        `${describeSource(ref)} is encrypted (.enc) but no key is given`,
        `add --master-key-file PATH (or ${MASTER_KEY_VARIABLE}) for a Flask-Vault file, or --kms-key NAME for Cloud KMS`,
      );
    }
    return Object.freeze({ uri, ref, kmsKey, masterKey: encrypted ? masterKey : undefined, format, out });
  });
  if (masterKey !== undefined && !sources.some((plan) => plan.masterKey !== undefined)) {
    throw new UsageError(
      `${masterKey.kind === 'file' ? '--master-key-file' : MASTER_KEY_VARIABLE} is given, but no source is a Flask-Vault file`,
      'the master key decrypts sources whose name ends in .enc and that have no --kms-key; drop it, or name the source',
    );
  }

  const endpoints = parseEndpoints({
    storage: storageEndpoint(optionalString(values['storage-endpoint']), environ),
    kms: optionalString(values['kms-endpoint']),
    secretManager: optionalString(values['secret-manager-endpoint']),
  });

  const logFormat = optionalString(values['log-format']) ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') {
    throw new UsageError(`--log-format ${logFormat} is not known`, 'use text or json');
  }
  const supervise = values.supervise === true;
  if (supervise && command === undefined) {
    throw new UsageError('--supervise without a command', 'give the command to supervise after --');
  }
  // Sidecar: --refresh without a command keeps the files fresh for another container.
  const sidecar = command === undefined && values.refresh !== undefined;
  for (const flag of ['grace', 'cleanup', 'refresh'] as const) {
    if (flag === 'refresh' && sidecar) continue;
    if (values[flag] !== undefined && values[flag] !== false && !supervise) {
      throw new UsageError(`--${flag} needs --supervise`, `add --supervise, or drop --${flag}`);
    }
  }
  if (values.cleanup === true && outs.length === 0) {
    throw new UsageError('--cleanup without --out: there is no file to remove', 'drop --cleanup, or add --out PATH');
  }
  const refresh = optionalString(values.refresh);
  if (values['on-change'] !== undefined && refresh === undefined) {
    throw new UsageError('--on-change needs --refresh', 'add --refresh DURATION, or drop --on-change');
  }
  if (sidecar && values['on-change'] !== undefined) {
    throw new UsageError('--on-change without a command: a sidecar has nothing to notify', 'drop --on-change');
  }
  if (sidecar && outs.length === 0) {
    throw new UsageError('--refresh without a command needs --out: the sidecar shares files', 'add --out PATH');
  }
  const verifyKey = optionalString(values['verify-key']);
  if (verifyKey === '') throw new UsageError('--verify-key is empty', "give the path of the signer's PEM public key");
  if (verifyKey !== undefined) {
    if (uris.length === 0) throw new UsageError('--verify-key without --source', 'add --source, or drop --verify-key');
    for (const { ref } of sources) {
      if (!VERIFIABLE.has(ref.scheme)) {
        throw new UsageError(
          `--verify-key cannot check ${describeSource(ref)}: only gs:// and berglas:// objects carry a secret-fetch signature`,
          'read the secret from a signed Cloud Storage object, or drop --verify-key',
        );
      }
    }
  }
  const readyFile = optionalString(values['ready-file']);
  if (readyFile === '') throw new UsageError('--ready-file is empty', 'give a path, e.g. on the shared volume');
  if (readyFile !== undefined) checkFilePath('--ready-file', readyFile);
  if (refresh !== undefined && uris.length === 0) {
    throw new UsageError('--refresh without --source: there is nothing to refresh', 'add --source, or drop --refresh');
  }
  if (command === undefined && values.chdir !== undefined) {
    throw new UsageError('--chdir without a command', 'give the command after --, or drop --chdir');
  }

  return Object.freeze({
    sources: Object.freeze(sources),
    injectEnv,
    fileMode: parseMode(optionalString(values.mode) ?? '0400'),
    allowDisk: values['allow-disk'] === true,
    allowLoaderEnv: values['allow-loader-env'] === true,
    owner: Object.freeze({
      uid: parseId('uid', optionalString(values.uid)),
      gid: parseId('gid', optionalString(values.gid)),
    }),
    command: command === undefined ? undefined : Object.freeze([...command]),
    chdir: optionalString(values.chdir),
    timeoutMs: parseDuration('timeout', optionalString(values.timeout) ?? '30s'),
    maxBytes: parseSize('max-size', optionalString(values['max-size']) ?? '64MiB'),
    log: Object.freeze({ format: logFormat, verbose: values.verbose === true }),
    endpoints,
    credentials: credentialsPlan(environ, endpoints),
    caFile: optionalString(values['ca-file']) || undefined,
    supervise,
    graceMs: parseDuration('grace', optionalString(values.grace) ?? '10s'),
    cleanup: values.cleanup === true,
    refreshMs: refresh === undefined ? undefined : parseDuration('refresh', refresh),
    onChange: parseOnChange(optionalString(values['on-change']) ?? 'SIGHUP'),
    readyFile,
    resolveReferences: values['ignore-references'] !== true,
    tempfileDir: optionalString(values['tempfile-dir']) || '/dev/shm',
    verifyKey,
  });
}

// The schemes whose reader checks --verify-key (src/signing/verify.ts); any other is refused here.
// run.ts also refuses a fetched secret that a reader did not check, so adding a scheme here
// without its reader calling verifyObjectSignature fails closed.
const VERIFIABLE: ReadonlySet<SourceRef['scheme']> = new Set(['gs', 'berglas']);

/** A repeatable flag's value for each of `count` sources: none, one per source, or (if allowShared) one for all. */
export function perSource(
  flag: string,
  given: readonly string[],
  count: number,
  allowShared: boolean,
): (string | undefined)[] {
  if (given.length === 0) return Array.from({ length: count }, () => undefined);
  if (given.length === count) return [...given];
  if (given.length === 1 && allowShared) return Array.from({ length: count }, () => given[0]);
  throw new UsageError(
    `${given.length} --${flag} for ${count} --source`,
    allowShared
      ? `give --${flag} once for all sources, or once per source in order`
      : `give --${flag} once per source, in order`,
  );
}

const ENDPOINT_FLAGS: Record<keyof Endpoints, string> = {
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

/** Names of Flask-Vault files (and of Cloud KMS ciphertext, which comes with --kms-key). */
export const ENCRYPTED_NAME = /\.enc$/i;

/**
 * The master key from --master-key-file (read at run time) or SECRET_FETCH_MASTER_KEY (checked
 * now, held as a Secret); both is a usage error.
 */
export function masterKeySource(file: string | undefined, environ: Environ): MasterKeySource | undefined {
  const text = nonEmpty(environ[MASTER_KEY_VARIABLE]);
  if (file !== undefined && text !== undefined) {
    throw new UsageError(
      `both --master-key-file (or ${envNameOf('master-key-file')}) and ${MASTER_KEY_VARIABLE} are given`,
      'give the master key one way only',
    );
  }
  if (file === '') throw new UsageError('--master-key-file is empty', 'give the path of master.key');
  if (file !== undefined) return Object.freeze({ kind: 'file', path: file });
  if (text === undefined) return undefined;
  const secret = new Secret(Buffer.from(text, 'utf8'));
  try {
    decodeMasterKey(secret.reveal(), MASTER_KEY_VARIABLE).fill(0);
  } catch (error) {
    secret.wipe();
    // A bad value of a variable is a usage error, as for every other SECRET_FETCH_* variable.
    if (error instanceof FormatError) throw new UsageError(error.message, error.hint);
    throw error;
  }
  return Object.freeze({ kind: 'variable', name: MASTER_KEY_VARIABLE, text: secret });
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
export function credentialsPlan(environ: Environ, endpoints: Endpoints): CredentialsPlan {
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

function resolveFormat(given: string, ref: SourceRef): Format {
  if (given === 'auto') return detectFormat(sourceFileName(ref));
  if ((FORMATS as readonly string[]).includes(given)) return given as Format;
  throw new UsageError(`--format ${given} is not known`, `use one of auto, ${FORMATS.join(', ')}`);
}

export function parseOnChange(text: string): OnChange {
  if (text === 'restart' || text === 'exit') return Object.freeze({ kind: text });
  const name = text.toUpperCase().startsWith('SIG') ? text.toUpperCase() : `SIG${text.toUpperCase()}`;
  if (!Object.hasOwn(constants.signals, name) || name === 'SIGKILL' || name === 'SIGSTOP') {
    throw new UsageError(
      `--on-change ${text} is not a signal, restart or exit`,
      'write e.g. SIGHUP, SIGUSR1, restart or exit',
    );
  }
  return Object.freeze({ kind: 'signal', signal: name as NodeJS.Signals });
}

export function validateKmsKey(name: string): void {
  if (!KMS_KEY_NAME.test(name)) {
    throw new UsageError(
      `--kms-key ${name} is not a key name`,
      'write projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY',
    );
  }
}

export function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text))
    throw new UsageError(`--mode ${text} is not an octal file mode`, 'write e.g. 0400 or 0440');
  const mode = Number.parseInt(text, 8);
  if (mode & 0o002) throw new UsageError(`--mode ${text} makes the secret world-writable`, 'use 0400, 0440 or 0600');
  if (mode & 0o004) throw new UsageError(`--mode ${text} makes the secret world-readable`, 'use 0400, 0440 or 0600');
  return mode;
}

function parseId(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,10}$/.test(text) || Number(text) > 0xfffffffe) {
    throw new UsageError(
      `--${flag} ${text} is not a numeric id`,
      `give a number, e.g. --${flag} 1000 (see: id -u APPUSER)`,
    );
  }
  return Number(text);
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(flag: string, text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(text);
  const ms = match ? Number(match[1]) * (UNITS[match[2] ?? 's'] ?? 1000) : Number.NaN;
  if (!(ms > 0) || ms > 24 * 3_600_000) {
    throw new UsageError(
      `--${flag} ${text} is not a duration`,
      'write e.g. 500ms, 30s, 5m (plain numbers are seconds)',
    );
  }
  return Math.round(ms);
}

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/** A byte count: a whole number, optionally with B, KiB, MiB or GiB (at most 1GiB). */
export function parseSize(flag: string, text: string): number {
  const match = /^([0-9]{1,10})(B|KiB|MiB|GiB)?$/.exec(text);
  const bytes = match ? Number(match[1]) * (SIZE_UNITS[match[2] ?? ''] ?? Number.NaN) : Number.NaN;
  if (!(bytes > 0) || bytes > 1024 ** 3) {
    throw new UsageError(`--${flag} ${text} is not a size`, 'write e.g. 64KiB, 1MiB or 65536 (bytes), at most 1GiB');
  }
  return bytes;
}

function strings(value: Values[string]): string[] {
  if (value === undefined || typeof value === 'boolean') return [];
  return Array.isArray(value) ? value : [value];
}

function optionalString(value: Values[string]): string | undefined {
  const all = strings(value);
  return all.length === 0 ? undefined : all[all.length - 1];
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
