// The retry policy with a deadline on a fake clock, a fixed `random` and fake timers: full-jitter
// backoff, Retry-After as a floor on the wait, the deadline (not an attempt count) as the bound.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createKmsClient } from '../src/decrypt/kms.ts';
import { EXIT, PermissionError, SecretFetchError, UnavailableError } from '../src/errors.ts';
import { createStorageClient } from '../src/google/storage.ts';
import type { Logger } from '../src/log.ts';
import {
  attemptLimitMs,
  type Classify,
  createRetry,
  currentAttemptSignal,
  Deadline,
  type RetryPolicy,
  retryAfterMs,
} from '../src/retry.ts';
import { startTestServers } from './servers/start.ts';

/** An error shaped like @google-cloud/storage's ApiError: the HTTP response rides along. */
function apiError(code: number, headers: Record<string, string> | Headers = {}) {
  return Object.assign(new Error(`HTTP ${code}`), { code, response: { headers } });
}

const classify: Classify = (error) => {
  const code = (error as { code?: number }).code;
  if (code === 403) return new PermissionError('denied');
  if (code === 429 || code === 503) return new UnavailableError(`answered ${code}`, 'it is down');
  return undefined;
};

function setup(options: { random?: number; timeout?: number; base?: number; maxAttempts?: number } = {}) {
  const warnings: string[] = [];
  const log: Logger = { debug: () => {}, info: () => {}, warn: (m) => warnings.push(m), error: () => {} };
  // The deadline reads the faked Date.now, so it runs out as the fake timers advance.
  const deadline = new Deadline(options.timeout ?? 60_000, () => Date.now());
  const policy: RetryPolicy = {
    baseDelayMs: options.base ?? 100,
    maxDelayMs: 5_000,
    maxAttempts: options.maxAttempts ?? 100,
  };
  const retry = createRetry({ log, deadline, policy, random: () => options.random ?? 0 });
  return { retry, warnings, deadline };
}

/**
 * An attempt that fails with these errors in turn, then succeeds (or, given a function, fails with
 * what it returns for ever); each attempt takes `ms` of fake time.
 */
function failing(errors: unknown[] | (() => unknown), ms = 0) {
  const calls: number[] = [];
  const attempt = async () => {
    calls.push(Date.now());
    vi.setSystemTime(Date.now() + ms);
    const next = typeof errors === 'function' ? errors() : errors.shift();
    if (next !== undefined) throw next;
    return 'ok';
  };
  return { attempt, calls };
}

const delays = (warnings: string[]) => warnings.map((w) => Number(/retrying in (\d+) ms/.exec(w)?.[1]));

