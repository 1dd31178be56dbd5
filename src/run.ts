// The pipeline: source -> decrypt -> parse -> sinks -> launch. Every check that can fail runs
// before anything is left behind: outputs are renamed into place only after every source was
// fetched, decrypted and parsed and the command was found, and the command starts last.

import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Clients, createClients } from './clients.ts';
import { decryptWithKms } from './decrypt/kms.ts';
import { UsageError } from './errors.ts';
import { parseEntries } from './formats/index.ts';
import { execCommand } from './launch/exec.ts';
import { planExec, resolveCommand } from './launch/resolve.ts';
import type { Logger } from './log.ts';
import type { Options, SourcePlan } from './options.ts';
import { createRetry, type Deadline } from './retry.ts';
import type { Secret, SecretEntries } from './secret.ts';
import { commandEnvironment } from './sinks/env.ts';
import type { StagedFiles } from './sinks/file.ts';
import { type FetchContext, fetchSource } from './sources/index.ts';

export interface RunContext {
  /** The environment the command inherits (secrets overlay it). */
  readonly environ: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  readonly log: Logger;
  readonly deadline: Deadline;
  readonly staged: StagedFiles;
  readonly clients?: Clients;
}

/** Runs the whole pipeline; resolves to the exit code when there is no command to exec. */
export async function run(options: Options, context: RunContext): Promise<number> {
  const { log } = context;
  const fetchContext: FetchContext = {
    clients: context.clients ?? createClients(options.endpoints),
    retry: createRetry({ log, deadline: context.deadline }),
    log,
    maxBytes: options.maxBytes,
  };

  const secrets = await Promise.all(options.sources.map((plan) => fetchPlaintext(plan, fetchContext)));
  try {
    const entries: SecretEntries[] = [];
    for (const [i, plan] of options.sources.entries()) {
      if (plan.format === 'raw') continue;
      // Parse even when only writing a file: a malformed secret should stop the start, not the app.
      const parsed = await parseEntries(plan.format, (secrets[i] as Secret).text(plan.uri), plan.uri);
      log.debug(`${plan.uri}: ${plan.format} with ${parsed.size} entries (${parsed.names().join(', ')})`);
      if (options.injectEnv) entries.push(parsed);
    }

    const env = commandEnvironment(context.environ, entries);
    const launch = options.command ? planLaunch(options.command, options.chdir, env, context.cwd) : undefined;

    options.sources.forEach((plan, i) => {
      if (plan.out === undefined) return;
      context.staged.stage(resolve(context.cwd, plan.out), (secrets[i] as Secret).reveal(), {
        mode: options.fileMode,
        allowDisk: options.allowDisk,
        uid: options.owner.uid,
        gid: options.owner.gid,
      });
    });
    for (const path of context.staged.commit())
      log.debug(`wrote ${path} (mode ${options.fileMode.toString(8).padStart(4, '0')})`);

    if (launch === undefined) return 0;
    log.debug(
      `exec ${launch.file}${entries.length ? ` with ${entries.reduce((n, e) => n + e.size, 0)} secret variables` : ''}`,
    );
    return await execCommand({ ...launch, env });
  } finally {
    for (const secret of secrets) secret.wipe();
  }
}

async function fetchPlaintext(plan: SourcePlan, context: FetchContext): Promise<Secret> {
  const fetched = await fetchSource(plan.ref, context);
  context.log.debug(
    `fetched ${plan.uri}${fetched.version ? ` at generation ${fetched.version}` : ''}: ${fetched.data.byteLength} bytes`,
  );
  if (plan.kmsKey === undefined) return fetched.data;
  const client = await context.clients.kms();
  try {
    return await decryptWithKms(
      client,
      { keyName: plan.kmsKey, ciphertext: fetched.data.reveal(), what: plan.uri },
      context.retry,
    );
  } finally {
    fetched.data.wipe();
  }
}

function planLaunch(command: readonly string[], chdir: string | undefined, env: Record<string, string>, cwd: string) {
  const [name, ...args] = command as [string, ...string[]];
  const dir = chdir === undefined ? cwd : resolve(cwd, chdir);
  if (chdir !== undefined && !isDirectory(dir)) {
    throw new UsageError(
      `--chdir ${chdir} is not a directory`,
      "give the command's working directory as an existing path",
    );
  }
  const { file, argv } = planExec(resolveCommand(name, { path: env.PATH, cwd: dir }), [name, ...args], { cwd: dir });
  return { file, argv, cwd: chdir === undefined ? undefined : dir };
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
