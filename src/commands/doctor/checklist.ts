// The doctor's report: one check per line (ok, FAIL, warn), the command that fixes each failure
// under it, and one exit code for the whole list. Pure, so rendering and the exit code are
// table-tested.

import { EXIT, SecretFetchError } from '../../errors.ts';
import type { Clients } from '../../google/clients.ts';
import type { Retry } from '../../retry.ts';

export type CheckStatus = 'ok' | 'fail' | 'warn';

export interface Check {
  /** What was checked: credentials, bucket, object, kms-key, file, out, source. */
  readonly check: string;
  /** The resource, as the run names it: gs://vault, a key name, a path. */
  readonly resource: string;
  readonly status: CheckStatus;
  /** One sentence that names the resource and what was found; never a secret. */
  readonly message: string;
  /** What to do: for a missing permission, the gcloud command with the names filled in. */
  readonly fix?: string;
  /** For a failure: the exit code of its class (errors.ts). */
  readonly exitCode?: number;
  /** Facts for --log-format json: email, generation, size... */
  readonly details?: Readonly<Record<string, string>>;
}

/** What the remote checks share: the run's clients and retry policy, and who grants name. */
export interface CheckContext {
  readonly clients: Clients;
  readonly retry: Retry;
  /** The IAM member the gcloud grants name: serviceAccount:EMAIL, or one with a placeholder. */
  readonly member: string;
}

export function ok(check: string, resource: string, message: string, details?: Record<string, string>): Check {
  return details === undefined
    ? { check, resource, status: 'ok', message }
    : { check, resource, status: 'ok', message, details };
}

export function warn(check: string, resource: string, message: string, fix?: string): Check {
  return fix === undefined
    ? { check, resource, status: 'warn', message }
    : { check, resource, status: 'warn', message, fix };
}

export function fail(check: string, resource: string, message: string, exitCode: number, fix?: string): Check {
  return fix === undefined
    ? { check, resource, status: 'fail', message, exitCode }
    : { check, resource, status: 'fail', message, exitCode, fix };
}

/** A failed check from an error: ours keep message, hint and exit code; others are named, never quoted. */
export function failFrom(check: string, resource: string, error: unknown, fix?: string): Check {
  if (error instanceof SecretFetchError) return fail(check, resource, error.message, error.exitCode, fix ?? error.hint);
  // A library's message may quote a response body: name the error, never print its message.
  const name = error instanceof Error ? error.name : typeof error;
  const code = (error as { code?: unknown } | null)?.code;
  return fail(
    check,
    resource,
    `${resource}: unexpected ${name}${code === undefined ? '' : ` (${String(code)})`} while checking`,
    EXIT.internal,
    'please report this with the command line you used',
  );
}

// The most important failure decides the exit code: without a permission nothing else can be
// seen properly (Cloud Storage answers 403, not 404, for an object one may not read), a missing
// resource next, then what was found but is wrong (a berglas object's metadata), then the
// output, then a service that failed (the check may pass on a retry).
const PRIORITY: readonly number[] = [
  EXIT.permission,
  EXIT.notFound,
  EXIT.integrity,
  EXIT.format,
  EXIT.output,
  EXIT.unavailable,
  EXIT.internal,
];

const CLASS_NAMES: Readonly<Record<number, string>> = {
  [EXIT.usage]: 'usage',
  [EXIT.permission]: 'permission',
  [EXIT.notFound]: 'not found',
  [EXIT.integrity]: 'integrity',
  [EXIT.format]: 'format',
  [EXIT.output]: 'output',
  [EXIT.unavailable]: 'unavailable',
  [EXIT.internal]: 'internal',
};

/** 0 when nothing failed (warnings do not count); otherwise the most important failure's code. */
export function exitCodeOf(checks: readonly Check[]): number {
  const codes = checks.flatMap((c) => (c.status === 'fail' ? [c.exitCode ?? EXIT.internal] : []));
  if (codes.length === 0) return 0;
  const rank = (code: number) => {
    const i = PRIORITY.indexOf(code);
    return i === -1 ? PRIORITY.length : i;
  };
  return codes.reduce((best, code) => (rank(code) < rank(best) ? code : best));
}

const LABELS: Readonly<Record<CheckStatus, string>> = { ok: 'ok', fail: 'FAIL', warn: 'warn' };

/** A check as text: `ok    message`, and an indented `fix:` line when there is a fix. */
export function renderCheck(check: Check): string {
  const line = `${LABELS[check.status].padEnd(5)} ${check.message}\n`;
  return check.fix === undefined ? line : `${line}      fix: ${check.fix}\n`;
}

/** A check as one JSON line, for --log-format json. */
export function renderCheckJson(check: Check): string {
  const { check: name, status, resource, message, fix, exitCode, details } = check;
  return `${JSON.stringify({ check: name, status, resource, message, fix, exitCode, details })}\n`;
}

/** The closing line of the text report: counts, and the exit code when something failed. */
export function renderSummary(checks: readonly Check[]): string {
  const count = (status: CheckStatus) => checks.filter((c) => c.status === status).length;
  const warned = count('warn');
  const counts = `${count('ok')} passed${warned === 0 ? '' : `, ${warned} warning${warned === 1 ? '' : 's'}`}`;
  const failed = count('fail');
  if (failed === 0) return `${counts}, none failed\n`;
  const code = exitCodeOf(checks);
  return `${failed} failed, ${counts}: exit ${code} (${CLASS_NAMES[code] ?? 'failure'})\n`;
}
