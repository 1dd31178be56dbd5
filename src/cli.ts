// The entry point: argv and environment in, one Options object, the pipeline, an exit code.

import { writeSync } from 'node:fs';
import { constants } from 'node:os';
import pkg from '../package.json' with { type: 'json' };
import { isSubcommand, SUBCOMMANDS, type SubcommandEntry } from './commands/index.ts';
import { InterruptedError, SecretFetchError } from './errors.ts';
import { renderHelp } from './help.ts';
import { guardProcess, readInherited } from './launch/process-state.ts';
import { reexecWithoutRuntimeVariables, restoreRuntimeVariables } from './launch/runtime-env.ts';
import { handled, IGNORED_WITHOUT_COMMAND, STOP_SIGNALS, type StopSignal } from './launch/signals.ts';
import type { Supervisor } from './launch/supervise.ts';
import { createLogger, type Logger } from './log.ts';
import { parseInvocation } from './options.ts';
import { Deadline } from './retry.ts';
import { run } from './run.ts';
import { StagedFiles } from './sinks/file.ts';

// Temp files not yet renamed into place, removed on every way out short of success.
const staged = new StagedFiles();
// What subcommands ask to have undone on every way out (e.g. edit's private temp directory).
const cleanups = new Set<() => void>();
let log = createLogger({ format: guessLogFormat(process.argv.slice(2), process.env), verbose: false });
// The command under --supervise: whatever way secret-fetch fails, it stops the command first.
let supervised: Supervisor | undefined;
let failing = false;

async function main(argv: string[], processEnv: NodeJS.ProcessEnv): Promise<number> {
  try {
    // First what the parent passed (ignored signals, descriptors), then no core dump or ptrace
    // of a process about to hold secrets; under Node only the first is possible.
    readInherited();
    await guardProcess();
    // The runtime must not act on its own variables (NODE_DEBUG, ...); the command still gets them.
    reexecWithoutRuntimeVariables();
    const { environ, carried } = restoreRuntimeVariables(processEnv);
    if (isSubcommand(argv[0])) {
      const subcommand = await (SUBCOMMANDS[argv[0]] as SubcommandEntry).load();
      // Like system(3): while an interactive child (an editor) runs, ^C and ^\ belong to it.
      let interactive = 0;
      const release = onInterrupt((signal) => {
        if (interactive > 0 && (signal === 'SIGINT' || signal === 'SIGQUIT')) return;
        void fail(log, new InterruptedError(signal, constants.signals[signal]));
      });
      try {
        return await subcommand.run(argv.slice(1), {
          environ,
          cwd: process.cwd(),
          staged,
          useLogger: (options) => {
            log = createLogger(options);
            return log;
          },
          onExit: (cleanup) => {
            cleanups.add(cleanup);
            return () => cleanups.delete(cleanup);
          },
          ignoreInterrupts: () => {
            interactive++;
            return () => {
              interactive--;
            };
          },
        });
      } finally {
        release();
      }
    }
    const invocation = parseInvocation(argv, environ);
    if (invocation.kind === 'help') return print(renderHelp(pkg.version));
    if (invocation.kind === 'version') return print(`${pkg.version}\n`);
    const { options } = invocation;
    log = createLogger(options.log);
    if (carried.length > 0) {
      log.debug(`restarted without ${carried.join(', ')} (the runtime would act on them); the command still gets them`);
    }
    const release = onInterrupt((signal) => void fail(log, new InterruptedError(signal, constants.signals[signal])));
    const deadline = new Deadline(options.timeoutMs);
    let supervising = false;
    const onSupervise = (supervisor?: Supervisor): void => {
      // With --supervise the fetch is over and the command runs: no more --timeout, and the
      // supervisor forwards signals instead of exiting on them.
      supervising = true;
      supervised = supervisor;
      release();
      if (/^(1|true|yes|on)$/i.test(environ.SECRET_FETCH_TEST_CRASH ?? '')) crashOnSignals();
    };
    return await Promise.race([
      run(options, { environ, cwd: process.cwd(), log, deadline, staged, onSupervise }),
      deadline.expire().catch((error: unknown) => {
        if (supervising) return new Promise<never>(() => {});
        throw error;
      }),
    ]);
  } catch (error) {
    return await fail(log, error);
  }
}