/** Runs `retry` to its end on fake timers and returns the error it rejected with. */
async function rejection(done: Promise<unknown>): Promise<Error> {
  const settled = done.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: Error) => error,
  );
  await vi.runAllTimersAsync();
  return settled;
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('backoff', () => {
  it('waits a full-jitter exponential delay between attempts', async () => {
    const { retry, warnings } = setup({ random: 0.5 });
    const { attempt, calls } = failing([apiError(503), apiError(503), apiError(503)]);
    const done = retry('read it', attempt, classify);
    await vi.runAllTimersAsync();
    await expect(done).resolves.toBe('ok');
    expect(delays(warnings)).toEqual([50, 100, 200]);
    expect(calls.map((t) => t - 1_000_000)).toEqual([0, 50, 150, 350]);
    expect(warnings[0]).toBe('attempt 1 to read it failed (answered 503); retrying in 50 ms');
  });

  it('keeps retrying past any small count while the deadline allows, capped at 5 s a wait', async () => {
    const { retry, warnings } = setup({ random: 0.999 });
    const { attempt, calls } = failing(Array.from({ length: 12 }, () => apiError(429)));
    const done = retry('read it', attempt, classify);
    await vi.runAllTimersAsync();
    await expect(done).resolves.toBe('ok');
    expect(calls).toHaveLength(13);
    expect(delays(warnings)).toEqual([99, 199, 399, 799, 1598, 3196, 4995, 4995, 4995, 4995, 4995, 4995]);
    expect(warnings.at(-1)).toMatch(/^attempt 12 to read it failed \(answered 429\); retrying in 4995 ms$/);
  });

  it('a storm that outlasts the deadline: gives up in time, naming the last failure, the attempts and the fix', async () => {
    const { retry, warnings } = setup({ random: 0.5, timeout: 10_000 });
    const { attempt, calls } = failing(() => apiError(503), 20);
    const error = await rejection(retry('read it', attempt, classify));
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as UnavailableError).line).toBe(
      `answered 503 after ${calls.length} attempts; no time left within the --timeout of 10s (it is down, or raise --timeout)`,
    );
    // Every wait fitted in the deadline, and the last attempt started with time left to run.
    expect(calls.at(-1)).toBeLessThanOrEqual(1_000_000 + 10_000 - 100);
    expect(Date.now()).toBeLessThanOrEqual(1_000_000 + 10_000);
    expect(calls.length).toBeGreaterThan(5);
    expect(warnings).toHaveLength(calls.length - 1);
  });

  it('stops at the safety cap on attempts even when the deadline is far', async () => {
    const { retry, warnings } = setup({ random: 0.5, maxAttempts: 7 });
    const { attempt, calls } = failing(() => apiError(503));
    const error = await rejection(retry('read it', attempt, classify));
    expect(error.message).toBe('answered 503 after 7 attempts, the most secret-fetch makes for one request');
    expect(calls).toHaveLength(7);
    expect(warnings).toHaveLength(6);
  });

  it('when the deadline passes during an attempt, says what was in flight and how it failed before', async () => {
    const { retry, deadline } = setup({ timeout: 1_000 });
    let n = 0;
    const attempt = async () => {
      if (++n === 1) throw apiError(503);
      return new Promise<never>(() => {}); // the second attempt stalls
    };
    const race = Promise.race([retry('read it', attempt, classify), deadline.expire()]);
    const error = await rejection(race);
    expect((error as UnavailableError).line).toBe(
      'could not read it within the --timeout of 1s: answered 503 after 1 attempt (it is down, or raise --timeout)',
    );
  });

  it('never retries a failure that is not transient, even with Retry-After', async () => {
    const { retry, warnings } = setup();
    const { attempt, calls } = failing([apiError(403, { 'retry-after': '1' })]);
    await expect(retry('read it', attempt, classify)).rejects.toThrow(PermissionError);
    expect(calls).toHaveLength(1);
    expect(warnings).toEqual([]);
  });
});

describe('a stalled attempt (attemptLimit)', () => {
  it('may take a third of what is left, at least 2 s; with less left, the deadline alone bounds it', () => {
    expect(attemptLimitMs(30_000)).toBe(10_000);
    expect(attemptLimitMs(9_000)).toBe(3_000);
    expect(attemptLimitMs(5_000)).toBe(2_000);
    expect(attemptLimitMs(2_000)).toBeUndefined();
    expect(attemptLimitMs(1_000)).toBeUndefined();
  });

  it('is abandoned at its limit, its request aborted, and retried: one stall costs seconds, not the deadline', async () => {
    const warnings: string[] = [];
    const log: Logger = { debug: () => {}, info: () => {}, warn: (m) => warnings.push(m), error: () => {} };
    const deadline = new Deadline(30_000, () => Date.now());
    const retry = createRetry({ log, deadline, random: () => 0, attemptLimit: true });
    const signals: (AbortSignal | undefined)[] = [];
    let calls = 0;
    const attempt = async () => {
      signals.push(currentAttemptSignal());
      calls++;
      if (calls === 1) return new Promise<string>(() => {}); // a connection that never answers
      return 'ok';
    };
    const done = retry('read it', attempt, classify);
    await vi.advanceTimersByTimeAsync(10_001);
    await expect(done).resolves.toBe('ok');
    expect(calls).toBe(2);
    // Abandoned at 10 s of the 30 s, and tried again at once.
    expect(Date.now() - 1_000_000).toBe(10_001);
    expect(signals[0]?.aborted).toBe(true);
    expect(signals[1]?.aborted).toBe(false);
    expect(warnings).toEqual(['attempt 1 to read it failed (no answer within 10s; abandoned); retrying in 0 ms']);
  });

  it('ends, if every attempt stalls, with the deadline naming the stalls', async () => {
    const deadline = new Deadline(9_000, () => Date.now());
    const limited = createRetry({
      log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
      deadline,
      random: () => 0,
      attemptLimit: true,
    });
    // Limits of 3 s, 2 s and 2 s; with 2 s left, the last attempt is the deadline's to stop.
    const race = Promise.race([limited('read it', () => new Promise(() => {}), classify), deadline.expire()]);
    const error = await rejection(race);
    expect(error.message).toBe(
      'could not read it within the --timeout of 9s: no answer within 2s; abandoned after 3 attempts',
    );
  });

  it('is not limited without attemptLimit (the operator commands, which write): the deadline decides', async () => {
    const { retry, deadline } = setup({ timeout: 30_000 });
    let calls = 0;
    const race = Promise.race([
      retry(
        'write it',
        () => {
          calls++;
          return new Promise(() => {});
        },
        classify,
      ),
      deadline.expire(),
    ]).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(((await race) as Error).message).toMatch(/could not write it within the --timeout of 30s/);
    expect(calls).toBe(1);
  });
});

