// What each catchable signal does to secret-fetch, decided in one place (see the README's
// "Signals"). A signal left at its default would end the process without its cleanup: temp files
// stay on tmpfs, a supervised command is orphaned with its --out files. So every signal whose
// default is to terminate is handled:
//
// - while no command runs (fetching, or before exec): STOP_SIGNALS end the run as SIGTERM does
//   (staged files removed, exit 128+n); SIGUSR1 is ignored;
// - under --supervise: FORWARDED_SIGNALS go to the command (SIGTERM and SIGINT with --grace);
// - as a sidecar: see src/launch/sidecar.ts.
//
// Not handled: SIGKILL and SIGSTOP (they cannot be), SIGCHLD, SIGCONT, SIGTSTP and SIGURG (their
// default does not end the process), SIGPIPE and SIGXFSZ (Node ignores them), and the signals a
// fault raises (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS), which must keep their
// default, as tini leaves them. Node cannot catch real-time signals (SIGRTMIN+n) at all.
//
// Left out of every list where they cannot be caught (`handled`): a signal the parent had ignored
// (it stays ignored, src/launch/process-state.ts), and under Bun SIGPWR (JavaScriptCore stops its
// threads with it) and SIGSTKFLT (unknown to Bun; ignored by process-state.ts instead).

import { inheritedIgnored } from './process-state.ts';

/**
 * SIGUSR1 never reaches Node's inspector (scripts/build.ts catches it from the script's first line
 * and points the inspector at an address it cannot bind), and does nothing to secret-fetch
 * itself: it is forwarded to a supervised command, otherwise ignored.
 */
export const IGNORED_WITHOUT_COMMAND = 'SIGUSR1';

/** Handled like SIGTERM while no command runs: cleanup, then exit 128+n. */
export const STOP_SIGNALS = [
  'SIGTERM',
  'SIGINT',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR2',
  'SIGALRM',
  'SIGVTALRM',
  'SIGPROF',
  'SIGXCPU',
  'SIGIO',
  'SIGPWR',
  'SIGSTKFLT',
] as const satisfies readonly NodeJS.Signals[];

/** Forwarded to the command under --supervise; SIGTERM and SIGINT also start the --grace countdown. */
export const FORWARDED_SIGNALS = [
  ...STOP_SIGNALS,
  'SIGUSR1',
  'SIGWINCH',
  'SIGTTIN',
  'SIGTTOU',
] as const satisfies readonly NodeJS.Signals[];

export type StopSignal = (typeof STOP_SIGNALS)[number];
export type ForwardedSignal = (typeof FORWARDED_SIGNALS)[number];

/** Bun 1.4.5 cannot give these to a listener. */
const UNCATCHABLE_ON_BUN: readonly NodeJS.Signals[] = ['SIGPWR', 'SIGSTKFLT'];

/** The signals of `signals` that secret-fetch installs a listener for (see the head of this file). */
export function handled<S extends NodeJS.Signals>(signals: readonly S[]): S[] {
  const bun = process.versions.bun !== undefined;
  return signals.filter((signal) => !inheritedIgnored(signal) && !(bun && UNCATCHABLE_ON_BUN.includes(signal)));
}
