// --refresh: while the command runs under --supervise (or, without a command, as a sidecar), poll every source's version cheaply (a
// gs:// or berglas:// object's generation from its metadata, an sm:// secret's version number from
// the version's metadata, a file's inode and mtime); when one changes,
// fetch, decrypt and parse the new version exactly as at start, rename the new --out files into
// place, then apply --on-change. A refresh that fails anywhere writes nothing, leaves the command
// alone, logs one warning and is retried with backoff: it never takes the app down.

import { resolve } from 'node:path';
import { SecretFetchError } from './errors.ts';
import { parseEntries } from './formats/index.ts';
import type { Supervisor } from './launch/supervise.ts';
import { type Logger, show } from './log.ts';
import { openSource, planSource } from './open-source.ts';
import type { OnChange, Options, RunSource } from './options.ts';
import type { Deadline } from './retry.ts';
import type { Secret, SecretEntries } from './secret.ts';
import { refuseLoaderEntries } from './sinks/env.ts';
import { StagedFiles } from './sinks/file.ts';
import { type EnvReference, namedAfter, placeReference } from './sources/env-references.ts';
import { type FetchContext, kindOf, sourceVersion } from './sources/index.ts';
import { atVersion, isPinned, type SourceRef } from './sources/reference.ts';

/** Backoff after failed refreshes doubles the interval up to this (or the interval, if longer). */
const MAX_BACKOFF_MS = 5 * 60_000;

/** Who hears of a change: the supervised command (--on-change), or the containers sharing a sidecar's files. */
export type RefreshTarget =
  | { readonly kind: 'sidecar'; readonly done: Promise<number> }
  | {
      readonly kind: 'command';
      readonly supervisor: Pick<Supervisor, 'done' | 'signal' | 'restart' | 'stop'>;
      readonly onChange: OnChange;
      /** The parsed entries per source (for --on-change restart with --env), or undefined. */
      readonly entries: (SecretEntries | undefined)[] | undefined;
      /** The command's plan with a new environment, built from `entries` (restart). */
      readonly relaunch: (entries: readonly (SecretEntries | undefined)[]) => Parameters<Supervisor['restart']>[0];
    };

export interface RefreshContext {
  readonly options: Options;
  readonly intervalMs: number;
  readonly target: RefreshTarget;
  readonly cwd: string;
  readonly log: Logger;
  /** A fresh fetch context for one refresh, with its own --timeout deadline. */
  readonly attempt: () => { readonly fetch: FetchContext; readonly deadline: Deadline };
  /** The version each source was read at (undefined: unknown, the first poll only records it). */
  readonly versions: (string | undefined)[];
  /** The environment references kept current (a sidecar's: those with a ?destination= file). */
  readonly references: readonly RefreshedReference[];
  /** Each reference's variable as the command's environment has it; a refresh updates it (restart). */
  readonly referenceValues: Record<string, string>;
}

/** An environment reference that a refresh keeps current. */
export interface RefreshedReference {
  readonly reference: EnvReference;
  /** The version it was read at (undefined: unknown, the first poll only records it). */
  version: string | undefined;
  /** The file its secret is written to (its ?destination=, as chosen at start); undefined: the variable. */
  readonly path: string | undefined;
}

/** Polls until `supervisor.done` settles. */
export function startRefresh(context: RefreshContext): void {
  const { log, target } = context;
  const interval = context.intervalMs;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let over = false;
  /** The temp files of a refresh in flight, removed if the command exits meanwhile. */
  const staged = new StagedFiles();
  const schedule = (): void => {
    if (over) return;
    const delay = failures === 0 ? interval : Math.min(interval * 2 ** failures, Math.max(interval, MAX_BACKOFF_MS));
    timer = setTimeout(tick, delay);
    timer.unref();
  };
  const tick = async (): Promise<void> => {
    try {
      const attempt = context.attempt();
      await attempt.deadline.race(refreshOnce(context, attempt.fetch, staged));
      failures = 0;
    } catch (error) {
      failures++;
      const reason = error instanceof SecretFetchError ? error.line : `internal error: ${describe(error)}`;
      log.warn(`refresh failed, keeping the current secrets and command: ${reason}; next try in ${nextTry(failures)}`);
    }
    schedule();
  };
  const nextTry = (n: number) => formatMs(Math.min(interval * 2 ** n, Math.max(interval, MAX_BACKOFF_MS)));
  const stop = (): void => {
    over = true;
    if (timer !== undefined) clearTimeout(timer);
    staged.discard();
  };
  const done = target.kind === 'sidecar' ? target.done : target.supervisor.done;
  done.then(stop, stop);
  schedule();
}

