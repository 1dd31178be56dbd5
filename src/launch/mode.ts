// The launch modes: what happens once the secrets are in place, each mode with only its own
// settings, parsed from the main run's flags (the cross-flag rules live here, with the modes).

import { constants } from 'node:os';
import { UsageError } from '../errors.ts';
import { type FlagValues, optionalString, parseDuration } from '../flags.ts';

/** --on-change: send a signal, restart the command (new environment), or exit. */
export type OnChange =
  | { readonly kind: 'signal'; readonly signal: NodeJS.Signals }
  | { readonly kind: 'restart' }
  | { readonly kind: 'exit' };

/**
 * What happens once the secrets are in place, each mode with only its own settings:
 * - init: no command; write the outputs and exit 0 (an init container);
 * - exec: replace secret-fetch with the command;
 * - supervise: run the command as a child and stay (--supervise), optionally polling (--refresh);
 * - sidecar: no command, but --refresh: keep the --out files fresh for another container.
 */
export type Launch =
  | { readonly kind: 'init' }
  | { readonly kind: 'exec'; readonly command: readonly string[]; readonly chdir: string | undefined }
  | {
      readonly kind: 'supervise';
      readonly command: readonly string[];
      readonly chdir: string | undefined;
      /** After forwarding SIGTERM/SIGINT, how long the child has before SIGKILL (--grace). */
      readonly graceMs: number;
      /** Remove the --out files when the command exits (--cleanup). */
      readonly cleanup: boolean;
      /** --refresh and --on-change; undefined: never poll. */
      readonly refresh: { readonly intervalMs: number; readonly onChange: OnChange } | undefined;
    }
  | { readonly kind: 'sidecar'; readonly refresh: { readonly intervalMs: number } };

/** The launch mode and its settings, with every flag that does not belong to the mode refused. */
export function parseLaunch(
  values: FlagValues,
  command: string[] | undefined,
  hasOut: boolean,
  hasSource: boolean,
  /** The environment holds references (which --refresh watches too). */
  hasReferences = false,
): Launch {
  const supervise = values.supervise === true;
  if (supervise && command === undefined) {
    throw new UsageError('--supervise without a command', 'give the command to supervise after --');
  }
  // Sidecar: --refresh without a command keeps the files fresh for another container.
  const sidecar = command === undefined && values.refresh !== undefined;
  for (const flag of ['grace', 'cleanup', 'refresh'] as const) {
    if (flag === 'refresh' && sidecar) continue;
    if (values[flag] !== undefined && values[flag] !== false && !supervise) {
      throw new UsageError(`--${flag} needs --supervise`, `add --supervise, or drop --${flag}`);
    }
  }
  if (values.cleanup === true && !hasOut) {
    throw new UsageError('--cleanup without --out: there is no file to remove', 'drop --cleanup, or add --out PATH');
  }
  const refresh = optionalString(values.refresh);
  if (values['on-change'] !== undefined && refresh === undefined) {
    throw new UsageError('--on-change needs --refresh', 'add --refresh DURATION, or drop --on-change');
  }
  if (sidecar && values['on-change'] !== undefined) {
    throw new UsageError('--on-change without a command: a sidecar has nothing to notify', 'drop --on-change');
  }
  if (sidecar && !hasOut) {
    throw new UsageError('--refresh without a command needs --out: the sidecar shares files', 'add --out PATH');
  }
  if (refresh !== undefined && !hasSource && !hasReferences) {
    throw new UsageError(
      '--refresh without --source or a reference: there is nothing to refresh',
      'add --source (or a reference such as DB_PASSWORD=sm://PROJECT/SECRET), or drop --refresh',
    );
  }
  if (command === undefined && values.chdir !== undefined) {
    throw new UsageError('--chdir without a command', 'give the command after --, or drop --chdir');
  }
  const graceMs = parseDuration('grace', optionalString(values.grace) ?? '10s');
  const intervalMs = refresh === undefined ? undefined : parseDuration('refresh', refresh);
  const onChange = parseOnChange(optionalString(values['on-change']) ?? 'SIGHUP');
  if (command === undefined) {
    return Object.freeze(
      intervalMs === undefined ? { kind: 'init' } : { kind: 'sidecar', refresh: Object.freeze({ intervalMs }) },
    );
  }
  const chdir = optionalString(values.chdir);
  if (!supervise) return Object.freeze({ kind: 'exec', command: Object.freeze([...command]), chdir });
  return Object.freeze({
    kind: 'supervise',
    command: Object.freeze([...command]),
    chdir,
    graceMs,
    cleanup: values.cleanup === true,
    refresh: intervalMs === undefined ? undefined : Object.freeze({ intervalMs, onChange }),
  });
}

export function parseOnChange(text: string): OnChange {
  if (text === 'restart' || text === 'exit') return Object.freeze({ kind: text });
  const name = text.toUpperCase().startsWith('SIG') ? text.toUpperCase() : `SIG${text.toUpperCase()}`;
  if (!Object.hasOwn(constants.signals, name) || name === 'SIGKILL' || name === 'SIGSTOP') {
    throw new UsageError(
      `--on-change ${text} is not a signal, restart or exit`,
      'write e.g. SIGHUP, SIGUSR1, restart or exit',
    );
  }
  return Object.freeze({ kind: 'signal', signal: name as NodeJS.Signals });
}
