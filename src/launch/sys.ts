// The system calls that the JavaScript runtime does not offer (issue 14): an init's reaping,
// PR_SET_DUMPABLE, resource limits, close-on-exec, a signal's disposition. One small module behind a
// typed interface, reached through Bun's `bun:ffi` and the C library; loaded only by the code that
// uses it, and only when the binary runs on Bun. Under Node (the unit tests, the npm package, the
// SEA candidate) `loadSys()` gives undefined and each caller keeps to what Node can do.

import { constants } from 'node:os';

/** A resource limit; RLIM_INFINITY is 2^64 - 1. */
export interface Rlimit {
  readonly soft: bigint;
  readonly hard: bigint;
}

export type LimitedResource = 'core' | 'nofile';

export interface Sys {
  /** prctl(PR_SET_DUMPABLE): a non-dumpable process leaves no core and cannot be ptraced or read through /proc by its user. */
  setDumpable(dumpable: boolean): void;
  /** prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to this process, not to PID 1. */
  setChildSubreaper(): void;
  getRlimit(resource: LimitedResource): Rlimit;
  setRlimit(resource: LimitedResource, limit: Rlimit): void;
  /**
   * Reaps every exited child that `isRuntimes` does not claim, and returns their PIDs. A claimed one
   * (the command, which the runtime waits for itself) is never reaped, and a claimed zombie ends the
   * round: the kernel hands exited children out in order, so the rest waits for the next round.
   */
  reapOrphans(isRuntimes: (pid: number) => boolean): number[];
  /** Binds the calls for a supervised command (spawn, wait, process groups); false where this C library lacks one. */
  bindProcessCalls(): boolean;
  /**
   * posix_spawn(3) of `file` in a process group of its own (as tini starts its child), with every
   * signal but `keepIgnored` at its default and an empty signal mask; descriptors without
   * close-on-exec stay open. Returns the PID; throws a SysError (its errno from the exec, e.g.
   * ENOENT) when the program cannot be started. Nothing waits for it but waitChild.
   */
  spawn(
    file: string,
    argv: readonly string[],
    env: Readonly<Record<string, string>>,
    options: { readonly cwd?: string | undefined; readonly keepIgnored: ReadonlySet<number> },
  ): number;
  /** waitpid(pid, WNOHANG): how it ended once it has, else undefined. */
  waitChild(pid: number): { code: number | null; signal: number | null } | undefined;
  /** tcsetpgrp(3) with SIGTTOU blocked (a background caller would be stopped by it). */
  setForegroundGroup(fd: number, group: number): void;
  /** getpgid(2): the process group of `pid` (0: this process). */
  processGroup(pid: number): number;
  /** tcgetpgrp(3): the foreground process group of the terminal `fd` is, or undefined when it is not this process's terminal. */
  foregroundGroup(fd: number): number | undefined;
  /** fcntl(F_GETFD / F_SETFD) FD_CLOEXEC. */
  closeOnExec(fd: number): boolean;
  setCloseOnExec(fd: number, on: boolean): void;
  /** signal(n, SIG_IGN): for a signal the runtime cannot catch, so that it no longer ends the process. */
  ignoreSignal(signal: number): void;
  /** signal(n, SIG_DFL): the disposition back to the kernel's default (before an exec). */
  defaultSignal(signal: number): void;
  /**
   * execve(2) with an empty signal mask: unlike Bun's process.execve, it leaves descriptors without
   * close-on-exec open for the new program. Returns only by throwing (the program is unchanged).
   */
  execve(file: string, argv: readonly string[], env: Readonly<Record<string, string>>): never;
}

/** A failed system call: `call` and the errno's name, e.g. "prctl(PR_SET_DUMPABLE): EPERM". */
export class SysError extends Error {
  readonly errno: number;
  /** The errno's name, as Node's errors carry it: "ENOENT". */
  readonly code: string;
  constructor(call: string, errno: number) {
    super(`${call}: ${errnoName(errno)}`);
    this.name = 'SysError';
    this.errno = errno;
    this.code = errnoName(errno);
  }
}