async function refreshOnce(context: RefreshContext, fetchContext: FetchContext, staged: StagedFiles): Promise<void> {
  const { options, log, versions } = context;
  // Every poll at once (a pinned one never changes): one round trip, not one per source and reference.
  const [sourcePolls, referencePolls] = await Promise.all([
    Promise.all(
      options.sources.map(async (plan, index) =>
        isPinned(plan.ref) ? undefined : { index, version: await sourceVersion(plan.ref, fetchContext) },
      ),
    ),
    Promise.all(
      context.references.map(async (held) =>
        isPinned(held.reference.ref)
          ? undefined
          : { held, version: await namedAfter(held.reference, () => sourceVersion(held.reference.ref, fetchContext)) },
      ),
    ),
  ]);
  const changed: { index: number; version: string }[] = [];
  for (const poll of sourcePolls) {
    if (poll === undefined) continue;
    if (versions[poll.index] === undefined) versions[poll.index] = poll.version;
    else if (poll.version !== versions[poll.index]) changed.push(poll);
  }
  const changedReferences: { held: RefreshedReference; version: string }[] = [];
  for (const poll of referencePolls) {
    if (poll === undefined) continue;
    if (poll.held.version === undefined) poll.held.version = poll.version;
    else if (poll.version !== poll.held.version) changedReferences.push(poll);
  }
  if (changed.length === 0 && changedReferences.length === 0) return;

  // All or nothing: every changed source is fetched, decrypted and parsed before any file moves.
  const secrets: Secret[] = [];
  const kept = context.target.kind === 'command' ? context.target.entries : undefined;
  const newEntries = kept ? [...kept] : undefined;
  try {
    for (const { index, version } of changed) {
      const plan = options.sources[index] as RunSource;
      // Exactly the version the poll saw, so a second change meanwhile can't slip in unannounced.
      const { secret } = await openSource(plan, fetchContext, atVersion(plan.ref, version));
      secrets.push(secret);
      if (plan.format !== 'raw') {
        const parsed = await parseEntries(plan.format, secret.text(plan.uri), plan.uri);
        if (newEntries && !options.allowLoaderEnv) refuseLoaderEntries(parsed, plan.uri);
        if (newEntries) newEntries[index] = parsed;
      }
      if (plan.out !== undefined) staged.stage(resolve(context.cwd, plan.out), secret.reveal(), fileOptions(options));
    }
    const values: Record<string, string> = {};
    for (const { held, version } of changedReferences) {
      const { reference } = held;
      values[reference.variable] = await namedAfter(reference, async () => {
        const plan = planSource({ ...reference, format: 'raw' });
        const at = atVersion(reference.ref, version);
        const { secret } = await openSource(plan, { ...fetchContext, kmsKeyOption: '?kms-key=' }, at);
        secrets.push(secret);
        return placeReference(reference, secret, held.path, {
          stage: (path, data) => staged.stage(path, data, fileOptions(options)),
          log,
        });
      });
    }
    const written = staged.commit();
    for (const { index, version } of changed) versions[index] = version;
    for (const { held, version } of changedReferences) held.version = version;
    Object.assign(context.referenceValues, values);
    if (newEntries && kept) kept.splice(0, newEntries.length, ...newEntries);
    const what = [
      ...changed.map(({ index, version }) => {
        const plan = options.sources[index] as RunSource;
        return `${plan.uri}${describeVersion(plan.ref, version)}`;
      }),
      ...changedReferences.map(
        ({ held: { reference }, version }) =>
          `$${reference.variable} (${reference.uri}${describeVersion(reference.ref, version)})`,
      ),
    ].join(', ');
    log.info(
      `${what} changed${written.length ? `: rewrote ${written.map(show).join(', ')}` : ''}; ${applyChange(context.target, newEntries)}`,
    );
  } finally {
    staged.discard();
    for (const secret of secrets) secret.wipe();
  }
}

function applyChange(target: RefreshTarget, entries: (SecretEntries | undefined)[] | undefined): string {
  if (target.kind === 'sidecar') return 'sidecar: the sharing containers read the new files';
  const { onChange, supervisor } = target;
  switch (onChange.kind) {
    case 'signal':
      supervisor.signal(onChange.signal);
      return `sent ${onChange.signal} to the command`;
    case 'restart':
      supervisor.restart(target.relaunch(entries ?? []));
      return 'restarting the command';
    case 'exit':
      supervisor.stop();
      return 'stopping the command and exiting (--on-change exit)';
  }
}

/** " (now generation N)", " (now version N)", or nothing for a file. */
function describeVersion(ref: SourceRef, version: string): string {
  const noun = kindOf(ref).versionNoun;
  return noun === undefined ? '' : ` (now ${noun} ${version})`;
}

/** The --out and ?destination= file settings. */
function fileOptions(options: Options) {
  return { mode: options.fileMode, allowDisk: options.allowDisk, uid: options.owner.uid, gid: options.owner.gid };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
