import { describe, expect, it } from 'vitest';
import { parseDotenv } from '../../src/formats/dotenv.ts';
import { parseJson } from '../../src/formats/json.ts';
import { SecretEntries } from '../../src/secret.ts';
import { commandEnvironment } from '../../src/sinks/env.ts';

describe('commandEnvironment', () => {
  it('passes an entry named __proto__ on like any other name', () => {
    const env = commandEnvironment({ PATH: '/bin' }, [parseDotenv('__proto__=v\nconstructor=c\n', 'f')]);
    expect(Object.keys(env)).toEqual(['PATH', '__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(env, '__proto__')?.value).toBe('v');
    expect(env.constructor).toBe('c');
    expect(Object.getPrototypeOf(env)).toBe(Object.prototype);
  });

  it('keeps an inherited __proto__ and lets a secret override it', () => {
    const inherited = Object.fromEntries([
      ['__proto__', 'inherited'],
      ['HOME', '/h'],
    ]);
    expect(Object.entries(commandEnvironment(inherited, []))).toEqual([
      ['__proto__', 'inherited'],
      ['HOME', '/h'],
    ]);
    const env = commandEnvironment(inherited, [parseJson('{"__proto__": "secret"}', 'f')]);
    expect(Object.entries(env)).toEqual([
      ['__proto__', 'secret'],
      ['HOME', '/h'],
    ]);
  });

  it('drops secret-fetch own variables and lets a secret win over the inherited environment', () => {
    const env = commandEnvironment({ SECRET_FETCH_MASTER_KEY: 'k', A: '1', B: '2' }, [
      new SecretEntries(new Map([['B', 'secret']])),
    ]);
    expect(env).toEqual({ A: '1', B: 'secret' });
  });
});
