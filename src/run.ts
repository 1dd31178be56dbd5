// The pipeline: source -> decrypt (Cloud KMS, or a Flask-Vault master key) -> parse -> sinks ->
// launch. Every check that can fail runs before anything is left behind: outputs are renamed into
// place only after every source was fetched, decrypted and parsed and the command was found, and
// the command starts last.

import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from './errors.ts';
import { type Format, parseEntries } from './formats/index.ts';
import { readCaFile } from './google/ca-file.ts';
import { type Clients, createClients } from './google/clients.ts';
import { checkExecSupported, execCommand } from './launch/exec.ts';
import { planExec, resolveCommand } from './launch/resolve.ts';
import { Sidecar } from './launch/sidecar.ts';
import type { Supervisor } from './launch/supervise.ts';
import { type Logger, show } from './log.ts';
import { openSource, planSource } from './open-source.ts';
import type { Options } from './options.ts';
import { type RefreshContext, type RefreshedReference, startRefresh } from './refresh.ts';
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
import type { FetchContext } from './sources/index.ts';

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
  const { launch: mode } = options;
  if (mode.kind === 'exec') checkExecSupported();
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
    retry: createRetry({ log, deadline: context.deadline, attemptLimit: true }),
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
  const refreshing = (mode.kind === 'supervise' && mode.refresh !== undefined) || mode.kind === 'sidecar';
  const versions: (string | undefined)[] = options.sources.map((plan) =>
    refreshing && plan.ref.scheme === 'file' ? tryFileVersion(plan.ref.path) : undefined,
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
  // With --refresh, the version each reference was read at.
  const referenceVersions = new Map<string, string | undefined>();
  const [secrets, resolved] = await Promise.all([
    Promise.all(
      options.sources.map(async (plan, i) => {
        const { secret, version } = await openSource(plan, fetchContext);
        if (version !== undefined) versions[i] = version;
        return secret;
      }),
    ),
    references.length === 0
      ? ({} as Record<string, string>)
      : resolveEnvReferences(references, {
          fetch: async (reference) => {
            // The run does not parse a reference's secret (raw); its kind and ?kms-key= decide the decrypt.
            const opened = await openSource(planSource({ ...reference, format: 'raw' }), {
              ...fetchContext,
              // Warnings and a timeout name the variable, as every other failure of a reference does.
              retry: createRetry({
                log,
                deadline: context.deadline,
                owner: `$${reference.variable}`,
                attemptLimit: true,
              }),
              kmsKeyOption: '?kms-key=',
            });
            referenceVersions.set(reference.variable, opened.version);
            return opened.secret;
          },
          stage: (path, data) => context.staged.stage(resolve(context.cwd, path), data, fileOptions),
          tempfileDir: options.tempfileDir,
          log,
        }),
  ]);
  // What the references resolved to; a refresh updates it, and a restart's environment overlays it.
  const referenceValues: Record<string, string> = { ...resolved };
  if (references.length > 0) {
    log.debug(`resolved ${references.length} environment references (${references.map((r) => r.variable).join(', ')})`);
    // From here on the command's environment is the one with the references resolved.
    context = { ...context, environ: { ...context.environ, ...resolved } };
  }
  /** The references a refresh keeps current: a sidecar's are those written to a file. */
  const refreshed = (filesOnly: boolean): RefreshedReference[] =>
    references
      .filter((reference) => !filesOnly || reference.destination.kind !== 'value')
      .map((reference) => ({
        reference,
        version: referenceVersions.get(reference.variable),
        path: reference.destination.kind === 'value' ? undefined : resolved[reference.variable],
      }));
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
    const launch =
      mode.kind === 'exec' || mode.kind === 'supervise'
        ? planLaunch(mode.command, mode.chdir, inheritedPath(initial.environ), context.cwd)
        : undefined;

    options.sources.forEach((plan, i) => {
      if (plan.out === undefined) return;
      context.staged.stage(resolve(context.cwd, plan.out), (secrets[i] as Secret).reveal(), fileOptions);
    });
    // Under --supervise --cleanup the directories stay open, to remove each file where it was written.
    const held = mode.kind === 'supervise' && mode.cleanup ? context.staged.commitHeld() : undefined;
    const written = held?.map((file) => file.target) ?? context.staged.commit();
    for (const path of written)
      log.debug(`wrote ${show(path)} (mode ${options.fileMode.toString(8).padStart(4, '0')})`);
    if (options.readyFile !== undefined) writeReadyFile(resolve(context.cwd, options.readyFile), options, log);

    switch (mode.kind) {
      case 'init':
        return 0;
      case 'sidecar': {
        // Keep the files fresh for another container sharing the volume.
        for (const secret of secrets) secret.wipe();
        const sidecar = new Sidecar(log, context.onSupervise);
        startRefresh({
          ...refreshContext(options, context, fetchContext, versions),
          intervalMs: mode.refresh.intervalMs,
          target: { kind: 'sidecar', done: sidecar.done },
          references: refreshed(true),
          referenceValues,
        });
        return await sidecar.done;
      }
      case 'exec':
        log.debug(`exec ${(launch as CommandPlan).file}${describeEntries(entries)}`);
        return await execCommand({ ...(launch as CommandPlan), env });
    }
    // --supervise: the command runs as a child and secret-fetch stays.
    const plan = launch as CommandPlan;
    log.debug(`supervise ${plan.file}${describeEntries(entries)}`);
    for (const secret of secrets) secret.wipe(); // the supervisor stays: keep no plaintext
    const supervise = { graceMs: mode.graceMs, cleanup: held ?? [], log };
    // Loaded here only: node:child_process (and the net and stream modules it brings) costs the
    // exec path several ms at start.
    const { Supervisor } = await import('./launch/supervise.ts');
    const supervisor = new Supervisor(context.onSupervise ? { ...supervise, onStart: context.onSupervise } : supervise);
    supervisor.start({ ...plan, env });
    if (mode.refresh !== undefined) {
      const { onChange } = mode.refresh;
      const keepEntries = options.injectEnv && onChange.kind === 'restart';
      startRefresh({
        ...refreshContext(options, context, fetchContext, versions),
        intervalMs: mode.refresh.intervalMs,
        references: refreshed(false),
        referenceValues,
        target: {
          kind: 'command',
          supervisor,
          onChange,
          entries: keepEntries ? bySource : undefined,
          relaunch: (current) => ({
            ...plan,
            env: commandEnvironment(
              { ...context.environ, ...referenceValues },
              current.filter((e): e is SecretEntries => e !== undefined),
            ),
          }),
        },
      });
    }
    return await supervisor.done;
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
): Pick<RefreshContext, 'options' | 'cwd' | 'log' | 'versions' | 'attempt'> {
  const { log } = context;
  return {
    options,
    cwd: context.cwd,
    log,
    versions,
    attempt: () => {
      const deadline = new Deadline(options.timeoutMs);
      return { fetch: { ...fetchContext, retry: createRetry({ log, deadline, attemptLimit: true }) }, deadline };
    },
  };
}

/** " with N secret variables" for the launch's debug line, or nothing. */
function describeEntries(entries: readonly SecretEntries[]): string {
  return entries.length ? ` with ${entries.reduce((n, e) => n + e.size, 0)} secret variables` : '';
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

/** PATH as secret-fetch inherited it; a PATH that is itself a reference counts as unset. */
function inheritedPath(environ: Readonly<Record<string, string | undefined>>): string | undefined {
  const path = environ.PATH;
  return path !== undefined && looksLikeReference(path) ? undefined : path;
}

/** The command found (by the PATH secret-fetch was given) and its working directory; its env comes last. */
type CommandPlan = ReturnType<typeof planLaunch>;

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
