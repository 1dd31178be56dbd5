// The pipeline: source -> decrypt (Cloud KMS, or a Flask-Vault master key) -> parse -> sinks ->
// launch. Every check that can fail runs before anything is left behind: outputs are renamed into
// place only after every source was fetched, decrypted and parsed and the command was found, and
// the command starts last.

import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { readCaFile } from './ca-file.ts';
import { type Clients, createClients } from './clients.ts';
import { decryptWithMasterKey, describeMasterKey } from './decrypt/master-key.ts';
import { UsageError } from './errors.ts';
import { type Format, parseEntries } from './formats/index.ts';
import { checkExecSupported, execCommand } from './launch/exec.ts';
import { planExec, resolveCommand } from './launch/resolve.ts';
import { Sidecar } from './launch/sidecar.ts';
import type { Supervisor } from './launch/supervise.ts';
import { type Logger, show } from './log.ts';
import type { Options, SourcePlan } from './options.ts';
import { type RefreshContext, startRefresh } from './refresh.ts';
import { createRetry, Deadline } from './retry.ts';
import type { Secret, SecretEntries } from './secret.ts';
import { commandEnvironment, refuseLoaderEntries } from './sinks/env.ts';
import { checkDistinctOutputs, outputLocation, StagedFiles } from './sinks/file.ts';
import {
  checkReferences,
  findEnvReferences,
  looksLikeReference,
  resolveEnvReferences,
} from './sources/env-references.ts';
import { fileVersion } from './sources/file.ts';
import { decryptsItself, type FetchContext, fetchSource } from './sources/index.ts';
import type { SourceRef } from './sources/reference.ts';

export interface RunContext {
  /** The environment the command inherits (secrets overlay it). */
  readonly environ: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  readonly log: Logger;
  readonly deadline: Deadline;
  readonly staged: StagedFiles;
  readonly clients?: Clients;
  /**
   * Called with --supervise just before the command starts (with its Supervisor; without one for
   * a sidecar): the fetch is over, so the caller stops its --timeout and its interrupt handlers
   * (signals are forwarded to the command now), and stops the command if secret-fetch crashes.
   */
  readonly onSupervise?: (supervisor?: Supervisor) => void;
}

