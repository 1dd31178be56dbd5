// `secret-fetch doctor [SOURCE...]`: a checklist a person can act on. Which credentials were
// found; whether each source can be read (Cloud Storage and Cloud KMS testIamPermissions, object
// metadata, files); whether each --out directory is tmpfs and writable; and under each failure
// the gcloud command that fixes it. It reads the same flags and SECRET_FETCH_* variables as the
// main run, so run in the container it checks what the entrypoint will do. It never downloads or
// decrypts anything, so it cannot print a secret.

import type { Endpoints } from '../clients.ts';
import { EXIT, UsageError } from '../errors.ts';
import { writeAll } from '../log.ts';
import { envNameOf, envValue, FLAGS, perSource, validateKmsKey } from '../options.ts';
import type { Deadline } from '../retry.ts';
import { describeSource, parseSourceRef, type SourceRef } from '../sources/reference.ts';
import { COMMON_HELP, parseSubcommand, type RemoteContext, remoteContext, type SubcommandSpec } from './common.ts';
import {
  type Check,
  type CheckContext,
  exitCodeOf,
  failFrom,
  renderCheck,
  renderCheckJson,
  renderSummary,
  warn,
} from './doctor/checklist.ts';
import { credentialsCheck, findCredentials, UNKNOWN_MEMBER } from './doctor/credentials.ts';
import { checkFileSource, checkOutTarget, notCheckedByThisBuild } from './doctor/files.ts';
import { checkKmsKey } from './doctor/kms.ts';
import { checkBucket, type GsRef } from './doctor/storage.ts';
import type { Subcommand } from './index.ts';

const HELP = `Usage: secret-fetch doctor [SOURCE...] [--kms-key NAME] [--out PATH] [--allow-disk] [flags]

Checks what a run with these sources, keys and --out paths needs, without downloading or
decrypting anything: which credentials are found (kind, email, project); whether each source can
be read (Cloud Storage: storage.objects.get on the bucket and the object's metadata; Cloud KMS:
cloudkms.cryptoKeyVersions.useToDecrypt on the key; files: can be opened); whether each --out
directory exists, is tmpfs or ramfs, and is writable. One line per check (ok, FAIL, warn), and under
each failure the fix: for a missing permission, the gcloud command with the names filled in.
sm:// and berglas:// sources are not checked by this build (a warning says so).

Without SOURCE or --source, it reads SECRET_FETCH_SOURCE, SECRET_FETCH_KMS_KEY, SECRET_FETCH_OUT and
SECRET_FETCH_ALLOW_DISK as the main run does: run in the container, it checks what the entrypoint will do.

Flags (each also read from the variable in brackets when absent):
  --source URI       a source, like SOURCE; repeatable [SECRET_FETCH_SOURCE]
  --kms-key NAME     once for all sources or once per source, in order [SECRET_FETCH_KMS_KEY]
  --out PATH         once per source, in order [SECRET_FETCH_OUT]
  --allow-disk       an --out directory that is not tmpfs is a warning, not a failure [SECRET_FETCH_ALLOW_DISK]
  --log-format json  one JSON object per check on stdout: check, status, resource, message, fix, exitCode
${COMMON_HELP}

Examples:
  secret-fetch doctor gs://vault/app.cfg.enc \\
    --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k --out /run/secrets/app.cfg
  kubectl exec deploy/web -- /secret-fetch doctor     (the container's own SECRET_FETCH_* settings)

Exit codes: 0 when no check failed (warnings do not fail); otherwise the most important failure's:
  ${EXIT.permission}  permission: no credentials, or a permission not granted (the fix is a gcloud grant)
  ${EXIT.notFound}  not found: a bucket, object, generation, file or key does not exist
  ${EXIT.output}  output: an --out directory is missing, not tmpfs, or not writable
  ${EXIT.unavailable}  unavailable: a service failed or the --timeout deadline passed
  ${EXIT.usage}  usage: a bad flag or value (nothing was checked)
`;