function errnoName(errno: number): string {
  return Object.entries(constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
}

const PR_SET_DUMPABLE = 4;
const PR_SET_CHILD_SUBREAPER = 36;
const RESOURCE: Record<LimitedResource, number> = { core: 4, nofile: 7 };
const P_ALL = 0;
const WNOHANG = 1;
const WEXITED = 4;
const WNOWAIT = 0x0100_0000;
const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
/** sigset_t (glibc: 1024 bits). */
const SIGSET = 128;
/** posix_spawnattr_t and posix_spawn_file_actions_t are smaller than this on every glibc. */
const SPAWN_STRUCT = 512;
const SETPGROUP = 0x02;
const SETSIGDEF = 0x04;
const SETSIGMASK = 0x08;
/** SIGKILL and SIGSTOP take no disposition (glibc would leave its own 32 and 33 ignored unless listed). */
const NO_DISPOSITION = new Set([9, 19]);
const SIG_DFL = 0n;
const SIG_IGN = 1n;
/** siginfo_t is 128 bytes; si_pid is the int at byte 16 on x86-64 and arm64 alike. */
const SIGINFO_INTS = 32;
const SI_PID = 4;
const ECHILD = constants.errno.ECHILD;

let loaded: Promise<Sys | undefined> | undefined;
let opened: Sys | undefined;

/** The system calls, or undefined where there is no FFI (Node) or no glibc to call. */
export function loadSys(): Promise<Sys | undefined> {
  loaded ??= open().then((sys) => {
    opened = sys;
    return sys;
  });
  return loaded;
}

/** What loadSys() gave, for synchronous callers once it has been awaited; undefined before. */
export function loadedSys(): Sys | undefined {
  return opened;
}

async function open(): Promise<Sys | undefined> {
  if (process.versions.bun === undefined || process.platform !== 'linux') return undefined;
  const { dlopen, ptr, read } = await import('bun:ffi');
  let libc: ReturnType<typeof bind>;
  try {
    libc = bind(dlopen);
  } catch {
    return undefined; // not glibc (libc.so.6): the caller does without
  }
  const c = libc.symbols;
  let exec: ReturnType<typeof bindExec>['symbols'] | undefined;
  let processes: ReturnType<typeof bindProcesses>['symbols'] | undefined;
  const x = () => {
    exec ??= bindExec(dlopen).symbols;
    return exec;
  };
  const p = () => {
    processes ??= bindProcesses(dlopen).symbols;
    return processes;
  };
  const errno = () => read.i32(c.__errno_location());
  const check = (call: string, result: number | bigint): void => {
    if (Number(result) === -1) throw new SysError(call, errno());
  };
  const limit = new BigUint64Array(2);
  const info = new Int32Array(SIGINFO_INTS);

  return {
    setDumpable: (dumpable) =>
      check('prctl(PR_SET_DUMPABLE)', c.prctl(PR_SET_DUMPABLE, dumpable ? 1n : 0n, 0n, 0n, 0n)),
    setChildSubreaper: () => check('prctl(PR_SET_CHILD_SUBREAPER)', c.prctl(PR_SET_CHILD_SUBREAPER, 1n, 0n, 0n, 0n)),
    getRlimit(resource) {
      check(`getrlimit(${resource})`, c.getrlimit(RESOURCE[resource], ptr(limit)));
      return { soft: limit[0] ?? 0n, hard: limit[1] ?? 0n };
    },
    setRlimit(resource, { soft, hard }) {
      limit[0] = soft;
      limit[1] = hard;
      check(`setrlimit(${resource})`, c.setrlimit(RESOURCE[resource], ptr(limit)));
    },
    reapOrphans(isRuntimes) {
      const reaped: number[] = [];
      for (;;) {
        info.fill(0);
        if (p().waitid(P_ALL, 0, ptr(info), WEXITED | WNOHANG | WNOWAIT) === -1) {
          const code = errno();
          if (code === ECHILD) return reaped; // no children at all
          throw new SysError('waitid', code);
        }
        const pid = info[SI_PID] ?? 0;
        if (pid === 0 || isRuntimes(pid)) return reaped;
        check('waitpid', p().waitpid(pid, null, WNOHANG));
        reaped.push(pid);
      }
    },
    bindProcessCalls() {
      try {
        p();
        return true;
      } catch {
        return false;
      }
    },
    spawn(file, argv, env, { cwd, keepIgnored }) {
      const keep: Buffer[] = [];
      const cString = (text: string) => {
        const bytes = Buffer.from(`${text}\0`);
        keep.push(bytes);
        return bytes;
      };
      const pointers = (strings: readonly string[]) => {
        const array = new BigUint64Array(strings.length + 1);
        strings.forEach((text, i) => {
          array[i] = BigInt(ptr(cString(text)));
        });
        return array;
      };
      const attr = new BigUint64Array(SPAWN_STRUCT / 8);
      const actions = new BigUint64Array(SPAWN_STRUCT / 8);
      // Each array stays referenced until the call that reads it has returned.
      const defaults = new BigUint64Array(SIGSET / 8);
      const empty = new BigUint64Array(SIGSET / 8);
      for (let n = 1; n <= 64; n++) {
        if (!keepIgnored.has(n) && !NO_DISPOSITION.has(n))
          defaults[(n - 1) >> 6] = (defaults[(n - 1) >> 6] ?? 0n) | (1n << BigInt((n - 1) & 63));
      }
      const spawnCheck = (call: string, result: number) => {
        if (result !== 0) throw new SysError(call, result); // these return the errno itself
      };
      spawnCheck('posix_spawnattr_init', p().posix_spawnattr_init(ptr(attr)));
      spawnCheck('posix_spawn_file_actions_init', p().posix_spawn_file_actions_init(ptr(actions)));
      try {
        spawnCheck(
          'posix_spawnattr_setflags',
          p().posix_spawnattr_setflags(ptr(attr), SETPGROUP | SETSIGDEF | SETSIGMASK),
        );
        spawnCheck('posix_spawnattr_setpgroup', p().posix_spawnattr_setpgroup(ptr(attr), 0));
        spawnCheck('posix_spawnattr_setsigdefault', p().posix_spawnattr_setsigdefault(ptr(attr), ptr(defaults)));
        spawnCheck('posix_spawnattr_setsigmask', p().posix_spawnattr_setsigmask(ptr(attr), ptr(empty)));
        if (cwd !== undefined) {
          spawnCheck(`chdir(${cwd})`, p().posix_spawn_file_actions_addchdir_np(ptr(actions), ptr(cString(cwd))));
        }
        const pid = new Int32Array(1);
        const path = cString(file);
        const args = pointers(argv);
        const envp = pointers(Object.entries(env).map(([name, value]) => `${name}=${value}`));
        spawnCheck(
          `posix_spawn(${file})`,
          p().posix_spawn(ptr(pid), ptr(path), ptr(actions), ptr(attr), ptr(args), ptr(envp)),
        );
        return pid[0] ?? 0;
      } finally {
        p().posix_spawnattr_destroy(ptr(attr));
        p().posix_spawn_file_actions_destroy(ptr(actions));
      }
    },
    waitChild(pid) {
      const status = new Int32Array(1);
      const result = p().waitpid(pid, ptr(status), WNOHANG);
      check(`waitpid(${pid})`, result);
      if (result === 0) return undefined;
      const word = status[0] ?? 0;
      const signal = word & 0x7f;
      return signal === 0 ? { code: (word >> 8) & 0xff, signal: null } : { code: null, signal };
    },
    setForegroundGroup(fd, group) {
      const ttou = new BigUint64Array(SIGSET / 8);
      ttou[0] = 1n << BigInt(constants.signals.SIGTTOU - 1);
      const previous = new BigUint64Array(SIGSET / 8);
      check('pthread_sigmask', p().sigprocmask(SIG_BLOCK, ptr(ttou), ptr(previous)));
      try {
        check(`tcsetpgrp(${fd})`, p().tcsetpgrp(fd, group));
      } finally {
        p().sigprocmask(SIG_SETMASK, ptr(previous), null);
      }
    },
    processGroup(pid) {
      const group = p().getpgid(pid);
      check(`getpgid(${pid})`, group);
      return group;
    },
    foregroundGroup(fd) {
      const group = p().tcgetpgrp(fd);
      return group === -1 ? undefined : group; // ENOTTY, EBADF: no terminal there
    },
    closeOnExec(fd) {
      const flags = c.fcntl(fd, F_GETFD, 0);
      check(`fcntl(${fd}, F_GETFD)`, flags);
      return (flags & FD_CLOEXEC) !== 0;
    },
    setCloseOnExec(fd, on) {
      const flags = c.fcntl(fd, F_GETFD, 0);
      check(`fcntl(${fd}, F_GETFD)`, flags);
      check(`fcntl(${fd}, F_SETFD)`, c.fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC));
    },
    ignoreSignal: (signal) => check(`signal(${signal}, SIG_IGN)`, c.signal(signal, SIG_IGN)),
    defaultSignal: (signal) => check(`signal(${signal}, SIG_DFL)`, c.signal(signal, SIG_DFL)),
    execve(file, argv, env) {
      // The strings stay referenced by `keep` until execve returns (only on failure).
      const keep: Buffer[] = [];
      const pointers = (strings: readonly string[]) => {
        const array = new BigUint64Array(strings.length + 1);
        strings.forEach((text, i) => {
          const bytes = Buffer.from(`${text}\0`);
          keep.push(bytes);
          array[i] = BigInt(ptr(bytes));
        });
        return array;
      };
      const path = Buffer.from(`${file}\0`);
      const args = pointers(argv);
      const envp = pointers(Object.entries(env).map(([name, value]) => `${name}=${value}`));
      const empty = new BigUint64Array(SIGSET / 8);
      check('sigprocmask', x().sigprocmask(SIG_SETMASK, ptr(empty), null));
      check(`execve(${file})`, x().execve(ptr(path), ptr(args), ptr(envp)));
      throw new SysError(`execve(${file}) returned`, 0); // unreachable: it returns only with -1
    },
  };
}

