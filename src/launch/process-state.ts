// What secret-fetch's own process inherits and holds, and what the command gets of it (issue 14):
//
// - While it holds secrets the process is not dumpable (PR_SET_DUMPABLE 0: no core, no ptrace or
//   /proc/PID/mem by its user) and its soft RLIMIT_CORE is 0; the command gets the core limit
//   secret-fetch inherited (execve makes it dumpable again by itself).
// - Signals the parent had ignored (nohup's SIGHUP) stay ignored, in secret-fetch and in an exec'd
//   command, as if it had been exec'd directly. Node resets them at start-up (then nothing is left
//   to keep); Bun keeps them.
// - File descriptors inherited from 3 up reach the command: Bun marks every one close-on-exec at
//   start-up, so they are cleared again here (Node leaves them alone).
// - SIGSTKFLT, which Bun cannot catch, is ignored instead of ending the process without cleanup.
//
// Everything but reading /proc needs src/launch/sys.ts (Bun); under Node those steps are skipped.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { loadSys, type Rlimit, type Sys } from './sys.ts';

export interface Inherited {
  /** Signals ignored when secret-fetch started, except SIGPIPE and SIGXFSZ (every runtime ignores those itself). */
  readonly ignoredSignals: ReadonlySet<number>;
  /** Descriptors from 3 up that the parent passed (Bun's own event loop descriptors left out). */
  readonly fds: readonly number[];
}

/** Bun opens these before any of our code; an inherited epoll or eventfd descriptor is not passed on. */
const RUNTIME_FDS = /^anon_inode:\[(eventpoll|eventfd)\]$/;
/**
 * Variables that make Bun open descriptors of its own before our code (an inspector's socket, a
 * preload script's files): with one set, which descriptors were inherited cannot be told apart,
 * so none is passed on (the restart of runtime-env.ts then drops the variable).
 */
const OPENS_FDS = /^(BUN_INSPECT|BUN_OPTIONS$)/;
const RUNTIME_IGNORED = new Set<number>([constants.signals.SIGPIPE, constants.signals.SIGXFSZ]);
const SIGSTKFLT = constants.signals.SIGSTKFLT;

let inherited: Inherited = { ignoredSignals: new Set(), fds: [] };
let guarded: { sys: Sys; core: Rlimit } | undefined;

/** Reads what the parent passed, before secret-fetch opens or catches anything. Run first. */
export function readInherited(): Inherited {
  inherited = { ignoredSignals: ignoredSignals(), fds: process.versions.bun === undefined ? [] : passedFds() };
  return inherited;
}

/** The signals the parent had ignored, by number: a command started by sys.spawn keeps them ignored. */
export function inheritedIgnoredSignals(): ReadonlySet<number> {
  return inherited.ignoredSignals;
}

/** Whether the parent had `signal` ignored: secret-fetch then leaves it ignored. */
export function inheritedIgnored(signal: NodeJS.Signals): boolean {
  return inherited.ignoredSignals.has(constants.signals[signal]);
}

/**
 * Makes the process non-dumpable with a soft core limit of 0, keeps inherited descriptors open
 * across exec, and ignores SIGSTKFLT under Bun. Does nothing where there is no sys module (Node).
 */
export async function guardProcess(): Promise<void> {
  const sys = await loadSys();
  if (sys === undefined || guarded !== undefined) return;
  sys.setDumpable(false);
  const core = sys.getRlimit('core');
  sys.setRlimit('core', { soft: 0n, hard: core.hard });
  guarded = { sys, core };
  for (const fd of inherited.fds) {
    try {
      sys.setCloseOnExec(fd, false);
    } catch {
      // Closed since it was listed (EBADF): nothing to pass on.
    }
  }
  if (!inherited.ignoredSignals.has(SIGSTKFLT)) sys.ignoreSignal(SIGSTKFLT);
}

/**
 * execve(2) for the exec and the restart. The command's core limit and SIGSTKFLT are what
 * secret-fetch inherited, SIGPIPE and SIGXFSZ are back to their defaults, and (under Bun) the
 * libc call keeps the inherited descriptors open, which Bun's process.execve would close. execve
 * makes the new program dumpable again by itself. Never returns.
 */
export function replaceProcess(file: string, argv: readonly string[], env: Record<string, string>): never {
  const execve = process.execve?.bind(process) as
    | ((f: string, a: readonly string[], e: Record<string, string>) => never)
    | undefined;
  if (guarded === undefined) {
    if (execve === undefined) throw new Error('process.execve is missing'); // checked by the callers first
    return execve(file, argv, env);
  }
  const { sys, core } = guarded;
  sys.setRlimit('core', core);
  if (!inherited.ignoredSignals.has(SIGSTKFLT)) sys.defaultSignal(SIGSTKFLT);
  for (const signal of RUNTIME_IGNORED) sys.defaultSignal(signal);
  return sys.execve(file, argv, env);
}

/**
 * Runs `start` (a spawn) with the inherited core limit, then sets it back to 0: a child inherits
 * resource limits, not the dumpable flag, and the runtime's spawn resets its signals itself.
 */
export function withCommandLimits<T>(start: () => T): T {
  if (guarded === undefined) return start();
  const { sys, core } = guarded;
  sys.setRlimit('core', core);
  try {
    return start();
  } finally {
    sys.setRlimit('core', { soft: 0n, hard: core.hard });
  }
}

/**
 * The stdio of a spawned command: 0-2 inherited, and each inherited descriptor from 3 up at its
 * own number (Bun's spawn closes every other one in the child; Node's leaves them open anyway).
 */
export function commandStdio(): ('inherit' | 'ignore' | number)[] {
  const stdio: ('inherit' | 'ignore' | number)[] = ['inherit', 'inherit', 'inherit'];
  for (const fd of inherited.fds) {
    while (stdio.length < fd) stdio.push('ignore');
    stdio[fd] = fd;
  }
  return stdio;
}

function ignoredSignals(): Set<number> {
  let mask: bigint;
  try {
    const hex = /^SigIgn:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    mask = hex === undefined ? 0n : BigInt(`0x${hex}`);
  } catch {
    return new Set(); // no /proc: nothing known
  }
  const ignored = new Set<number>();
  for (let n = 1; n <= 64; n++) if ((mask >> BigInt(n - 1)) & 1n && !RUNTIME_IGNORED.has(n)) ignored.add(n);
  return ignored;
}

function passedFds(): number[] {
  if (Object.keys(process.env).some((name) => OPENS_FDS.test(name))) return [];
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const fds: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (fd < 3) continue;
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the descriptor readdirSync itself had open
    }
    if (!RUNTIME_FDS.test(target)) fds.push(fd);
  }
  return fds;
}