const SPEC = {
  name: 'doctor',
  help: HELP,
  flags: {
    source: { type: 'string', multiple: true },
    'kms-key': { type: 'string', multiple: true },
    out: { type: 'string', multiple: true },
    'allow-disk': { type: 'boolean' },
  },
  positionals: { min: 0, max: Number.POSITIVE_INFINITY },
} as const satisfies SubcommandSpec<Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>>;

export const doctorCommand: Subcommand = {
  run: async (argv, context) => {
    const parsed = parseSubcommand(SPEC, argv, context);
    if (parsed === undefined) return 0;
    const plan = planDoctor(
      {
        sources: [...parsed.positionals, ...(parsed.values.source ?? [])],
        kmsKeys: parsed.values['kms-key'],
        outs: parsed.values.out,
        allowDisk: parsed.values['allow-disk'],
      },
      context.environ,
    );
    const remote = remoteContext(parsed);
    const print = (check: Check) =>
      writeAll(1, parsed.logFormat === 'json' ? renderCheckJson(check) : renderCheck(check));
    const checks = await runChecks(plan, parsed.endpoints, remote, context.environ, print);
    if (parsed.logFormat === 'text') writeAll(1, renderSummary(checks));
    return exitCodeOf(checks);
  },
};

export interface DoctorSource {
  readonly uri: string;
  readonly ref: SourceRef;
  readonly kmsKey: string | undefined;
  readonly out: string | undefined;
}

export interface DoctorPlan {
  readonly sources: readonly DoctorSource[];
  readonly allowDisk: boolean;
}

type Environ = Readonly<Record<string, string | undefined>>;

/**
 * SOURCEs, --source, --kms-key, --out and --allow-disk, each falling back to its SECRET_FETCH_*
 * variable as in the main run, validated as the main run validates them (options.ts).
 */
export function planDoctor(
  given: {
    readonly sources: readonly string[];
    readonly kmsKeys: readonly string[] | undefined;
    readonly outs: readonly string[] | undefined;
    readonly allowDisk: boolean | undefined;
  },
  environ: Environ,
): DoctorPlan {
  const fromEnv = (flag: string): string[] => {
    const value = environ[envNameOf(flag)];
    return value === undefined || value === '' ? [] : [value];
  };
  const uris = given.sources.length > 0 ? [...given.sources] : fromEnv('source');
  const kmsKeys = given.kmsKeys ?? fromEnv('kms-key');
  const outs = given.outs ?? fromEnv('out');
  if (uris.length === 0 && (kmsKeys.length > 0 || outs.length > 0)) {
    throw new UsageError(
      'no source given',
      'say what to check: secret-fetch doctor gs://BUCKET/OBJECT (or --source, or SECRET_FETCH_SOURCE)',
    );
  }
  const keyFor = perSource('kms-key', kmsKeys, uris.length, true);
  const outFor = perSource('out', outs, uris.length, false);
  const sources = uris.map((uri, i): DoctorSource => {
    const kmsKey = keyFor[i];
    if (kmsKey !== undefined) validateKmsKey(kmsKey);
    return { uri, ref: parseSourceRef(uri), kmsKey, out: outFor[i] };
  });
  let allowDisk = given.allowDisk;
  const allowDiskEnv = environ.SECRET_FETCH_ALLOW_DISK;
  if (allowDisk === undefined && allowDiskEnv !== undefined && allowDiskEnv !== '') {
    const flag = FLAGS.find((f) => f.name === 'allow-disk');
    allowDisk = flag !== undefined && envValue(flag, allowDiskEnv) === true;
  }
  return { sources, allowDisk: allowDisk === true };
}

/**
 * Every check, printed in plan order as each one completes: credentials first (the grants name
 * their email), then the sources (a bucket once, then its objects), the keys (each once) and the
 * --out targets. The remote checks run at the same time, each bounded by --timeout.
 */
