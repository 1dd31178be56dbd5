// --supervise: instead of becoming the command, start it as a child and stay, as tini does:
//
// - every signal that would end secret-fetch is forwarded to it (src/launch/signals.ts);
// - after SIGTERM or SIGINT was forwarded, the command has --grace to exit before SIGKILL;
// - secret-fetch exits when the command exits, with its status, or 128+n when signal n killed it;
// - --cleanup removes the --out files once the command has exited, however it ended (so the app
//   can still read them during a graceful shutdown).
//
// The runtime resets every signal disposition and the signal mask in the child before its exec,
// so the command does not inherit the ignored SIGPIPE/SIGXFSZ (nor a signal the parent had
// ignored). Orphaned grandchildren are reaped by src/launch/reaper.ts; where it cannot (Node,
// which has no waitpid(-1)), PID 1 says so once, on stderr.

import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { CommandError, EXIT } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { WrittenFile } from '../sinks/file.ts';
import { checkArguments, checkEnvironment, type LaunchPlan } from './exec.ts';
import { commandStdio, inheritedIgnoredSignals, withCommandLimits } from './process-state.ts';
import { Reaper } from './reaper.ts';
import { show } from './resolve.ts';
import { FORWARDED_SIGNALS, type ForwardedSignal, handled } from './signals.ts';

export const PID1_HINT =
  'running as PID 1: Node cannot reap orphaned grandchildren, which then stay zombies; add an init: ' +
  'ENTRYPOINT ["tini", "--", "secret-fetch", ...], docker run --init, or shareProcessNamespace: true in the Kubernetes pod spec';

export interface SuperviseOptions {
  /** After a forwarded SIGTERM/SIGINT, SIGKILL the command if it is still running this much later. */
  readonly graceMs: number;
  /** Files to remove once the command has exited (--cleanup), each in the directory it was written in. */
  readonly cleanup: readonly WrittenFile[];
  readonly log: Logger;
  /** Called just before the command starts: from then on, signals go to the command. */
  readonly onStart?: (supervisor: Supervisor) => void;
}

/** The command while it runs; `pid` is undefined until it has started. */
interface Child {
  pid: number | undefined;
  exited: boolean;
}

/**
 * One supervised command at a time. `done` resolves to the status to exit with once the command
 * has exited for good (not when restart() replaces it), or rejects when it cannot be started.
 */
export class Supervisor {
  readonly done: Promise<number>;
  readonly #options: SuperviseOptions;
  #resolve!: (status: number) => void;
  #reject!: (error: unknown) => void;
  #child: Child | undefined;
  /** Where the reaper (and the syscalls to start the command with) are: Bun. */
  #reaper: Reaper | undefined;
  /** The terminal (fd 0, 1 or 2) whose foreground process group secret-fetch was in, if any. */
  #terminal: number | undefined;
  #command = '';
  #graceTimer: NodeJS.Timeout | undefined;
  /** The plan to start once the current child has exited (restart). */
  #next: LaunchPlan | undefined;
  /** A stop was asked for (TERM/INT received, or stop()): never start again. */
  #stopping = false;
  #finished = false;
  #listening = false;

  constructor(options: SuperviseOptions) {
    this.#options = options;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  get running(): boolean {
    return this.#child?.pid !== undefined && !this.#child.exited;
  }

