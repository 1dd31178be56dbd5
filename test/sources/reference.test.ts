import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { describeSource, parseSourceRef, sourceFileName } from '../../src/sources/reference.ts';

describe('parseSourceRef', () => {
  it.each([
    ['gs://vault/secrets.cfg.enc', { scheme: 'gs', bucket: 'vault', object: 'secrets.cfg.enc' }],
    [
      'gs://vault/dir/sub/app.env#1700000000000001',
      { scheme: 'gs', bucket: 'vault', object: 'dir/sub/app.env', generation: '1700000000000001' },
    ],
    ['gs://my.bucket_1-x/o#2', { scheme: 'gs', bucket: 'my.bucket_1-x', object: 'o', generation: '2' }],
    ['gs://vault/name with spaces', { scheme: 'gs', bucket: 'vault', object: 'name with spaces' }],
    ['file:/etc/secrets/app.env', { scheme: 'file', path: '/etc/secrets/app.env' }],
    ['file:relative/app.env', { scheme: 'file', path: 'relative/app.env' }],
    ['file:///etc/secrets/a%20b.env', { scheme: 'file', path: '/etc/secrets/a b.env' }],
    ['/var/run/secrets/app.json', { scheme: 'file', path: '/var/run/secrets/app.json' }],
    ['app.env', { scheme: 'file', path: 'app.env' }],
    ['C:odd-but-a-path', { scheme: 'file', path: 'C:odd-but-a-path' }],
  ])('%s', (uri, ref) => {
    expect(parseSourceRef(uri)).toEqual(ref);
  });

  it.each([
    ['', /empty/],
    ['gs://', /not a valid bucket name/],
    ['gs://vault', /no object name/],
    ['gs://vault/', /no object name/],
    ['gs://Vault/o', /not a valid bucket name/],
    ['gs://ab/o', /not a valid bucket name/],
    ['gs://a..b/o', /not a valid bucket name/],
    ['gs://vault/o#', /not an object generation/],
    ['gs://vault/o#01', /not an object generation/],
    ['gs://vault/o#latest', /not an object generation/],
    ['file:', /no path/],
    ['file://relative', /absolute path/],
    ['https://example.com/x', /https:\/\/ is not supported/],
    ['sm://p/s', /sm:\/\/ is not supported/],
  ])('refuses %j', (uri, message) => {
    expect(() => parseSourceRef(uri)).toThrow(UsageError);
    expect(() => parseSourceRef(uri)).toThrow(message);
  });

  it('names what format detection and messages use', () => {
    const gs = parseSourceRef('gs://vault/dir/app.env.enc#5');
    expect(sourceFileName(gs)).toBe('dir/app.env.enc');
    expect(describeSource(gs)).toBe('gs://vault/dir/app.env.enc#5');
    expect(sourceFileName(parseSourceRef('file:/x/y.json'))).toBe('/x/y.json');
  });
});