/**
 * While no command runs: installs `handler` for each signal that would end the process, and
 * ignores SIGUSR1 (src/launch/signals.ts); returns a function that removes them again.
 */
function onInterrupt(handler: (signal: StopSignal) => void): () => void {
  // Handled (not ignored) signals reset to their defaults on exec, so the command gets them clean.
  const listeners: (readonly [NodeJS.Signals, () => void])[] = handled(STOP_SIGNALS).map(
    (signal) => [signal, () => handler(signal)] as const,
  );
  for (const signal of handled([IGNORED_WITHOUT_COMMAND])) {
    listeners.push([signal, () => log.debug(`received ${signal}: ignored (no command to forward it to yet)`)]);
  }
  for (const [signal, listener] of listeners) process.on(signal, listener);
  return () => {
    for (const [signal, listener] of listeners) process.off(signal, listener);
  };
}

/**
 * Reports `error` in one line and exits with its code. A supervised command that still runs is
 * stopped first, as a forwarded SIGTERM would stop it (SIGKILL after --grace): a crash of the
 * supervisor must not leave the command running on its own. A second failure meanwhile kills it.
 */
async function fail(log: Logger, error: unknown): Promise<never> {
  staged.discard();
  for (const cleanup of cleanups) {
    try {
      cleanup();
    } catch {
      // Best effort on the way out; the error being reported matters more.
    }
  }
  const code = report(log, error);
  const supervisor = supervised;
  if (supervisor?.running && !failing) {
    failing = true;
    await supervisor.terminate();
  } else if (supervisor?.running) {
    supervisor.signal('SIGKILL');
  }
  process.exit(code);
}

/** Logs the one line for `error` and returns the exit code it means. */
function report(log: Logger, error: unknown): number {
  if (error instanceof SecretFetchError) {
    log.error(error.line);
    return error.exitCode;
  }
  // An unexpected error's message may quote a response body: name it, never print it; the
  // stack frames (without the message line) go to --verbose.
  log.debug(
    `stack: ${(error instanceof Error ? (error.stack ?? '') : '')
      .split('\n')
      .filter((l) => l.startsWith('    at '))
      .join(' | ')}`,
  );
  const name = error instanceof Error ? error.name : typeof error;
  const code = (error as { code?: unknown } | null)?.code;
  log.error(
    `internal error: ${name}${code === undefined ? '' : ` (${String(code)})`}; please report this with the command line you used`,
  );
  return 70;
}

/**
 * Test hook (SECRET_FETCH_TEST_CRASH=1, set only by test/integration/supervise.test.ts): once the
 * command runs, SIGUSR1 makes the supervisor throw and SIGUSR2 leaves a rejected promise
 * unhandled, so the tests can check that a crash stops the command instead of orphaning it.
 */
function crashOnSignals(): void {
  process.prependListener('SIGUSR1', () => {
    throw new Error('test crash: an uncaught exception in the supervisor');
  });
  process.prependListener('SIGUSR2', () => {
    void Promise.reject(new Error('test crash: an unhandled rejection in the supervisor'));
  });
}

function print(text: string): number {
  writeSync(1, text);
  return 0;
}

function guessLogFormat(argv: readonly string[], environ: NodeJS.ProcessEnv): 'text' | 'json' {
  const i = argv.indexOf('--log-format');
  const flag = i === -1 ? argv.find((a) => a.startsWith('--log-format='))?.slice(13) : argv[i + 1];
  return (flag ?? environ.SECRET_FETCH_LOG_FORMAT) === 'json' ? 'json' : 'text';
}

process.on('uncaughtException', (error) => void fail(log, error));
process.on('unhandledRejection', (reason) => void fail(log, reason));
// Node prints process warnings (e.g. a library's MaxListenersExceededWarning on a truncated
// download) straight to stderr, which would break the one-line contract: they go to --verbose.
process.removeAllListeners('warning');
process.on('warning', (warning) => log.debug(`node warning: ${warning.name}: ${warning.message}`));
main(process.argv.slice(2), process.env).then(
  // A failure that is stopping the supervised command exits once it is gone, with its own code.
  (code) => failing || process.exit(code),
  (error) => void fail(log, error),
);