async function runChecks(
  plan: DoctorPlan,
  endpoints: Endpoints,
  remote: RemoteContext,
  environ: Environ,
  print: (check: Check) => void,
): Promise<Check[]> {
  const checks: Check[] = [];
  const emit = (more: readonly Check[]) => {
    for (const check of more) {
      print(check);
      checks.push(check);
    }
  };
  const keys = [...new Set(plan.sources.flatMap((s) => (s.kmsKey === undefined ? [] : [s.kmsKey])))];
  const { users, idle } = credentialUse(plan, endpoints, keys.length > 0);
  let member = UNKNOWN_MEMBER;
  try {
    const lookup = await bounded(remote.deadline, 'look up credentials', () => findCredentials(environ));
    member = lookup.found?.member ?? UNKNOWN_MEMBER;
    emit([credentialsCheck(lookup, users, idle)]);
  } catch (error) {
    emit([failFrom('credentials', 'credentials', error)]);
  }

  const context: CheckContext = { clients: remote.clients, retry: remote.retry, member };
  const tasks: Promise<readonly Check[]>[] = [];
  const run = (what: string, check: string, resource: string, task: () => Promise<readonly Check[]>) => {
    tasks.push(bounded(remote.deadline, what, task).catch((error: unknown) => [failFrom(check, resource, error)]));
  };
  if (plan.sources.length === 0) {
    tasks.push(
      Promise.resolve([
        warn(
          'source',
          '',
          'no source given: only the credentials were checked',
          'give SOURCE, --source or SECRET_FETCH_SOURCE',
        ),
      ]),
    );
  }
  const buckets = new Map<string, GsRef[]>();
  for (const { ref } of plan.sources) {
    if (ref.scheme === 'gs') {
      const seen = buckets.get(ref.bucket);
      if (seen === undefined) buckets.set(ref.bucket, [ref]);
      else seen.push(ref);
    }
  }
  const checked = new Set<string>();
  for (const { ref } of plan.sources) {
    switch (ref.scheme) {
      case 'gs':
        if (checked.has(ref.bucket)) break;
        checked.add(ref.bucket);
        run(`test the permissions on gs://${ref.bucket}`, 'bucket', `gs://${ref.bucket}`, () =>
          checkBucket(ref.bucket, buckets.get(ref.bucket) ?? [ref], context),
        );
        break;
      case 'file':
        run(`open ${ref.path}`, 'file', ref.path, async () => [checkFileSource(ref.path)]);
        break;
      // Secret Manager and berglas sources get their check (one function each) with their readers.
      case 'sm':
      case 'berglas':
        run(`check ${describeSource(ref)}`, 'source', describeSource(ref), async () => [notCheckedByThisBuild(ref)]);
        break;
    }
  }
  for (const key of keys) {
    run(`test the permissions on ${key}`, 'kms-key', key, async () => [await checkKmsKey(key, context)]);
  }
  for (const out of new Set(plan.sources.flatMap((s) => (s.out === undefined ? [] : [s.out])))) {
    run(`check --out ${out}`, 'out', out, async () => [checkOutTarget(out, plan.allowDisk)]);
  }
  for (const task of tasks) emit(await task);
  return checks;
}

/** Which services present credentials (not http://), and what to say when none does. */
function credentialUse(plan: DoctorPlan, endpoints: Endpoints, kms: boolean): { users: string[]; idle: string } {
  const services: [string, string][] = [];
  if (plan.sources.some((s) => s.ref.scheme === 'gs')) {
    services.push(['Cloud Storage', endpoints.storage ?? 'https://storage.googleapis.com']);
  }
  if (kms) services.push(['Cloud KMS', endpoints.kms ?? 'https://cloudkms.googleapis.com']);
  const named = (list: [string, string][]) => list.map(([name, url]) => `${name} at ${url}`);
  const users = named(services.filter(([, url]) => !url.startsWith('http://')));
  const local = named(services.filter(([, url]) => url.startsWith('http://')));
  const idle =
    local.length > 0
      ? `${local.join(' and ')} ${local.length === 1 ? 'is' : 'are'} reached over http://, without credentials`
      : plan.sources.length > 0
        ? 'only local files are read'
        : 'no source to read';
  return { users, idle };
}

/** `task`, or an UnavailableError naming `what` once the --timeout deadline passes. */
function bounded<T>(deadline: Deadline, what: string, task: () => Promise<T>): Promise<T> {
  return Promise.race([
    task(),
    deadline.expire().catch(() => {
      throw deadline.expired(what);
    }),
  ]);
}
