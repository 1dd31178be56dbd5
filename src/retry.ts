// One retry policy for every remote call: exponential backoff with full jitter on transient
// failures, bounded by attempts and by the run's deadline. The client libraries' own retries are
// switched off where we can, so there is exactly one policy to reason about.

import { SecretFetchError, UnavailableError } from './errors.ts';
import type { Logger } from './log.ts';

/** Turns a library error into one of ours; undefined means "not recognised". */
export type Classify = (error: unknown) => SecretFetchError | undefined;

export type Retry = <T>(what: string, attempt: () => Promise<T>, classify: Classify) => Promise<T>;

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 5_000 };

export function createRetry(options: {
  log: Logger;
  deadline: Deadline;
  /** Whose calls these are (e.g. `$DB_PASSWORD` for a reference), for warnings and the timeout. */
  owner?: string;
  policy?: RetryPolicy;
  random?: () => number;
}): Retry {
  const policy = options.policy ?? DEFAULT_RETRY_POLICY;
  const random = options.random ?? Math.random;
  const owner = options.owner === undefined ? '' : `${options.owner}: `;
  return async (what, attempt, classify) => {
    for (let n = 1; ; n++) {
      options.deadline.check(what);
      const call = { what, owner: options.owner };
      options.deadline.active.add(call);
      try {
        return await attempt();
      } catch (error) {
        if (error instanceof SecretFetchError) throw error;
        const failure = classify(error) ?? networkFailure(error, what);
        // Not recognised: a bug rather than weather, so it is not retried (the CLI reports it).
        if (failure === undefined) throw error;
        const backoff = Math.floor(random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (n - 1)));
        // The server's Retry-After is a floor on the wait, bounded only by the deadline.
        const after = retryAfterMs(error);
        const delay = after === undefined ? backoff : Math.max(backoff, after);
        const retryable = failure instanceof UnavailableError;
        if (!retryable || n >= policy.maxAttempts || delay >= options.deadline.remainingMs()) throw failure;
        options.log.warn(
          `${owner}attempt ${n} to ${what} failed (${failure.message}); retrying in ${delay} ms${after === undefined ? '' : ' (Retry-After)'}`,
        );
        await new Promise((resolve) => setTimeout(resolve, delay));
      } finally {
        options.deadline.active.delete(call);
      }
    }
  };
}

/**
 * The Retry-After header of a failed HTTP response, in ms: delta-seconds or an HTTP-date.
 * @google-cloud/storage's ApiError carries the response (`response.headers`); google-gax's
 * errors (Cloud KMS) carry no response headers, so for them this is always undefined.
 */
export function retryAfterMs(error: unknown, now = Date.now()): number | undefined {
  const headers = (error as { response?: { headers?: unknown } } | null)?.response?.headers;
  let value: unknown;
  if (headers instanceof Headers) value = headers.get('retry-after');
  else if (typeof headers === 'object' && headers !== null) {
    value = Object.entries(headers).find(([name]) => name.toLowerCase() === 'retry-after')?.[1];
  }
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^[0-9]{1,9}$/.test(text)) return Number(text) * 1000;
  const at = /[a-z]/i.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function networkFailure(error: unknown, what: string): UnavailableError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !NETWORK_CODES.has(code)) return undefined;
  return new UnavailableError(`could not ${what}: ${code}`, 'check the network and the endpoint', { cause: error });
}

/** The overall --timeout: every stage checks it, and the CLI races the whole run against it. */
export class Deadline {
  readonly #at: number;
  readonly #timeoutMs: number;
  /** What is in flight now, and for whom, so a timeout can say what it was waiting for. */
  readonly active = new Set<{ readonly what: string; readonly owner: string | undefined }>();

  constructor(timeoutMs: number, now = Date.now()) {
    this.#timeoutMs = timeoutMs;
    this.#at = now + timeoutMs;
  }

  remainingMs(): number {
    return Math.max(0, this.#at - Date.now());
  }

  check(what: string): void {
    if (this.remainingMs() <= 0) throw this.expired(what);
  }

  /** Rejects when the deadline passes, naming what was still in flight. */
  async expire(): Promise<never> {
    await new Promise((resolve) => setTimeout(resolve, this.remainingMs()).unref());
    const [call] = this.active;
    throw this.expired(call?.what ?? 'fetch the secrets', call?.owner);
  }

  /** `owner` prefixes the message, as errors from a reference name its variable first. */
  expired(what: string, owner?: string): UnavailableError {
    return new UnavailableError(
      `${owner === undefined ? '' : `${owner}: `}could not ${what} within the --timeout of ${formatMs(this.#timeoutMs)}`,
      'the service is slow or unreachable; check the endpoint, or raise --timeout',
    );
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
