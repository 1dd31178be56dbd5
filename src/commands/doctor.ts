// `secret-fetch doctor [SOURCE...]`: a checklist a person can act on. Which credentials were
// found; whether each source can be read (Cloud Storage, Secret Manager and Cloud KMS
// testIamPermissions, object and secret version metadata, files); whether each --out directory is
// tmpfs and writable; and under each failure the gcloud command that fixes it. It reads the same flags and SECRET_FETCH_* variables as the
// main run, so run in the container it checks what the entrypoint will do. It never downloads or
// decrypts anything, so it cannot print a secret.

import { validateKmsKey } from '../decrypt/kms.ts';
import { EXIT, UsageError } from '../errors.ts';
import { type FlagSpec, perSource } from '../flags.ts';
import type { Endpoints } from '../google/clients.ts';
import { show } from '../log.ts';
import type { Deadline } from '../retry.ts';
import { berglasKeyName } from '../sources/berglas.ts';
import {
  describeSource,
  isObjectRef,
  parseSourceRef,
  type SecretManagerRef,
  type SourceRef,
} from '../sources/reference.ts';
import {
  described,
  type ParsedSubcommand,
  parseSubcommand,
  type RemoteContext,
  remoteContext,
  type SubcommandSpec,
  writeStdout,
} from './common.ts';
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
import { checkFileSource, checkOutTarget } from './doctor/files.ts';
import { checkKmsKey } from './doctor/kms.ts';
import { checkSecret } from './doctor/secretmanager.ts';
import { checkBucket, type FollowUp } from './doctor/storage.ts';
import type { Subcommand } from './index.ts';

const FLAGS = [
  {
    name: 'source',
    type: 'string',
    multiple: true,
    value: 'URI',
    env: true,
    help: 'a source, like SOURCE; repeatable',
  },
  {
    name: 'kms-key',
    type: 'string',
    multiple: true,
    value: 'NAME',
    env: true,
    help: 'once for all sources or once per source, in order',
  },
  { name: 'out', type: 'string', multiple: true, value: 'PATH', env: true, help: 'once per source, in order' },
  {
    name: 'allow-disk',
    type: 'boolean',
    env: true,
    help: 'an --out directory that is not tmpfs is a warning, not a failure',
  },
] as const satisfies readonly FlagSpec[];

export const DOCTOR: SubcommandSpec<typeof FLAGS> = {
  name: 'doctor',
  about: `Usage: secret-fetch doctor [SOURCE...] [--kms-key NAME] [--out PATH] [--allow-disk] [flags]

Checks what a run with these sources, keys and --out paths needs, without downloading or
decrypting anything: which credentials are found (kind, email, project); whether each source can
be read (gs:// and berglas://: storage.objects.get on the bucket and the object's metadata, and for
berglas:// the KMS key its berglas-kms-key metadata names; sm://: secretmanager.versions.access on
the secret and, given secretmanager.versions.get, the version's metadata; Cloud KMS:
cloudkms.cryptoKeyVersions.useToDecrypt on the key; files: can be opened); whether each --out
directory exists, is tmpfs or ramfs, and is writable. One line per check (ok, FAIL, warn), and under
each failure the fix: for a missing permission, the gcloud command with the names filled in.
With --log-format json: one JSON object per check on stdout (check, status, resource, message, fix, exitCode).

Without SOURCE or --source, it reads SECRET_FETCH_SOURCE, SECRET_FETCH_KMS_KEY, SECRET_FETCH_OUT and
SECRET_FETCH_ALLOW_DISK as the main run does: run in the container, it checks what the entrypoint will do.`,
  flags: FLAGS,
  more: `Examples:
  secret-fetch doctor gs://vault/app.cfg.enc \\
    --kms-key projects/p/locations/global/keyRings/r/cryptoKeys/k --out /run/secrets/app.cfg
  kubectl exec deploy/web -- /secret-fetch doctor     (the container's own SECRET_FETCH_* settings)

Exit codes: 0 when no check failed (warnings do not fail); otherwise the most important failure's:
  ${EXIT.permission}  permission: no credentials, or a permission not granted (the fix is a gcloud grant)
  ${EXIT.notFound}  not found: a bucket, object, generation, secret, version, file or key does not exist (or the version is disabled)
  ${EXIT.integrity}  integrity: a berglas object names another key than --kms-key
  ${EXIT.format}  format: a berglas:// object has no usable berglas-kms-key metadata
  ${EXIT.output}  output: an --out directory is missing, not tmpfs, not writable, or writable by every user; or its target is not a regular file
  ${EXIT.unavailable}  unavailable: a service failed or the --timeout deadline passed
  ${EXIT.usage}  usage: a bad flag or value (nothing was checked)`,
  positionals: { min: 0, max: Number.POSITIVE_INFINITY },
};