// Each symbol costs bun:ffi a compiled trampoline (about 0.2 MiB of RSS), so the calls are bound
// in three groups, each when first needed: every run, an exec, a supervised command.
function bind(dlopen: typeof import('bun:ffi').dlopen) {
  // prctl and fcntl are variadic in C; on x86-64 and arm64 Linux integer arguments pass alike.
  return dlopen('libc.so.6', {
    prctl: { args: ['i32', 'u64', 'u64', 'u64', 'u64'], returns: 'i32' },
    getrlimit: { args: ['i32', 'ptr'], returns: 'i32' },
    setrlimit: { args: ['i32', 'ptr'], returns: 'i32' },
    fcntl: { args: ['i32', 'i32', 'i32'], returns: 'i32' },
    signal: { args: ['i32', 'u64'], returns: 'i64' },
    __errno_location: { args: [], returns: 'ptr' },
  });
}

function bindExec(dlopen: typeof import('bun:ffi').dlopen) {
  return dlopen('libc.so.6', {
    sigprocmask: { args: ['i32', 'ptr', 'ptr'], returns: 'i32' },
    execve: { args: ['ptr', 'ptr', 'ptr'], returns: 'i32' },
  });
}

function bindProcesses(dlopen: typeof import('bun:ffi').dlopen) {
  return dlopen('libc.so.6', {
    waitid: { args: ['i32', 'i32', 'ptr', 'i32'], returns: 'i32' },
    waitpid: { args: ['i32', 'ptr', 'i32'], returns: 'i32' },
    getpgid: { args: ['i32'], returns: 'i32' },
    tcgetpgrp: { args: ['i32'], returns: 'i32' },
    tcsetpgrp: { args: ['i32', 'i32'], returns: 'i32' },
    sigprocmask: { args: ['i32', 'ptr', 'ptr'], returns: 'i32' },
    posix_spawn: { args: ['ptr', 'ptr', 'ptr', 'ptr', 'ptr', 'ptr'], returns: 'i32' },
    posix_spawnattr_init: { args: ['ptr'], returns: 'i32' },
    posix_spawnattr_destroy: { args: ['ptr'], returns: 'i32' },
    posix_spawnattr_setflags: { args: ['ptr', 'i32'], returns: 'i32' },
    posix_spawnattr_setpgroup: { args: ['ptr', 'i32'], returns: 'i32' },
    posix_spawnattr_setsigdefault: { args: ['ptr', 'ptr'], returns: 'i32' },
    posix_spawnattr_setsigmask: { args: ['ptr', 'ptr'], returns: 'i32' },
    posix_spawn_file_actions_init: { args: ['ptr'], returns: 'i32' },
    posix_spawn_file_actions_destroy: { args: ['ptr'], returns: 'i32' },
    // glibc 2.29 and later (Debian 11, distroless, UBI 9); without it, supervising keeps to the runtime's spawn.
    posix_spawn_file_actions_addchdir_np: { args: ['ptr', 'ptr'], returns: 'i32' },
  });
}