describe('a host name that does not resolve', () => {
  // getaddrinfo's answer: ENOTFOUND (no such name) and EAI_FAIL (the resolver failed for good) are
  // not weather, unlike EAI_AGAIN; they were not recognised at all and ended as 70 "internal error".
  it.each(['ENOTFOUND', 'EAI_FAIL'])('%s is final: 69 at once, naming the host and the fix', async (code) => {
    const { retry, warnings } = setup();
    const dns = Object.assign(new Error(`getaddrinfo ${code} storage.exmaple.com`), {
      code,
      hostname: 'storage.exmaple.com',
    });
    const { attempt, calls } = failing(() => dns);
    const error = await rejection(retry('read gs://b/o', attempt, classify));
    expect(error).toBeInstanceOf(SecretFetchError);
    expect((error as SecretFetchError).exitCode).toBe(EXIT.unavailable);
    expect(error.message).toBe(`could not read gs://b/o: the host name storage.exmaple.com does not resolve (${code})`);
    expect((error as SecretFetchError).hint).toMatch(/host name/);
    expect(calls).toHaveLength(1);
    expect(warnings).toEqual([]);
  });

  it('EAI_AGAIN (the resolver could not answer yet) is still retried', async () => {
    const { retry, warnings } = setup();
    const { attempt, calls } = failing([Object.assign(new Error('getaddrinfo EAI_AGAIN h'), { code: 'EAI_AGAIN' })]);
    const done = retry('read it', attempt, classify);
    await vi.runAllTimersAsync();
    await expect(done).resolves.toBe('ok');
    expect(calls).toHaveLength(2);
    expect(warnings).toHaveLength(1);
  });
});

describe("an owner (a reference's variable)", () => {
  it('leads every warning, and the timeout that stops its call', async () => {
    const warnings: string[] = [];
    const log: Logger = { debug: () => {}, info: () => {}, warn: (m) => warnings.push(m), error: () => {} };
    const deadline = new Deadline(1_000, () => Date.now());
    const retry = createRetry({ log, deadline, random: () => 0.5, owner: '$DB_PASSWORD' });
    const { attempt } = failing([apiError(503)]);
    const done = retry('access sm://p/db#latest', attempt, classify);
    await vi.runAllTimersAsync();
    await expect(done).resolves.toBe('ok');
    expect(warnings).toEqual([
      '$DB_PASSWORD: attempt 1 to access sm://p/db#latest failed (answered 503); retrying in 50 ms',
    ]);

    const expiry = deadline.expire();
    const settled = expect(expiry).rejects.toThrow(
      /^\$DB_PASSWORD: could not access sm:\/\/p\/db#latest within the --timeout of 1s$/,
    );
    // A call that never answers: the run's deadline is what stops it.
    void retry('access sm://p/db#latest', () => new Promise(() => {}), classify);
    await vi.advanceTimersByTimeAsync(1_000);
    await settled;
  });
});