  /** Starts the command (the first time, also the signal forwarding). */
  start(plan: LaunchPlan): void {
    const { log } = this.#options;
    this.#command = plan.argv[0] ?? plan.file;
    const argv = checkArguments(plan.file, plan.argv);
    const env = checkEnvironment(plan.env);
    if (!this.#listening) {
      this.#reaper = Reaper.start(log);
      if (process.pid === 1 && this.#reaper === undefined) log.warn(PID1_HINT);
      const sys = this.#reaper?.sys;
      this.#terminal = [0, 1, 2].find((fd) => sys !== undefined && sys.foregroundGroup(fd) === sys.processGroup(0));
      // The interrupt handlers of the fetch stage are swapped for forwarders in one tick: a
      // signal is dispatched from the event loop, so none can fall between the two.
      this.#options.onStart?.(this);
      for (const signal of handled(FORWARDED_SIGNALS)) process.on(signal, () => this.#forward(signal));
      this.#listening = true;
    }
    const child: Child = { pid: undefined, exited: false };
    this.#child = child;
    const onExit = (code: number | null, signal: NodeJS.Signals | number | null) => {
      child.exited = true;
      this.#exited(child, code, signal);
    };
    try {
      child.pid =
        this.#reaper === undefined ? this.#spawn(plan, argv, env, onExit) : this.#spawnInGroup(plan, argv, env);
    } catch (error) {
      this.#fail(spawnFailure(this.#command, error));
      return;
    }
    if (child.pid === undefined) return;
    log.debug(`started ${plan.file} as pid ${child.pid}; supervising`);
    if (this.#reaper !== undefined) {
      // No runtime handle stands for the child: this keeps the process alive until it has exited.
      const keepAlive = setInterval(() => {}, 2 ** 30);
      this.#reaper.watch(child.pid, ({ code, signal }) => {
        clearInterval(keepAlive);
        onExit(code, signal);
      });
    }
  }

  /**
   * Bun: posix_spawn through src/launch/sys.ts, as tini starts its child: in a process group of its
   * own which, when secret-fetch's group had the terminal, gets the terminal (so a Ctrl-C there
   * reaches the command once, from the terminal), signals the parent ignored still ignored, and
   * the inherited descriptors open. The reaper collects its status.
   */
  #spawnInGroup(plan: LaunchPlan, argv: string[], env: Record<string, string>): number {
    const sys = (this.#reaper as Reaper).sys;
    const pid = withCommandLimits(() =>
      sys.spawn(plan.file, argv, env, { cwd: plan.cwd, keepIgnored: inheritedIgnoredSignals() }),
    );
    const terminal = this.#terminal;
    // Only while the terminal is ours: the command that had it before a restart gave it back on exit.
    if (terminal !== undefined && sys.foregroundGroup(terminal) === sys.processGroup(0)) {
      try {
        sys.setForegroundGroup(terminal, pid);
      } catch (error) {
        this.#options.log.debug(`cannot give the terminal to ${show(this.#command)}: ${(error as Error).message}`);
      }
    }
    return pid;
  }

