// Shared by the format tests: run a parser expecting a FormatError, check where it points, and
// check that nothing of the secret text leaks into any printable form of the error.

import { inspect } from 'node:util';
import { expect } from 'vitest';
import { EXIT, FormatError } from '../../src/errors.ts';
import type { SecretEntries } from '../../src/secret.ts';

/** Put this in every malformed input; it must never come back in an error. */
export const CANARY = 'CANARY-s3cr3t';
/** Pieces of the canary that must not leak either (a truncated snippet would still leak). */
const FRAGMENTS = ['CANARY', 's3cr3t', 'ANARY-s3'];

export type Parse = (text: string, name: string) => SecretEntries;

export interface ErrorCase {
  readonly title: string;
  readonly input: string;
  /** Where the error points; undefined for an error the parser cannot place (the message has no position). */
  readonly line: number | undefined;
  readonly col: number | undefined;
  /** What the message must say (the kind of thing found). */
  readonly kind: RegExp;
}

export function entriesOf(parsed: SecretEntries): Record<string, string> {
  return Object.fromEntries(parsed.entries());
}

/** Every printable form of an error, joined: what a log line or crash report could show. */
function printable(err: FormatError): string {
  return [
    err.message,
    err.hint ?? '',
    err.line,
    String(err),
    err.stack ?? '',
    inspect(err),
    JSON.stringify(err),
    JSON.stringify(Object.getOwnPropertyNames(err).map((k) => (err as unknown as Record<string, unknown>)[k])),
  ].join('\n');
}

/** Parses `input`, expecting a FormatError at line:col (or at no position) that says `kind` and leaks no canary. */
export function expectFormatError(parse: Parse, c: ErrorCase, name = 'secrets.file'): FormatError {
  expect(c.input, 'every error case must carry the canary').toContain(CANARY);
  let caught: unknown;
  try {
    parse(c.input, name);
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a FormatError').toBeInstanceOf(FormatError);
  const err = caught as FormatError;
  expect(err.exitCode).toBe(EXIT.format);
  const prefix = c.line === undefined ? `${name}: ` : `${name}:${c.line}:${c.col}: `;
  expect(err.message.startsWith(prefix), `${err.message} should start with ${prefix}`).toBe(true);
  expect(err.message).toMatch(c.kind);
  expect(err.cause).toBeUndefined();
  const text = printable(err);
  for (const fragment of FRAGMENTS) expect(text).not.toContain(fragment);
  return err;
}