describe('Retry-After', () => {
  it('waits at least the seconds the server asks for', async () => {
    const { retry, warnings } = setup({ random: 0 });
    const { attempt, calls } = failing([apiError(429, { 'Retry-After': '3' })]);
    const done = retry('read it', attempt, classify);
    await vi.advanceTimersByTimeAsync(2_999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await expect(done).resolves.toBe('ok');
    expect(calls).toHaveLength(2);
    expect(warnings).toEqual(['attempt 1 to read it failed (answered 429); retrying in 3000 ms (Retry-After)']);
  });

  it('keeps the backoff when it is longer than Retry-After', async () => {
    const { retry, warnings } = setup({ random: 0.9, base: 4_000 });
    const { attempt } = failing([apiError(503, { 'retry-after': '1' })]);
    const done = retry('read it', attempt, classify);
    await vi.runAllTimersAsync();
    await expect(done).resolves.toBe('ok');
    expect(delays(warnings)).toEqual([3_600]);
  });

  it('reads an HTTP-date and a Headers object', async () => {
    const { retry, warnings } = setup();
    const when = new Date(Date.now() + 2_000).toUTCString();
    const { attempt } = failing([apiError(503, new Headers({ 'Retry-After': when }))]);
    const done = retry('read it', attempt, classify);
    await vi.runAllTimersAsync();
    await expect(done).resolves.toBe('ok');
    expect(delays(warnings)).toEqual([2_000]);
  });

  it('gives up at once when Retry-After reaches past the deadline', async () => {
    const { retry, warnings } = setup({ timeout: 5_000 });
    const { attempt, calls } = failing([apiError(429, { 'retry-after': '10' })]);
    const error = await rejection(retry('read it', attempt, classify));
    expect((error as UnavailableError).line).toBe(
      'answered 429 after 1 attempt; its Retry-After of 10s ends past the --timeout of 5s (it is down, or raise --timeout)',
    );
    expect(calls).toHaveLength(1);
    expect(warnings).toEqual([]);
  });

  it('parses what it can and ignores the rest', () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    const at = (headers: unknown) => retryAfterMs({ response: { headers } }, now);
    expect(at({ 'retry-after': '0' })).toBe(0);
    expect(at({ 'retry-after': ' 7 ' })).toBe(7_000);
    expect(at({ 'retry-after': ['2'] })).toBe(2_000);
    expect(at({ 'retry-after': 'Tue, 01 Jan 2030 00:00:04 GMT' })).toBe(4_000);
    expect(at({ 'retry-after': 'Mon, 31 Dec 2029 00:00:00 GMT' })).toBe(0);
    for (const bad of ['-1', '1.5', 'soon', '', '12345678901']) expect(at({ 'retry-after': bad })).toBeUndefined();
    expect(at({})).toBeUndefined();
    // google-gax errors (Cloud KMS) carry a code and details, but no HTTP response headers.
    expect(retryAfterMs({ code: 8, metadata: undefined })).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
    expect(retryAfterMs('x')).toBeUndefined();
  });
});

describe('what the client libraries expose', () => {
  it('Cloud Storage and Cloud KMS errors carry Retry-After', async () => {
    vi.useRealTimers();
    const servers = await startTestServers();
    try {
      servers.gcs.putObject('b', 'o', 'x');
      const storage = await createStorageClient(servers.gcs.url);
      const caught = async (promise: Promise<unknown>) =>
        promise.then(
          () => undefined,
          (error: unknown) => error,
        );
      servers.gcs.failNext({ method: 'GET' }, [{ status: 429, headers: { 'Retry-After': '3' } }]);
      expect(retryAfterMs(await caught(storage.bucket('b').file('o').getMetadata()))).toBe(3_000);
      servers.gcs.failNext({ method: 'GET', query: { alt: 'media' } }, [
        { status: 503, headers: { 'Retry-After': '2' } },
      ]);
      expect(retryAfterMs(await caught(storage.bucket('b').file('o').download()))).toBe(2_000);

      const key = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
      servers.kms.createKey(key);
      const kms = await createKmsClient(servers.kms.url);
      servers.kms.failNext({ method: 'POST' }, [{ status: 429, headers: { 'Retry-After': '3' } }]);
      const error = await caught(kms.decrypt({ name: key, ciphertext: Buffer.from('x') }));
      expect((error as { code?: unknown }).code).toBe(8);
      expect(retryAfterMs(error)).toBe(3_000);
    } finally {
      await servers.close();
    }
  });
});