  /** Node: the runtime's spawn (same process group; libuv resets the signals in the child). */
  #spawn(
    plan: LaunchPlan,
    argv: string[],
    env: Record<string, string>,
    onExit: (code: number | null, signal: NodeJS.Signals | null) => void,
  ): number | undefined {
    const child: ChildProcess = withCommandLimits(() =>
      spawn(plan.file, argv.slice(1), { argv0: argv[0], env, cwd: plan.cwd, stdio: commandStdio() }),
    );
    // A failed exec (ENOENT, EACCES) comes as an 'error' event, with no pid.
    child.once('error', (error) => {
      if (child.pid === undefined) this.#fail(spawnFailure(this.#command, error));
    });
    child.once('exit', onExit);
    return child.pid;
  }

  /** Sends `signal` to the command, if it runs. */
  signal(signal: NodeJS.Signals): void {
    if (this.#child?.pid !== undefined && this.running) signalChild(this.#child.pid, signal);
  }

  /** Stops the command as a forwarded SIGTERM would (with --grace), then starts `plan` instead. */
  restart(plan: LaunchPlan): void {
    if (this.#stopping || this.#finished) return;
    this.#next = plan;
    this.#options.log.info(`restarting ${show(this.#command)}`);
    if (this.running) this.#stop('SIGTERM');
    else this.#startNext();
  }

  /** Stops the command as a forwarded SIGTERM would; `done` resolves with its status. */
  stop(): void {
    this.#stopping = true;
    this.#next = undefined;
    if (this.running) this.#stop('SIGTERM');
  }

  /**
   * For a crash of secret-fetch itself: stops the command for good as a forwarded SIGTERM would
   * (SIGKILL after --grace) and resolves once it has exited and --cleanup ran, so that the command
   * is never left running without its supervisor.
   */
  async terminate(): Promise<void> {
    const pid = this.#child?.pid;
    if (this.running && pid !== undefined) {
      this.#options.log.warn(
        `stopping ${show(this.#command)} (pid ${pid}) before exiting: SIGTERM, then SIGKILL after --grace ${formatMs(this.#options.graceMs)}`,
      );
    }
    this.stop();
    await this.done.then(
      () => {},
      () => {},
    );
  }

  #forward(signal: ForwardedSignal): void {
    const stopping = signal === 'SIGTERM' || signal === 'SIGINT';
    if (stopping) {
      this.#stopping = true;
      this.#next = undefined;
    }
    const child = this.#child;
    if (child?.pid === undefined || !this.running) return;
    this.#options.log.debug(`forwarding ${signal} to ${this.#command} (pid ${child.pid})`);
    if (stopping) this.#stop(signal);
    else signalChild(child.pid, signal);
  }

  /** Sends `signal`, and SIGKILL if the same child is still running after --grace. */
  #stop(signal: 'SIGTERM' | 'SIGINT'): void {
    const child = this.#child;
    if (child?.pid === undefined) return;
    signalChild(child.pid, signal);
    if (this.#graceTimer !== undefined) return;
    const { graceMs, log } = this.#options;
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = undefined;
      if (child !== this.#child || !this.running || child.pid === undefined) return;
      log.warn(`${show(this.#command)} did not exit within --grace ${formatMs(graceMs)} of ${signal}: sending SIGKILL`);
      signalChild(child.pid, 'SIGKILL');
    }, graceMs);
  }

  #exited(child: Child, code: number | null, signal: NodeJS.Signals | number | null): void {
    if (child !== this.#child) return;
    if (this.#graceTimer !== undefined) clearTimeout(this.#graceTimer);
    this.#graceTimer = undefined;
    const { log } = this.#options;
    const number = typeof signal === 'string' ? constants.signals[signal] : signal;
    const status = number === null ? (code ?? 0) : 128 + number;
    const name = Object.entries(constants.signals).find(([, n]) => n === number)?.[0] ?? `signal ${number}`;
    log.debug(`${this.#command} ${number === null ? `exited ${status}` : `was killed by ${name} (${status})`}`);
    this.#giveTerminalBack(child);
    if (this.#next !== undefined && !this.#stopping) {
      this.#startNext();
      return;
    }
    this.#finish();
    this.#resolve(status);
  }

  /** The terminal back to secret-fetch's group once the command that had it has exited. */
  #giveTerminalBack(child: Child): void {
    const sys = this.#reaper?.sys;
    if (sys === undefined || this.#terminal === undefined || sys.foregroundGroup(this.#terminal) !== child.pid) return;
    try {
      sys.setForegroundGroup(this.#terminal, sys.processGroup(0));
    } catch {
      // Best effort: the shell that started secret-fetch takes its terminal back anyway.
    }
  }

  #startNext(): void {
    const next = this.#next as LaunchPlan;
    this.#next = undefined;
    try {
      this.start(next);
    } catch (error) {
      this.#fail(error);
    }
  }

  #fail(error: unknown): void {
    this.#finish();
    this.#reject(error);
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    removeFiles(this.#options.cleanup, this.#options.log);
  }
}

function signalChild(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // ESRCH: it exited in the meantime; its 'exit' event is on its way.
  }
}

function removeFiles(files: readonly WrittenFile[], log: Logger): void {
  for (const file of files) {
    try {
      file.remove();
      log.debug(`removed ${show(file.target)}`);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') log.warn(`could not remove ${show(file.target)}: ${code ?? String(error)}`);
    }
  }
}

function spawnFailure(command: string, error: unknown): CommandError {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const notFound = code === 'ENOENT';
  return new CommandError(
    command,
    `cannot start ${show(command)}: ${code ?? String(error)}`,
    notFound ? EXIT.commandNotFound : EXIT.notExecutable,
  );
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
