// The main run's flags (FLAGS) and their validation: flags and SECRET_FETCH_* variables become one
// validated, frozen Options object, before any I/O. Nothing below this module reads process.argv
// or process.env for options. The flag machinery is shared with the subcommands (flags.ts).

import { MASTER_KEY_VARIABLE, masterKeySource } from './decrypt/master-key.ts';
import { UsageError } from './errors.ts';
import {
  type Environ,
  type FlagSpec,
  type FlagValues,
  optionalString,
  parseDuration,
  parseFlags,
  parseId,
  parseLogFormat,
  parseMode,
  parseSize,
  perSource,
  strings,
} from './flags.ts';
import { FORMATS } from './formats/index.ts';
import { type CredentialsPlan, credentialsPlan } from './google/credentials.ts';
import { type Endpoints, parseEndpoints, storageEndpoint } from './google/endpoints.ts';
import { type Launch, parseLaunch } from './launch/mode.ts';
import { type LogFormat, show } from './log.ts';
import { planSource, type SourcePlan } from './open-source.ts';

export type { Launch, OnChange } from './launch/mode.ts';

import { checkFilePath } from './sinks/file.ts';
import { holdsReferences } from './sources/env-references.ts';
import { kindOf } from './sources/index.ts';
import { describeSource } from './sources/reference.ts';

/** One --source of the main run: how it is opened, and the --out file it goes to. */
export interface RunSource extends SourcePlan {
  readonly out: string | undefined;
}

export interface Options {
  readonly sources: readonly RunSource[];
  /** Parse every source and overlay its entries on the command's environment. */
  readonly injectEnv: boolean;
  readonly fileMode: number;
  readonly allowDisk: boolean;
  /** Let a secret (an entry, or a reference's value) set LD_* and the other loader variables (--allow-loader-env). */
  readonly allowLoaderEnv: boolean;
  readonly owner: { readonly uid: number | undefined; readonly gid: number | undefined };
  readonly launch: Launch;
  readonly timeoutMs: number;
  /** The largest secret accepted from any source (--max-size), in bytes. */
  readonly maxBytes: number;
  readonly log: { readonly format: LogFormat; readonly verbose: boolean };
  readonly endpoints: Endpoints;
  /** --ca-file: a PEM bundle trusted besides the system roots. */
  readonly caFile: string | undefined;
  /** Where Google credentials come from (the metadata server, or GOOGLE_APPLICATION_CREDENTIALS). */
  readonly credentials: CredentialsPlan;
  /** Written atomically once the first outputs are in place (--ready-file); undefined: none. */
  readonly readyFile: string | undefined;
  /** Resolve secret references in the command's environment (not --ignore-references). */
  readonly resolveReferences: boolean;
  /** Where ?destination=tempfile references are written (--tempfile-dir). */
  readonly tempfileDir: string;
  /** A PEM public key every source must be signed with (--verify-key), read at run time; undefined: none. */
  readonly verifyKey: string | undefined;
}

export type Invocation =
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'run'; readonly options: Options };

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
    help: 'with --supervise (or without a command: sidecar): poll the sources and references this often; on a new version, rewrite their files and apply --on-change',
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

export function parseInvocation(argv: readonly string[], environ: Environ): Invocation {
  const split = argv.indexOf('--');
  const own = split === -1 ? argv : argv.slice(0, split);
  const command = split === -1 ? undefined : argv.slice(split + 1);

  const { values, positionals } = parseFlags(FLAGS, own, environ);
  if (positionals.length > 0) {
    throw new UsageError(
      `unexpected argument "${positionals[0]}"`,
      'put the command after --, as in: secret-fetch --source ... --env -- COMMAND ARGS',
    );
  }
  if (values.help === true) return { kind: 'help' };
  if (values.version === true) return { kind: 'version' };
  if (command !== undefined && command.length === 0) {
    throw new UsageError('nothing follows --', 'give the command to run after --, or drop the --');
  }
  return { kind: 'run', options: buildOptions(values, command, environ) };
}

