import { describe, expect, it } from 'vitest';
import {
  type Check,
  exitCodeOf,
  fail,
  failFrom,
  ok,
  renderCheck,
  renderCheckJson,
  renderSummary,
  warn,
} from '../../../src/commands/doctor/checklist.ts';
import { EXIT, NotFoundError, PermissionError } from '../../../src/errors.ts';

const wrongKey = fail('berglas-key', 'berglas://vault/a', 'names another key', EXIT.integrity);
const good = ok('bucket', 'gs://vault', 'gs://vault: storage.objects.get granted');
const denied = fail('kms-key', 'k', 'k: not granted', EXIT.permission, 'gcloud kms keys add-iam-policy-binding k');
const missing = fail('object', 'gs://vault/x', 'gs://vault/x does not exist', EXIT.notFound, 'gcloud storage ls -a');
const disk = fail('out', '/data/a', 'refusing to write /data/a', EXIT.output, 'mount a memory volume');
const slow = fail('bucket', 'gs://b', 'could not test', EXIT.unavailable, 'try again');
const notChecked = warn('secret-version', 'sm://p/s#1', 'sm://p/s#1: not checked whether this version exists');

describe('renderCheck', () => {
  it('prints one line per check, labelled ok, FAIL or warn, in one column', () => {
    expect(renderCheck(good)).toBe('ok    gs://vault: storage.objects.get granted\n');
    expect(renderCheck(notChecked)).toBe('warn  sm://p/s#1: not checked whether this version exists\n');
  });

  it('puts the fix of a failure on an indented line under it', () => {
    expect(renderCheck(denied)).toBe('FAIL  k: not granted\n      fix: gcloud kms keys add-iam-policy-binding k\n');
  });
});

describe('renderCheckJson', () => {
  it('prints one JSON object per line with status, resource, fix and exit code', () => {
    const line = renderCheckJson(denied);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trimEnd()).not.toContain('\n');
    expect(JSON.parse(line)).toEqual({
      check: 'kms-key',
      status: 'fail',
      resource: 'k',
      message: 'k: not granted',
      fix: 'gcloud kms keys add-iam-policy-binding k',
      exitCode: 77,
    });
  });

  it('carries the details of a passing check and no fix', () => {
    const check = ok('object', 'gs://v/o', 'gs://v/o: exists', { generation: '7', size: '12' });
    expect(JSON.parse(renderCheckJson(check))).toEqual({
      check: 'object',
      status: 'ok',
      resource: 'gs://v/o',
      message: 'gs://v/o: exists',
      details: { generation: '7', size: '12' },
    });
  });
});

describe('exitCodeOf', () => {
  it('is 0 when nothing failed, warnings included', () => {
    expect(exitCodeOf([])).toBe(0);
    expect(exitCodeOf([good, notChecked])).toBe(0);
  });

  it.each<[string, Check[], number]>([
    ['a lone failure gives its own code', [good, missing], EXIT.notFound],
    ['permission before not found', [missing, denied], EXIT.permission],
    ['not found before output', [disk, missing], EXIT.notFound],
    ['not found before a wrong berglas key', [wrongKey, missing], EXIT.notFound],
    ['a wrong berglas key before output', [disk, wrongKey], EXIT.integrity],
    ['output before unavailable', [slow, disk], EXIT.output],
    ['unavailable alone', [good, slow], EXIT.unavailable],
    ['everything at once', [slow, disk, missing, notChecked, denied], EXIT.permission],
  ])('%s', (_name, checks, code) => {
    expect(exitCodeOf(checks)).toBe(code);
  });

  it('ranks a code outside the table (usage) after every known one', () => {
    const usage = fail('file', '/d', '--source /d is a directory', EXIT.usage);
    expect(exitCodeOf([usage, slow])).toBe(EXIT.unavailable);
    expect(exitCodeOf([usage])).toBe(EXIT.usage);
  });
});

describe('renderSummary', () => {
  it('counts and says none failed', () => {
    expect(renderSummary([good, good])).toBe('2 passed, none failed\n');
    expect(renderSummary([good, notChecked])).toBe('1 passed, 1 warning, none failed\n');
  });

  it('names the exit code and its class when something failed', () => {
    expect(renderSummary([good, denied, missing, notChecked, notChecked])).toBe(
      '2 failed, 1 passed, 2 warnings: exit 77 (permission)\n',
    );
  });
});

describe('failFrom', () => {
  it("keeps our error's message, exit code and hint", () => {
    expect(failFrom('object', 'gs://v/o', new NotFoundError('gs://v/o does not exist', 'check it'))).toEqual(
      fail('object', 'gs://v/o', 'gs://v/o does not exist', EXIT.notFound, 'check it'),
    );
    expect(failFrom('bucket', 'gs://v', new PermissionError('denied', 'hint'), 'gcloud ...').fix).toBe('gcloud ...');
  });

  it('names a foreign error but never prints its message (it may quote a response)', () => {
    const error = Object.assign(new TypeError('body: {"secret":"canary-123"}'), { code: 'E_ODD' });
    const check = failFrom('kms-key', 'k', error);
    expect(check.exitCode).toBe(EXIT.internal);
    expect(check.message).toBe('k: unexpected TypeError (E_ODD) while checking');
    expect(renderCheck(check) + renderCheckJson(check)).not.toContain('canary-123');
  });
});
