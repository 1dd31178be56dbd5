import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import {
  atVersion,
  describeSource,
  isPinned,
  parseSourceRef,
  type SecretManagerRef,
  secretVersionName,
  sourceFileName,
} from '../../src/sources/reference.ts';

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
    ['berglas://vault/api-key', { scheme: 'berglas', bucket: 'vault', object: 'api-key' }],
    ['berglas://vault/d/k#17', { scheme: 'berglas', bucket: 'vault', object: 'd/k', generation: '17' }],
    ['sm://my-project/db-password', { scheme: 'sm', project: 'my-project', secret: 'db-password', version: 'latest' }],
    ['sm://my-project/db_password#3', { scheme: 'sm', project: 'my-project', secret: 'db_password', version: '3' }],
    ['sm://123456789/s#prod', { scheme: 'sm', project: '123456789', secret: 's', version: 'prod' }],
    ['sm://projects/my-project/secrets/s', { scheme: 'sm', project: 'my-project', secret: 's', version: 'latest' }],
    [
      'sm://projects/my-project/secrets/s/versions/7',
      { scheme: 'sm', project: 'my-project', secret: 's', version: '7' },
    ],
    [
      'projects/my-project/secrets/s/versions/latest',
      { scheme: 'sm', project: 'my-project', secret: 's', version: 'latest' },
    ],
    ['projects/my-project/secrets/s', { scheme: 'file', path: 'projects/my-project/secrets/s' }],
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
    ['vault://p/s', /vault:\/\/ is not supported/],
    ['berglas://vault', /no object name/],
    ['berglas://vault/o#x', /not an object generation/],
    ['sm://my-project', /not a Secret Manager secret name/],
    ['sm://my-project/a/b', /not a Secret Manager secret name/],
    ['sm://p/s', /"p" is not a project ID/],
    ['sm://My-Project/s', /not a project ID/],
    ['sm://my-project/bad.secret', /not a secret ID/],
    ['sm://my-project/s#', /not a secret version/],
    ['sm://my-project/s#0', /not a secret version/],
    ['sm://projects/my-project/secrets/s/versions/a.b', /not a secret version/],
  ])('refuses %j', (uri, message) => {
    expect(() => parseSourceRef(uri)).toThrow(UsageError);
    expect(() => parseSourceRef(uri)).toThrow(message);
  });

  it('names what format detection and messages use', () => {
    const gs = parseSourceRef('gs://vault/dir/app.env.enc#5');
    expect(sourceFileName(gs)).toBe('dir/app.env.enc');
    expect(describeSource(gs)).toBe('gs://vault/dir/app.env.enc#5');
    expect(sourceFileName(parseSourceRef('file:/x/y.json'))).toBe('/x/y.json');
    const sm = parseSourceRef('projects/my-project/secrets/app-env/versions/4');
    expect(sourceFileName(sm)).toBe('app-env');
    expect(describeSource(sm)).toBe('sm://my-project/app-env#4');
    expect(secretVersionName(parseSourceRef('sm://my-project/app-env') as SecretManagerRef)).toBe(
      'projects/my-project/secrets/app-env/versions/latest',
    );
    expect(describeSource(parseSourceRef('berglas://vault/k#9'))).toBe('berglas://vault/k#9');
  });
});

describe('isPinned and atVersion (--refresh)', () => {
  it.each([
    ['gs://vault/a.env#12', true],
    ['gs://vault/a.env', false],
    ['berglas://vault/k#3', true],
    ['berglas://vault/k', false],
    ['sm://my-project/s#7', true],
    ['projects/my-project/secrets/s/versions/7', true],
    ['sm://my-project/s', false],
    ['sm://my-project/s#latest', false],
    ['sm://my-project/s#prod', false],
    ['/run/secrets/a.env', false],
  ])('%s pinned: %s', (uri, pinned) => {
    expect(isPinned(parseSourceRef(uri))).toBe(pinned);
  });

  it('pins a gs:// generation or an sm:// version, and leaves a file as it is', () => {
    expect(atVersion(parseSourceRef('gs://vault/a.env'), '99')).toEqual({
      scheme: 'gs',
      bucket: 'vault',
      object: 'a.env',
      generation: '99',
    });
    const alias = atVersion(parseSourceRef('sm://my-project/s#prod'), '4');
    expect(alias).toEqual({ scheme: 'sm', project: 'my-project', secret: 's', version: '4' });
    expect(isPinned(alias)).toBe(true);
    expect(secretVersionName(alias as SecretManagerRef)).toBe('projects/my-project/secrets/s/versions/4');
    const file = parseSourceRef('file:/run/a.env');
    expect(atVersion(file, '1:2:3')).toBe(file);
  });
});
