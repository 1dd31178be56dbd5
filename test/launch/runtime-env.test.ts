// The pure half of src/launch/runtime-env.ts: which variables trigger a restart, what the restarted
// process is given, and how the command gets the values back.

import { describe, expect, it } from 'vitest';
import {
  environmentWithoutRuntimeVariables,
  RUNTIME_CARRIER,
  restoreRuntimeVariables,
  runtimeVariablesIn,
} from '../../src/launch/runtime-env.ts';

describe('runtime variables', () => {
  it('finds only the listed names: a NODE_* prefix (NODE_VERSION, NODE_ENV) or NODE_OPTIONS does not restart', () => {
    expect(
      runtimeVariablesIn({ NODE_VERSION: '24', NODE_ENV: 'production', NODE_OPTIONS: '--max-old-space-size=64' }),
    ).toEqual({});
    expect(runtimeVariablesIn({ NODE_DEBUG: 'stream', PATH: '/bin', NODE_CHANNEL_FD: '0' })).toEqual({
      NODE_DEBUG: 'stream',
      NODE_CHANNEL_FD: '0',
    });
  });

  it("Bun's binary also restarts for Bun's own names and families, but not for what oven/bun images set", () => {
    const environ = {
      BUN_OPTIONS: '--preload ./x.js',
      BUN_JSC_useJIT: '0',
      BUN_FEATURE_FLAG_DISABLE_IPV4: '1',
      JSC_SIGNAL_FOR_GC: '15',
      NODE_TLS_REJECT_UNAUTHORIZED: '0',
      BUN_INSTALL_BIN: '/usr/local/bin',
      BUN_RUNTIME_TRANSPILER_CACHE_PATH: '0',
      PATH: '/bin',
    };
    expect(runtimeVariablesIn(environ)).toEqual({ NODE_TLS_REJECT_UNAUTHORIZED: '0' });
    expect(Object.keys(runtimeVariablesIn(environ, 'bun')).sort()).toEqual([
      'BUN_FEATURE_FLAG_DISABLE_IPV4',
      'BUN_JSC_useJIT',
      'BUN_OPTIONS',
      'JSC_SIGNAL_FOR_GC',
      'NODE_TLS_REJECT_UNAUTHORIZED',
    ]);
    const env = environmentWithoutRuntimeVariables(environ, environ, 42, 'bun');
    expect(Object.keys(env).sort()).toEqual([
      'BUN_INSTALL_BIN',
      'BUN_RUNTIME_TRANSPILER_CACHE_PATH',
      'PATH',
      RUNTIME_CARRIER,
    ]);
    expect(restoreRuntimeVariables(env).environ).toEqual(environ);
  });

  it('restarts without them, carrying the initial values, and the command gets them back exactly', () => {
    const initial = { NODE_DEBUG: 'a b=c\n"', NODE_CHANNEL_FD: '0', PATH: '/bin' };
    // Node already deleted NODE_CHANNEL_FD from process.env: the value comes from the initial environment.
    const env = environmentWithoutRuntimeVariables({ NODE_DEBUG: 'a b=c\n"', PATH: '/bin' }, initial, 42);
    expect(Object.keys(env).sort()).toEqual(['PATH', RUNTIME_CARRIER]);
    const { environ, carried } = restoreRuntimeVariables(env);
    expect(environ).toEqual(initial);
    expect(carried.sort()).toEqual(['NODE_CHANNEL_FD', 'NODE_DEBUG']);
  });

  it('fails instead of looping when the variables come back after its own restart', () => {
    const env = environmentWithoutRuntimeVariables({}, { NODE_DEBUG: 'x' }, 42);
    expect(() => environmentWithoutRuntimeVariables(env, { ...env, NODE_DEBUG: 'x' }, 42)).toThrow(/came back/);
    // Another process's carrier (e.g. a parent secret-fetch's) is simply replaced.
    expect(environmentWithoutRuntimeVariables(env, { NODE_DEBUG: 'y' }, 43)[RUNTIME_CARRIER]).toBe(
      JSON.stringify({ pid: 43, env: { NODE_DEBUG: 'y' } }),
    );
  });

  it('refuses a carrier it did not write: not JSON, or naming anything but the listed variables', () => {
    for (const text of ['x', '[]', '{"pid":1,"env":{"LD_PRELOAD":"/x.so"}}', '{"pid":1,"env":{"NODE_DEBUG":1}}']) {
      expect(() => restoreRuntimeVariables({ [RUNTIME_CARRIER]: text })).toThrow(/internal to secret-fetch/);
    }
    expect(restoreRuntimeVariables({ PATH: '/bin' })).toEqual({ environ: { PATH: '/bin' }, carried: [] });
  });
});
