import { describe, expect, it } from 'vitest';
import { EXIT, type SecretFetchError } from '../../src/errors.ts';
import { berglasKeyName } from '../../src/sources/berglas.ts';

const KEY = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
const WHERE = 'berglas://vault/app.env';

function refusal(metadata: Record<string, string>, expected?: string): SecretFetchError {
  try {
    berglasKeyName(metadata, WHERE, expected);
  } catch (error) {
    return error as SecretFetchError;
  }
  throw new Error('expected a refusal');
}

describe('berglasKeyName', () => {
  it.each([
    [{ 'berglas-kms-key': KEY }, KEY],
    [{ 'berglas-kms-key': `${KEY}/cryptoKeyVersions/3`, 'berglas-secret': '1' }, KEY],
  ])('takes the key from the metadata, without a key version: %o', (metadata, key) => {
    expect(berglasKeyName(metadata, WHERE, undefined)).toBe(key);
    expect(berglasKeyName(metadata, WHERE, KEY)).toBe(key);
  });

  it.each([
    [{}, EXIT.format, /^berglas:\/\/vault\/app\.env is not a berglas secret: its metadata has no berglas-kms-key/],
    [{ 'berglas-kms-key': '' }, EXIT.format, /has no berglas-kms-key/],
    [{ 'berglas-kms-key': 'projects/p/keyRings/r' }, EXIT.format, /its berglas-kms-key metadata is not a KMS key name/],
    [{ 'berglas-kms-key': `${KEY}\nsecond line` }, EXIT.format, /is not a KMS key name/],
    [{ 'berglas-kms-key': `${KEY} ` }, EXIT.format, /is not a KMS key name/],
    [
      { 'berglas-kms-key': `${KEY}2` },
      EXIT.integrity,
      /names the key .*\/k2 in its berglas-kms-key metadata, not the --kms-key .*\/k$/,
    ],
  ])('refuses %o', (metadata, code, message) => {
    const error = refusal(metadata, KEY);
    expect(error.exitCode).toBe(code);
    expect(error.message).toMatch(message);
    expect(error.line).not.toContain('\n');
  });

  it('names the pin as it was given: ?kms-key= in a reference', () => {
    let error: SecretFetchError | undefined;
    try {
      berglasKeyName({ 'berglas-kms-key': `${KEY}2` }, WHERE, KEY, '?kms-key=');
    } catch (caught) {
      error = caught as SecretFetchError;
    }
    expect(error?.line).toMatch(/metadata, not the \?kms-key= .*\/k \(.*on purpose, change \?kms-key=; if not/);
  });
});
