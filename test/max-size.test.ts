// --max-size SIZE / SECRET_FETCH_MAX_SIZE: the largest secret accepted from any source.

import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/errors.ts';
import { parseSize } from '../src/flags.ts';
import { parseInvocation } from '../src/options.ts';

function maxBytes(argv: string[], env: Record<string, string> = {}): number {
  const invocation = parseInvocation(['--source', 'file:/run/a.env', '--env', ...argv], env);
  if (invocation.kind !== 'run') throw new Error(`unexpected ${invocation.kind}`);
  return invocation.options.maxBytes;
}

describe('--max-size', () => {
  it('defaults to 64MiB', () => {
    expect(maxBytes([])).toBe(64 * 1024 * 1024);
  });

  it('reads the flag, then the variable', () => {
    expect(maxBytes(['--max-size', '64KiB'])).toBe(65_536);
    expect(maxBytes([], { SECRET_FETCH_MAX_SIZE: '1MiB' })).toBe(1_048_576);
    expect(maxBytes(['--max-size=2KiB'], { SECRET_FETCH_MAX_SIZE: '1MiB' })).toBe(2_048);
  });

  it.each([
    ['1', 1],
    ['4096', 4096],
    ['100B', 100],
    ['3KiB', 3 * 1024],
    ['16MiB', 16 * 1024 ** 2],
    ['1GiB', 1024 ** 3],
  ])('parses %s', (text, bytes) => {
    expect(parseSize('max-size', text)).toBe(bytes);
  });

  it.each(['', '0', '0KiB', '1.5MiB', '-1', '1kb', '1KB', '1 MiB', '2GiB', 'KiB', '64M', '99999999999'])(
    'refuses %j as a usage error',
    (text) => {
      expect(() => parseSize('max-size', text)).toThrow(UsageError);
      expect(() => parseSize('max-size', text)).toThrow(`--max-size ${text} is not a size`);
    },
  );
});