export const doctorCommand: Subcommand = {
  ...described(DOCTOR),
  run: async (argv, context) => {
    const parsed = parseSubcommand(DOCTOR, argv, context);
    if (parsed === undefined) return 0;
    const plan = planDoctor(parsed);
    const remote = remoteContext(parsed);
    const print = (check: Check) =>
      writeStdout(Buffer.from(parsed.logFormat === 'json' ? renderCheckJson(check) : renderCheck(check)));
    const checks = await runChecks(plan, parsed.endpoints, remote, context.environ, print);
    if (parsed.logFormat === 'text') writeStdout(Buffer.from(renderSummary(checks)));
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
 * SOURCEs and --source (SECRET_FETCH_SOURCE only when neither is given), --kms-key, --out and
 * --allow-disk (their variables filled in by the flag parser, as in the main run), validated as
 * the main run validates them.
 */
export function planDoctor(parsed: {
  readonly values: Readonly<Record<string, unknown>>;
  readonly positionals: readonly string[];
  readonly fromEnv: ReadonlySet<string>;
}): DoctorPlan {
  const { positionals, fromEnv } = parsed;
  const values = parsed.values as ParsedSubcommand<typeof FLAGS>['values'];
  const fromVariable = fromEnv.has('source');
  // SOURCE arguments are the explicit choice: the entrypoint's SECRET_FETCH_SOURCE does not add to them.
  const uris = [...positionals, ...(positionals.length > 0 && fromVariable ? [] : (values.source ?? []))];
  const kmsKeys = values['kms-key'] ?? [];
  const outs = values.out ?? [];
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
  return { sources, allowDisk: values['allow-disk'] === true };
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
  // Each key gets one line: a --kms-key's comes after the sources, a berglas key's (named by the
  // object's metadata, so known only once it was read) under the first object that names it.
  const keysChecked = new Set<string>(keys);
  const berglasKey: FollowUp = async (ref, metadata) => {
    if (ref.scheme !== 'berglas') return [];
    const where = describeSource(ref);
    const pinned = plan.sources.find((s) => s.ref === ref)?.kmsKey;
    let key: string;
    try {
      key = berglasKeyName(metadata, where, pinned);
    } catch (error) {
      return [failFrom('berglas-key', where, error)];
    }
    if (keysChecked.has(key)) return [];
    keysChecked.add(key);
    return [await checkKmsKey(key, context)];
  };
  const buckets = groupBy(plan.sources.map((s) => s.ref).filter(isObjectRef), (ref) => ref.bucket);
  const secrets = groupBy(
    plan.sources.map((s) => s.ref).filter((ref): ref is SecretManagerRef => ref.scheme === 'sm'),
    (ref) => `sm://${ref.project}/${ref.secret}`,
  );
  const checked = new Set<string>();
  for (const { ref } of plan.sources) {
    switch (ref.scheme) {
      case 'gs':
      case 'berglas':
        if (checked.has(`gs://${ref.bucket}`)) break;
        checked.add(`gs://${ref.bucket}`);
        run(`test the permissions on gs://${ref.bucket}`, 'bucket', `gs://${ref.bucket}`, () =>
          checkBucket(ref.bucket, buckets.get(ref.bucket) ?? [ref], context, berglasKey),
        );
        break;
      case 'sm': {
        const where = `sm://${ref.project}/${ref.secret}`;
        if (checked.has(where)) break;
        checked.add(where);
        run(`test the permissions on ${where}`, 'secret', where, () =>
          checkSecret(secrets.get(where) ?? [ref], context),
        );
        break;
      }
      case 'file':
        run(`open ${ref.path}`, 'file', ref.path, async () => [checkFileSource(ref.path)]);
        break;
    }
  }
  for (const key of keys) {
    run(`test the permissions on ${key}`, 'kms-key', key, async () => [await checkKmsKey(key, context)]);
  }
  for (const out of new Set(plan.sources.flatMap((s) => (s.out === undefined ? [] : [s.out])))) {
    run(`check --out ${show(out)}`, 'out', out, async () => [checkOutTarget(out, plan.allowDisk)]);
  }
  for (const task of tasks) emit(await task);
  return checks;
}

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const group = groups.get(keyOf(item));
    if (group === undefined) groups.set(keyOf(item), [item]);
    else group.push(item);
  }
  return groups;
}

/** Which services present credentials (not http://), and what to say when none does. */
function credentialUse(plan: DoctorPlan, endpoints: Endpoints, kms: boolean): { users: string[]; idle: string } {
  const services: [string, string][] = [];
  if (plan.sources.some((s) => isObjectRef(s.ref))) {
    services.push(['Cloud Storage', endpoints.storage ?? 'https://storage.googleapis.com']);
  }
  if (plan.sources.some((s) => s.ref.scheme === 'sm')) {
    services.push(['Secret Manager', endpoints.secretManager ?? 'https://secretmanager.googleapis.com']);
  }
  // A berglas object names its own key.
  if (kms || plan.sources.some((s) => s.ref.scheme === 'berglas')) {
    services.push(['Cloud KMS', endpoints.kms ?? 'https://cloudkms.googleapis.com']);
  }
  const named = (list: [string, string][]) => list.map(([name, url]) => `${name} at ${url}`);
  const users = named(services.filter(([, url]) => !url.startsWith('http://')));
  const local = named(services.filter(([, url]) => url.startsWith('http://')));
  const idle =
    local.length > 0
      ? `${listed(local)} ${local.length === 1 ? 'is' : 'are'} reached over http://, without credentials`
      : plan.sources.length > 0
        ? 'only local files are read'
        : 'no source to read';
  return { users: users.length > 0 ? [listed(users)] : [], idle };
}

/** "a", "a and b", "a, b and c". */
function listed(items: readonly string[]): string {
  return items.length <= 2 ? items.join(' and ') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

/** `task`, or an UnavailableError naming `what` once the --timeout deadline passes. */
function bounded<T>(deadline: Deadline, what: string, task: () => Promise<T>): Promise<T> {
  return deadline.race(task(), what);
}