function buildOptions(values: FlagValues, command: string[] | undefined, environ: Environ): Options {
  const uris = strings(values.source);
  const injectEnv = values.env === true;
  const outs = strings(values.out);
  const kmsKeys = strings(values['kms-key']);

  if (uris.length === 0) {
    if (outs.length > 0 || injectEnv || kmsKeys.length > 0) {
      throw new UsageError('no --source given', 'say where the secret lives: --source gs://BUCKET/OBJECT');
    }
    if (command === undefined) throw new UsageError('nothing to do: no --source and no command');
  }
  if (uris.length > 0 && outs.length === 0 && !injectEnv) {
    throw new UsageError('no --out and no --env: nothing would receive the secret', 'add --out PATH, --env, or both');
  }
  const sources = planSources(values, uris, injectEnv, environ);
  const endpoints = parseEndpoints({
    storage: storageEndpoint(optionalString(values['storage-endpoint']), environ),
    kms: optionalString(values['kms-endpoint']),
    secretManager: optionalString(values['secret-manager-endpoint']),
  });
  const logFormat = parseLogFormat(optionalString(values['log-format']));
  const launch = parseLaunch(
    values,
    command,
    outs.length > 0,
    uris.length > 0,
    values['ignore-references'] !== true && holdsReferences(environ),
  );
  const verifyKey = optionalString(values['verify-key']);
  if (verifyKey === '') throw new UsageError('--verify-key is empty', "give the path of the signer's PEM public key");
  if (verifyKey !== undefined) {
    if (uris.length === 0) throw new UsageError('--verify-key without --source', 'add --source, or drop --verify-key');
    // A kind whose reader does not check --verify-key is refused here (and openSource refuses a
    // fetched secret that a reader did not check, so a wrong table entry fails closed).
    for (const { ref } of sources) {
      if (!kindOf(ref).verifiable) {
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

  return Object.freeze({
    sources,
    injectEnv,
    fileMode: parseMode(optionalString(values.mode) ?? '0400'),
    allowDisk: values['allow-disk'] === true,
    allowLoaderEnv: values['allow-loader-env'] === true,
    owner: Object.freeze({
      uid: parseId('uid', optionalString(values.uid)),
      gid: parseId('gid', optionalString(values.gid)),
    }),
    launch,
    timeoutMs: parseDuration('timeout', optionalString(values.timeout) ?? '30s'),
    maxBytes: parseSize('max-size', optionalString(values['max-size']) ?? '64MiB'),
    log: Object.freeze({ format: logFormat, verbose: values.verbose === true }),
    endpoints,
    credentials: credentialsPlan(environ, endpoints),
    caFile: optionalString(values['ca-file']) || undefined,
    readyFile,
    resolveReferences: values['ignore-references'] !== true,
    tempfileDir: optionalString(values['tempfile-dir']) || '/dev/shm',
    verifyKey,
  });
}

/** Each --source with its --out, --kms-key and --format (once, or once per source) and the master key. */
function planSources(values: FlagValues, uris: string[], injectEnv: boolean, environ: Environ): readonly RunSource[] {
  const outFor = perSource('out', strings(values.out), uris.length, false);
  const keyFor = perSource('kms-key', strings(values['kms-key']), uris.length, true);
  const formatFor = perSource('format', strings(values.format), uris.length, true);
  const masterKey = masterKeySource(optionalString(values['master-key-file']), environ);
  const seenOuts = new Set<string>();
  const sources = uris.map((uri, i): RunSource => {
    const out = outFor[i];
    if (out !== undefined) {
      if (out === '') throw new UsageError('--out is empty', 'give a file path on a tmpfs volume');
      checkFilePath('--out', out);
      if (seenOuts.has(out))
        throw new UsageError(`--out ${show(out)} is given for two sources`, 'give each source its own --out');
      seenOuts.add(out);
    }
    const plan = planSource({ uri, kmsKey: keyFor[i], masterKey, format: formatFor[i] });
    if (injectEnv && plan.format === 'raw') {
      throw new UsageError(
        `--env needs entries, but ${describeSource(plan.ref)} is read as raw`,
        `name the format with --format ${FORMATS.filter((f) => f !== 'raw').join('|')}, or drop --env and use --out`,
      );
    }
    return Object.freeze({ ...plan, out });
  });
  if (masterKey !== undefined && !sources.some((plan) => plan.decrypt.kind === 'flask-vault')) {
    throw new UsageError(
      `${masterKey.kind === 'file' ? '--master-key-file' : MASTER_KEY_VARIABLE} is given, but no source is a Flask-Vault file`,
      'the master key decrypts sources whose name ends in .enc and that have no --kms-key; drop it, or name the source',
    );
  }
  return Object.freeze(sources);
}