/** Runs the whole pipeline; resolves to the exit code when there is no command to exec. */
export async function run(options: Options, initial: RunContext): Promise<number> {
  if (options.command !== undefined && !options.supervise) checkExecSupported();
  let context = initial;
  const { log } = context;
  // Read before any fetch: a bad bundle stops the run before anything is sent.
  let ca: string[] | undefined;
  if (options.caFile !== undefined) {
    ca = readCaFile(options.caFile);
    log.debug(`trusting ${ca.length} CA certificate(s) from ${show(options.caFile)} besides the system roots`);
  }
  const fetchContext: FetchContext = {
    clients: context.clients ?? createClients(options.endpoints, options.credentials, log, ca),
    retry: createRetry({ log, deadline: context.deadline }),
    log,
    maxBytes: options.maxBytes,
    // Read once, before any fetch: a bad key file stops the run before anything is downloaded.
    verifyKey:
      options.verifyKey === undefined
        ? undefined
        : (await import('./signing/verify.ts')).loadVerifyKey(
            resolve(context.cwd, options.verifyKey),
            options.verifyKey,
          ),
  };

  // With --refresh, the version each source is read at (a file's is taken before reading it, so
  // a change during the read is seen by the first poll).
  const versions: (string | undefined)[] = options.sources.map((plan) =>
    options.refreshMs !== undefined && plan.ref.scheme === 'file' ? tryFileVersion(plan.ref.path) : undefined,
  );
  // References are parsed before anything is fetched: a malformed one stops the run at once.
  const references = options.resolveReferences ? findEnvReferences(context.environ) : [];
  // Every file the run writes is a different file, by real location, before anything is fetched.
  const outputs = [
    ...options.sources.flatMap((plan) =>
      plan.out === undefined
        ? []
        : [{ path: resolve(context.cwd, plan.out), flag: `--out ${show(plan.out)}`, what: 'an --out file' }],
    ),
    ...(options.readyFile === undefined
      ? []
      : [
          {
            path: resolve(context.cwd, options.readyFile),
            flag: `--ready-file ${show(options.readyFile)}`,
            what: 'the --ready-file',
          },
        ]),
  ];
  checkDistinctOutputs(outputs);
  checkReferences(references, {
    outputs,
    allowLoaderEnv: options.allowLoaderEnv,
    verifying: fetchContext.verifyKey !== undefined,
    locate: outputLocation,
  });
  const fileOptions = {
    mode: options.fileMode,
    allowDisk: options.allowDisk,
    uid: options.owner.uid,
    gid: options.owner.gid,
  };
  const [secrets, resolved] = await Promise.all([
    Promise.all(
      options.sources.map(async (plan, i) => {
        const { secret, version } = await fetchPlaintext(plan, plan.ref, fetchContext);
        if (version !== undefined) versions[i] = version;
        return secret;
      }),
    ),
    references.length === 0
      ? {}
      : resolveEnvReferences(references, {
          fetch: async (reference) =>
            (
              await fetchPlaintext(
                {
                  uri: reference.uri,
                  ref: reference.ref,
                  kmsKey: reference.kmsKey,
                  masterKey: undefined,
                  format: 'raw',
                  out: undefined,
                },
                reference.ref,
                {
                  ...fetchContext,
                  // Warnings and a timeout name the variable, as every other failure of a reference does.
                  retry: createRetry({ log, deadline: context.deadline, owner: `$${reference.variable}` }),
                  kmsKeyOption: '?kms-key=',
                },
              )
            ).secret,
          stage: (path, data) => context.staged.stage(resolve(context.cwd, path), data, fileOptions),
          tempfileDir: options.tempfileDir,
          log,
        }),
  ]);
  if (references.length > 0) {
    log.debug(`resolved ${references.length} environment references (${references.map((r) => r.variable).join(', ')})`);
    // From here on the command's environment is the one with the references resolved.
    context = { ...context, environ: { ...context.environ, ...resolved } };
  }
  try {
    const entries: SecretEntries[] = [];
    // Per source, for a restart after --refresh with --env.
    const bySource: (SecretEntries | undefined)[] = options.sources.map(() => undefined);
    for (const [i, plan] of options.sources.entries()) {
      if (plan.format === 'raw') continue;
      // Parse even when only writing a file: a malformed secret should stop the start, not the app.
      const verbose = options.log.verbose ? log : undefined;
      const parsed = await parseWithin(context.deadline, plan.format, plan.uri, secrets[i] as Secret, verbose);
      log.debug(`${plan.uri}: ${plan.format} with ${parsed.size} entries (${parsed.names().join(', ')})`);
      if (options.injectEnv) {
        if (!options.allowLoaderEnv) refuseLoaderEntries(parsed, plan.uri);
        entries.push(parsed);
        bySource[i] = parsed;
      }
    }

    const env = commandEnvironment(context.environ, entries);
    // The command is found with the PATH secret-fetch was given, never a secret's (the command still gets that).
    const launch = options.command
      ? planLaunch(options.command, options.chdir, inheritedPath(initial.environ), context.cwd)
      : undefined;

    options.sources.forEach((plan, i) => {
      if (plan.out === undefined) return;
      context.staged.stage(resolve(context.cwd, plan.out), (secrets[i] as Secret).reveal(), fileOptions);
    });
    // Under --supervise --cleanup the directories stay open, to remove each file where it was written.
    const held = options.supervise && options.cleanup ? context.staged.commitHeld() : undefined;
    const written = held?.map((file) => file.target) ?? context.staged.commit();
    for (const path of written)
      log.debug(`wrote ${show(path)} (mode ${options.fileMode.toString(8).padStart(4, '0')})`);
    if (options.readyFile !== undefined) writeReadyFile(resolve(context.cwd, options.readyFile), options, log);

    if (launch === undefined && options.refreshMs !== undefined) {
      // Sidecar: keep the files fresh for another container sharing the volume.
      for (const secret of secrets) secret.wipe();
      const sidecar = new Sidecar(log, context.onSupervise);
      startRefresh({
        ...refreshContext(options, context, fetchContext, versions),
        supervisor: sidecar,
        entries: undefined,
        relaunch: () => {
          throw new Error('a sidecar has no command to restart');
        },
      });
      return await sidecar.done;
    }
    if (launch === undefined) return 0;
    log.debug(
      `${options.supervise ? 'supervise' : 'exec'} ${launch.file}${entries.length ? ` with ${entries.reduce((n, e) => n + e.size, 0)} secret variables` : ''}`,
    );
    if (options.supervise) {
      for (const secret of secrets) secret.wipe(); // the supervisor stays: keep no plaintext
      const supervise = { graceMs: options.graceMs, cleanup: held ?? [], log };
      // Loaded here only: node:child_process (and the net and stream modules it brings) costs the
      // exec path several ms at start.
      const { Supervisor } = await import('./launch/supervise.ts');
      const supervisor = new Supervisor(
        context.onSupervise ? { ...supervise, onStart: context.onSupervise } : supervise,
      );
      supervisor.start({ ...launch, env });
      if (options.refreshMs !== undefined) {
        const keepEntries = options.injectEnv && options.onChange.kind === 'restart';
        startRefresh({
          ...refreshContext(options, context, fetchContext, versions),
          supervisor,
          entries: keepEntries ? bySource : undefined,
          relaunch: (current) => ({
            ...launch,
            env: commandEnvironment(
              context.environ,
              current.filter((e): e is SecretEntries => e !== undefined),
            ),
          }),
        });
      }
      return await supervisor.done;
    }
    return await execCommand({ ...launch, env });
  } finally {
    for (const secret of secrets) secret.wipe();
  }
}

