import { describe, expect, it } from 'vitest';
import { EXIT, FormatError, SecretFetchError, UsageError } from '../../src/errors.ts';
import { detectFormat, FORMATS, type Format, parseEntries } from '../../src/formats/index.ts';
import { CANARY, entriesOf } from './helpers.ts';

describe('detectFormat', () => {
  const table: [string, Format][] = [
    ['.env', 'dotenv'],
    ['x.env', 'dotenv'],
    ['app/prod.env', 'dotenv'],
    ['/abs/path/.env', 'dotenv'],
    ['secrets.ENV', 'dotenv'],
    ['.env.enc', 'dotenv'],
    ['prod.env.encrypted', 'dotenv'],
    ['secrets.json', 'json'],
    ['secrets.JSON.ENC', 'json'],
    ['dir/secrets.json.encrypted', 'json'],
    ['secrets.yaml', 'yaml'],
    ['secrets.yml', 'yaml'],
    ['Secrets.YML.Enc', 'yaml'],
    ['secrets.toml', 'toml'],
    ['credentials.toml.enc', 'toml'],
    ['gs://vault/app/Credentials.TOML.ENC', 'toml'],
    ['pyproject.toml.bak', 'raw'],
    ['settings.cfg', 'pyfile'],
    ['settings.py', 'pyfile'],
    ['dir/secrets.cfg.enc', 'pyfile'],
    ['gs://bucket/app/secrets.cfg.enc', 'pyfile'],
    ['config.PY', 'pyfile'],
    ['key.pem', 'raw'],
    ['secrets', 'raw'],
    ['secrets.enc', 'raw'],
    ['secrets.encrypted', 'raw'],
    ['.enc', 'raw'],
    ['', 'raw'],
    ['dir.json/secret', 'raw'],
    ['env', 'raw'],
    ['secrets.envx', 'raw'],
    ['secrets.json.bak', 'raw'],
    ['secrets.enc.json', 'json'],
    ['a.cfg.enc.enc', 'raw'],
    ['.env.local', 'raw'],
    ['trailing/', 'raw'],
  ];
  it.each(table)('%j -> %s', (name, format) => {
    expect(detectFormat(name)).toBe(format);
  });
});

describe('FORMATS', () => {
  it('lists every format once, raw last', () => {
    expect(FORMATS).toEqual(['dotenv', 'json', 'yaml', 'toml', 'pyfile', 'raw']);
  });
});

describe('parseEntries', () => {
  const table: [Exclude<Format, 'raw'>, string][] = [
    ['dotenv', 'A=1\nB=two\n'],
    ['json', '{"A": 1, "B": "two"}'],
    ['yaml', 'A: 1\nB: two\n'],
    ['toml', 'A = 1\nB = "two"\n'],
    ['pyfile', "A = 1\nB = 'two'\n"],
  ];
  it.each(table)('dispatches %s', async (format, text) => {
    expect(entriesOf(await parseEntries(format, text, 'f'))).toEqual({ A: '1', B: 'two' });
  });

  it('names the file in errors', async () => {
    await expect(parseEntries('json', '[]', 'gs://b/app/s.json')).rejects.toThrow(/^gs:\/\/b\/app\/s\.json:1:1: /);
  });

  it('refuses raw at run time (it has no entries)', async () => {
    await expect(parseEntries('raw' as Exclude<Format, 'raw'>, 'x', 'f')).rejects.toThrow(UsageError);
  });

  it.each(['dotenv', 'json', 'yaml', 'toml', 'pyfile'] as const)(
    '%s: a foreign error is replaced, never passed on',
    async (format) => {
      const hostile = {
        charCodeAt() {
          throw new Error(`something quoting ${CANARY}`);
        },
      } as unknown as string;
      let caught: unknown;
      try {
        await parseEntries(format, hostile, 'f');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(SecretFetchError);
      expect(caught).not.toBeInstanceOf(FormatError);
      const err = caught as SecretFetchError;
      expect(err.exitCode).toBe(EXIT.internal);
      expect(err.message).toBe(
        `f: the ${format} parser failed unexpectedly (details withheld: they could contain the secret)`,
      );
      expect(err.cause).toBeUndefined();
      expect(`${err.stack} ${err.line}`).not.toContain('CANARY');
    },
  );

  it('returns redacting SecretEntries', async () => {
    const parsed = await parseEntries('dotenv', 'TOKEN=hunter2\n', 'f');
    expect(String(parsed)).toBe('[redacted]');
    expect(JSON.stringify(parsed)).toBe('"[redacted]"');
    expect(parsed.names()).toEqual(['TOKEN']);
  });
});
