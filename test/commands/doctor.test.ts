import { describe, expect, it } from 'vitest';
import { DOCTOR, planDoctor } from '../../src/commands/doctor.ts';
import { UsageError } from '../../src/errors.ts';
import { parseFlags } from '../../src/flags.ts';

const KEY = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
const OTHER = 'projects/p/locations/global/keyRings/r/cryptoKeys/other';
interface Given {
  readonly sources: readonly string[];
  readonly kmsKeys: readonly string[] | undefined;
  readonly outs: readonly string[] | undefined;
  readonly allowDisk: boolean | undefined;
}
const none: Given = { sources: [], kmsKeys: undefined, outs: undefined, allowDisk: undefined };

/** The plan for SOURCE arguments and flags, through the flag parser that fills in the variables. */
function planFor(given: Given, environ: Record<string, string>) {
  const argv = [
    ...given.sources,
    ...(given.kmsKeys ?? []).flatMap((key) => ['--kms-key', key]),
    ...(given.outs ?? []).flatMap((out) => ['--out', out]),
    ...(given.allowDisk ? ['--allow-disk'] : []),
  ];
  return planDoctor(parseFlags(DOCTOR.flags, argv, environ, 'doctor'));
}

const summary = (plan: ReturnType<typeof planFor>) => plan.sources.map((s) => [s.uri, s.kmsKey, s.out]);

describe('planDoctor', () => {
  it('takes SOURCEs, one --kms-key for all, and one --out per source, in order', () => {
    const plan = planFor(
      {
        sources: ['gs://vault/a.enc', 'file:/run/b.env'],
        kmsKeys: [KEY],
        outs: ['/run/s/a', '/run/s/b'],
        allowDisk: undefined,
      },
      {},
    );
    expect(summary(plan)).toEqual([
      ['gs://vault/a.enc', KEY, '/run/s/a'],
      ['file:/run/b.env', KEY, '/run/s/b'],
    ]);
    expect(plan.sources.map((s) => s.ref.scheme)).toEqual(['gs', 'file']);
    expect(plan.allowDisk).toBe(false);
  });

  it('reads the main run variables when no source is given, as the entrypoint would', () => {
    const plan = planFor(none, {
      SECRET_FETCH_SOURCE: 'gs://vault/app.cfg.enc',
      SECRET_FETCH_KMS_KEY: KEY,
      SECRET_FETCH_OUT: '/run/secrets/app.cfg',
      SECRET_FETCH_ALLOW_DISK: 'yes',
    });
    expect(summary(plan)).toEqual([['gs://vault/app.cfg.enc', KEY, '/run/secrets/app.cfg']]);
    expect(plan.allowDisk).toBe(true);
  });

  it('lets flags win over their variables, each on its own', () => {
    const environ = { SECRET_FETCH_SOURCE: 'gs://env/x', SECRET_FETCH_KMS_KEY: KEY, SECRET_FETCH_ALLOW_DISK: '1' };
    const plan = planFor({ sources: ['gs://flag/y'], kmsKeys: [OTHER], outs: undefined, allowDisk: false }, environ);
    expect(summary(plan)).toEqual([['gs://flag/y', OTHER, undefined]]);
    expect(plan.allowDisk).toBe(true);
    expect(summary(planFor({ ...none, sources: ['gs://flag/y'] }, environ))).toEqual([['gs://flag/y', KEY, undefined]]);
  });

  it.each<[string, Given, Record<string, string>, RegExp]>([
    [
      'too few --kms-key',
      { ...none, sources: ['a', 'b', 'c'], kmsKeys: [KEY, OTHER] },
      {},
      /^2 --kms-key for 3 --source/,
    ],
    ['a shared --out', { ...none, sources: ['a', 'b'], outs: ['/run/x'] }, {}, /^1 --out for 2 --source/],
    ['--out without a source', { ...none, outs: ['/run/x'] }, {}, /^no source given/],
    ['a key from the variable without a source', none, { SECRET_FETCH_KMS_KEY: KEY }, /^no source given/],
    ['a bad key name', { ...none, sources: ['a'], kmsKeys: ['k'] }, {}, /^--kms-key k is not a key name/],
    ['a bad source', { ...none, sources: ['gs://UPPER/x'] }, {}, /is not a valid bucket name/],
    ['a bad boolean', { ...none, sources: ['a'] }, { SECRET_FETCH_ALLOW_DISK: 'maybe' }, /is not a boolean/],
  ])('refuses %s as the main run does', (_name, given, environ, message) => {
    expect(() => planFor(given, environ)).toThrow(UsageError);
    expect(() => planFor(given, environ)).toThrow(message);
  });

  it('plans nothing, without failing, when nothing is configured', () => {
    expect(planFor(none, {}).sources).toEqual([]);
  });
});