/**
 * Parses under --timeout. Parsing is synchronous, so the run's timer cannot interrupt it: the
 * deadline is checked before and after (the parsers' limits bound how long one parse takes).
 * With `verbose`, warnings about entries that other readers of the format read differently.
 */
async function parseWithin(
  deadline: Deadline,
  format: Exclude<Format, 'raw'>,
  uri: string,
  secret: Secret,
  verbose: Logger | undefined,
): Promise<SecretEntries> {
  const operation = deadline.begin(`parse ${uri}`, 'the file takes too long to parse');
  try {
    deadline.check(operation);
    const notes = verbose === undefined ? undefined : (message: string) => verbose.warn(message);
    const parsed = await parseEntries(format, secret.text(uri), uri, { notes });
    deadline.check(operation);
    return parsed;
  } finally {
    deadline.end(operation);
  }
}

function refreshContext(
  options: Options,
  context: RunContext,
  fetchContext: FetchContext,
  versions: (string | undefined)[],
): Pick<RefreshContext, 'options' | 'cwd' | 'log' | 'versions' | 'attempt' | 'fetchPlaintext'> {
  const { log } = context;
  return {
    options,
    cwd: context.cwd,
    log,
    versions,
    attempt: () => {
      const deadline = new Deadline(options.timeoutMs);
      return {
        fetch: { ...fetchContext, retry: createRetry({ log, deadline }) },
        deadline,
      };
    },
    fetchPlaintext: async (plan, ref, refreshContext) => (await fetchPlaintext(plan, ref, refreshContext)).secret,
  };
}

/** --ready-file: written atomically (temp file, rename) beside its target, no secret in it. */
function writeReadyFile(path: string, options: Options, log: Logger): void {
  const ready = new StagedFiles();
  try {
    ready.stage(path, new TextEncoder().encode(`ready ${new Date().toISOString()}\n`), {
      mode: 0o444,
      allowDisk: true,
      uid: options.owner.uid,
      gid: options.owner.gid,
    });
    ready.commit();
  } finally {
    ready.discard();
  }
  log.debug(`wrote the ready file ${show(path)}`);
}

export async function fetchPlaintext(
  plan: SourcePlan,
  ref: SourceRef,
  context: FetchContext,
): Promise<{ secret: Secret; version: string | undefined }> {
  const fetched = await fetchSource(ref, context, plan.kmsKey);
  if (context.verifyKey !== undefined && fetched.signatureVerified !== true) {
    fetched.data.wipe();
    throw new Error(`the ${ref.scheme}:// reader ignored --verify-key`); // a bug: fail closed
  }
  context.log.debug(
    `fetched ${plan.uri}${fetched.version ? ` at ${ref.scheme === 'sm' ? 'version' : 'generation'} ${fetched.version}` : ''}: ${fetched.data.byteLength} bytes`,
  );
  if (plan.masterKey !== undefined) {
    context.log.debug(
      `decrypting ${plan.uri} as a Flask-Vault file with the master key from ${describeMasterKey(plan.masterKey)}`,
    );
    try {
      return {
        secret: decryptWithMasterKey(fetched.data.reveal(), plan.masterKey, plan.uri),
        version: fetched.version,
      };
    } finally {
      fetched.data.wipe();
    }
  }
  if (plan.kmsKey === undefined || decryptsItself(ref)) return { secret: fetched.data, version: fetched.version };
  try {
    const client = await context.clients.kms(context.retry);
    const { decryptSecret } = await import('./decrypt/index.ts');
    const secret = await decryptSecret(
      client,
      { keyName: plan.kmsKey, data: fetched.data.reveal(), what: plan.uri },
      context.retry,
    );
    return { secret, version: fetched.version };
  } finally {
    fetched.data.wipe();
  }
}

/** PATH as secret-fetch inherited it; a PATH that is itself a reference counts as unset. */
function inheritedPath(environ: Readonly<Record<string, string | undefined>>): string | undefined {
  const path = environ.PATH;
  return path !== undefined && looksLikeReference(path) ? undefined : path;
}

function planLaunch(command: readonly string[], chdir: string | undefined, path: string | undefined, cwd: string) {
  const [name, ...args] = command as [string, ...string[]];
  const dir = chdir === undefined ? cwd : resolve(cwd, chdir);
  if (chdir !== undefined && !isDirectory(dir)) {
    throw new UsageError(
      `--chdir ${chdir} is not a directory`,
      "give the command's working directory as an existing path",
    );
  }
  const { file, argv } = planExec(resolveCommand(name, { path, cwd: dir }), [name, ...args], { cwd: dir });
  return { file, argv, cwd: chdir === undefined ? undefined : dir };
}

function tryFileVersion(path: string): string | undefined {
  try {
    return fileVersion(path);
  } catch {
    return undefined; // the read reports it
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
