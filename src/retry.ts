// One retry policy for every remote call: exponential backoff with full jitter on transient
// failures, for as long as the run's deadline allows. The client libraries' own retries are
// switched off where we can, so there is exactly one policy to reason about.

import { SecretFetchError, UnavailableError } from './errors.ts';
import type { Logger } from './log.ts';
import { transportFailure } from './transport-failures.ts';

/** Turns a library error into one of ours; undefined means "not recognised". */
export type Classify = (error: unknown) => SecretFetchError | undefined;

/**
 * Calls `attempt` until it succeeds, a failure is not transient, or the deadline leaves no room for
 * another wait. `hint` is the fix named if the deadline passes before any attempt has failed.
 */
export type Retry = <T>(what: string, attempt: () => Promise<T>, classify: Classify, hint?: string) => Promise<T>;

export interface RetryPolicy {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /**
   * A safety cap per call. The deadline is what ends retrying: under the default --timeout of 30s
   * a call that keeps failing makes about 17 attempts (the mean full-jitter waits add up to 30s).
   * The cap bounds what one run sends a service that stays down under a long --timeout (up to 24h),
   * and the warning lines it logs: 100 attempts are about 4 minutes of waits at the 5 s ceiling.
   */
  readonly maxAttempts: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { baseDelayMs: 100, maxDelayMs: 5_000, maxAttempts: 100 };

/**
 * The per-attempt limit (attemptLimit): an attempt may take a third of what is left of the
 * deadline, but never less than this; when that is all that is left, the deadline alone bounds it.
 */
export const ATTEMPT_FLOOR_MS = 2_000;

/** How long one attempt may take with `remainingMs` left, or undefined when only the deadline bounds it. */
export function attemptLimitMs(remainingMs: number): number | undefined {
  const limit = Math.max(ATTEMPT_FLOOR_MS, Math.floor(remainingMs / 3));
  return limit < remainingMs ? limit : undefined;
}

export function createRetry(options: {
  log: Logger;
  deadline: Deadline;
  /** Whose calls these are (e.g. `$DB_PASSWORD` for a reference), for warnings and the timeout. */
  owner?: string;
  policy?: RetryPolicy;
  random?: () => number;
  /**
   * Abandon an attempt that takes longer than attemptLimitMs and retry it on a fresh connection, so
   * one stalled connection costs seconds, not the deadline. For reads only: a write abandoned after
   * it was done could not be told from one never made.
   */
  attemptLimit?: boolean;
}): Retry {
  const policy = options.policy ?? DEFAULT_RETRY_POLICY;
  const random = options.random ?? Math.random;
  const { deadline, log } = options;
  const owner = options.owner === undefined ? '' : `${options.owner}: `;
  return async (what, attempt, classify, hint) => {
    const operation = deadline.begin(what, hint, options.owner);
    try {
      for (let n = 1; ; n++) {
        deadline.check(operation);
        const limit = options.attemptLimit ? attemptLimitMs(deadline.remainingMs()) : undefined;
        try {
          return limit === undefined ? await attempt() : await limited(attempt, limit);
        } catch (error) {
          if (error instanceof SecretFetchError) throw error;
          const failure =
            error instanceof AttemptStalled
              ? new UnavailableError(`no answer within ${formatMs(error.limitMs)}; abandoned`, undefined, {
                  cause: error,
                })
              : (classify(error) ?? transportFailure(error, what));
          // Not recognised: a bug rather than weather, so it is not retried (the CLI reports it).
          if (failure === undefined) throw error;
          if (!(failure instanceof UnavailableError)) throw failure;
          operation.attempts = n;
          operation.last = failure;
          // How long we may wait and still leave the next attempt baseDelayMs to run before the deadline.
          const room = deadline.remainingMs() - policy.baseDelayMs;
          // The server's Retry-After is a floor on the wait, bounded only by the deadline.
          const after = retryAfterMs(error);
          if (room <= 0 || (after ?? 0) > room) throw deadline.giveUp(operation, after);
          // Full jitter over the exponential ceiling, drawn within the room the deadline leaves.
          const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (n - 1), room);
          const delay = Math.max(Math.floor(random() * ceiling), after ?? 0);
          if (n >= policy.maxAttempts) {
            throw new UnavailableError(
              `${failure.message} after ${n} attempts, the most secret-fetch makes for one request`,
              failure.hint,
              { cause: failure },
            );
          }
          log.warn(
            `${owner}attempt ${n} to ${what} failed (${failure.message}); retrying in ${delay} ms${after === undefined ? '' : ' (Retry-After)'}`,
          );
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      }
    } finally {
      deadline.end(operation);
    }
  };
}

/** An attempt abandoned at its limit (attemptLimit). */
class AttemptStalled extends Error {
  readonly limitMs: number;

  constructor(limitMs: number) {
    super(`no answer within ${limitMs} ms`);
    this.name = 'AttemptStalled';
    this.limitMs = limitMs;
  }
}

type AsyncLocalStorageType = InstanceType<typeof import('node:async_hooks').AsyncLocalStorage<AbortSignal>>;
let attempts: AsyncLocalStorageType | undefined;

/**
 * The signal of the attempt this code runs in, aborted when the attempt is abandoned at its limit
 * (google/rest.ts closes the request's connection with it); undefined outside a limited attempt.
 */
export function currentAttemptSignal(): AbortSignal | undefined {
  return attempts?.getStore();
}

/** `attempt`, run with its own signal, or AttemptStalled once `limitMs` passes without an answer. */
async function limited<T>(attempt: () => Promise<T>, limitMs: number): Promise<T> {
  // Loaded with the first limited attempt: the local path never pays for it.
  attempts ??= new (process.getBuiltinModule('node:async_hooks').AsyncLocalStorage)<AbortSignal>();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new AttemptStalled(limitMs);
      controller.abort(error);
      reject(error);
    }, limitMs);
  });
  const running = (attempts as AsyncLocalStorageType).run(controller.signal, attempt);
  // An abandoned attempt that fails later is nobody's business.
  running.catch(() => {});
  try {
    return await Promise.race([running, stalled]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The Retry-After header of a failed HTTP response, in ms: delta-seconds or an HTTP-date.
 * The thin clients' errors (GoogleApiError, GcsApiError) and @google-cloud/storage's ApiError carry
 * the response (`response.headers`); google-gax's errors (the Secret Manager library, used only by
 * operator commands) carry none, so for them it is undefined.
 */
export function retryAfterMs(error: unknown, now = Date.now()): number | undefined {
  const headers = (error as { response?: { headers?: unknown } } | null)?.response?.headers;
  let value: unknown;
  // A fetch Headers (without naming the global, which would load undici) or node's plain object.
  if (typeof (headers as { get?: unknown } | null)?.get === 'function') {
    value = (headers as { get(name: string): unknown }).get('retry-after');
  } else if (typeof headers === 'object' && headers !== null) {
    value = Object.entries(headers).find(([name]) => name.toLowerCase() === 'retry-after')?.[1];
  }
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^[0-9]{1,9}$/.test(text)) return Number(text) * 1000;
  const at = /[a-z]/i.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A call in flight under a deadline: what it does, and how its attempts went so far. */
export class Operation {
  readonly what: string;
  /** The fix to name if the deadline passes before any attempt failed. */
  readonly hint: string | undefined;
  /** Whose call it is (a reference's `$VARIABLE`), named first if the deadline passes. */
  readonly owner: string | undefined;
  attempts = 0;
  last: UnavailableError | undefined;

  constructor(what: string, hint?: string, owner?: string) {
    this.what = what;
    this.hint = hint;
    this.owner = owner;
  }
}

/** The overall --timeout: every stage checks it, and the CLI races the whole run against it. */
export class Deadline {
  readonly #at: number;
  readonly #timeoutMs: number;
  readonly #clock: () => number;
  /** What is in flight now, so a timeout can say what it was waiting for and what went wrong. */
  readonly #inFlight = new Set<Operation>();

  /** `clock` is monotonic by default, so a step of the wall clock neither stretches nor cuts the deadline. */
  constructor(timeoutMs: number, clock: () => number = monotonicMs) {
    this.#timeoutMs = timeoutMs;
    this.#clock = clock;
    this.#at = clock() + timeoutMs;
  }

  remainingMs(): number {
    return Math.max(0, this.#at - this.#clock());
  }

  begin(what: string, hint?: string, owner?: string): Operation {
    const operation = new Operation(what, hint, owner);
    this.#inFlight.add(operation);
    return operation;
  }

  end(operation: Operation): void {
    this.#inFlight.delete(operation);
  }

  check(operation: Operation | string): void {
    if (this.remainingMs() <= 0) throw this.expired(operation);
  }

  /** `work`, or the deadline's rejection if it passes first (naming `what` if given, else what is in flight). */
  race<T>(work: Promise<T>, what?: string): Promise<T> {
    const expiry =
      what === undefined
        ? this.expire()
        : this.expire().catch(() => {
            throw this.expired(what);
          });
    return Promise.race([work, expiry]);
  }

  /** Rejects when the deadline passes, naming what was still in flight. */
  async expire(): Promise<never> {
    await new Promise((resolve) => setTimeout(resolve, this.remainingMs()).unref());
    throw this.expired([...this.#inFlight][0] ?? 'fetch the secrets');
  }

  /** The deadline passed while `operation` was running or waiting to retry: say what, and what went wrong. */
  expired(operation: Operation | string): UnavailableError {
    const { what, last, attempts, hint, owner } = typeof operation === 'string' ? new Operation(operation) : operation;
    const within = `${owner === undefined ? '' : `${owner}: `}could not ${what} within the --timeout of ${formatMs(this.#timeoutMs)}`;
    return new UnavailableError(
      last === undefined ? within : `${within}: ${last.message} after ${plural(attempts, 'attempt')}`,
      orRaiseTimeout(last?.hint ?? hint ?? 'the service is slow or unreachable; check the endpoint'),
      { cause: last },
    );
  }

  /** Retrying `operation` would wait past the deadline (`retryAfterMs`: the wait the server asked for). */
  giveUp(operation: Operation, retryAfterMs?: number): UnavailableError {
    const last = operation.last as UnavailableError;
    const timeout = `the --timeout of ${formatMs(this.#timeoutMs)}`;
    const why =
      retryAfterMs === undefined
        ? `no time left within ${timeout}`
        : `its Retry-After of ${formatMs(retryAfterMs)} ends past ${timeout}`;
    return new UnavailableError(
      `${last.message} after ${plural(operation.attempts, 'attempt')}; ${why}`,
      orRaiseTimeout(last.hint ?? 'the service is failing; try again later'),
      { cause: last },
    );
  }
}

function orRaiseTimeout(hint: string): string {
  return /--timeout/.test(hint) ? hint : `${hint}, or raise --timeout`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** A monotonic clock in ms; process.hrtime, not `performance`, whose first use loads perf_hooks at start. */
function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
