// Issue 14: the Bun-compiled binary (scripts/build-bun.ts, built once into dist/secret-fetch-bun).
// Bun-specific traps: JavaScriptCore's own `line` on every Error, the compiled binary's autoload
// of the working directory's .env and bunfig.toml, and Bun's own variables (issue 14.5): each is
// dropped by the restart of src/launch/runtime-env.ts, and the command still gets it.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRuntime, ensureBunBinary } from '../scripts/build-bun.ts';
import { encryptWithKms, uploadObject } from './fixtures/cloud.ts';
import { BASE_ENV, KEY, listeningSockets, runBinary } from './integration/harness.ts';
import { type MetadataServer, startMetadataServer } from './servers/metadata.ts';
import { startTestServers, type TestServers } from './servers/start.ts';

let dir: string;
let binary: string;
let servers: TestServers;
let metadata: MetadataServer;
const PLAIN = `pw-${randomBytes(8).toString('hex')}`;
const OBJECT = 'bun/app.env.enc';

beforeAll(async () => {
  dir = mkdtempSync('/dev/shm/secret-fetch-bun-');
  binary = ensureBunBinary();
  [servers, metadata] = await Promise.all([startTestServers(), startMetadataServer()]);
  servers.kms.createKey(KEY);
  await uploadObject(
    servers.gcs.url,
    'vault',
    OBJECT,
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(`DB_PASSWORD=${PLAIN}\n`)),
  );
}, 120_000);

afterAll(async () => {
  await Promise.all([servers?.close(), metadata?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

function run(args: string[], cwd: string, env: Record<string, string> = {}) {
  return spawnSync(binary, args, { cwd, env: { ...BASE_ENV, ...env }, encoding: 'utf8' });
}

const fetchArgs = ['--source', `gs://vault/${OBJECT}`, '--kms-key', KEY, '--env', '--'];
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** The metadata read of OBJECT answers only after `ms`: a fetch that is under way meanwhile. */
const delayFetch = (ms: number) =>
  servers.gcs.failNext({ method: 'GET', path: /bun%2Fapp\.env\.enc$|bun\/app\.env\.enc$/ }, [{ run: () => sleep(ms) }]);

describe('npm run build -- --runtime=bun', () => {
  it('takes the runtime from the flag, else SECRET_FETCH_BUILD_RUNTIME, else the Node SEA', () => {
    expect(buildRuntime([], {})).toBe('bun');
    expect(buildRuntime(['--runtime=bun'], {})).toBe('bun');
    expect(buildRuntime(['--runtime', 'bun'], {})).toBe('bun');
    expect(buildRuntime([], { SECRET_FETCH_BUILD_RUNTIME: 'bun' })).toBe('bun');
    expect(buildRuntime(['--runtime=node'], { SECRET_FETCH_BUILD_RUNTIME: 'bun' })).toBe('node');
    expect(() => buildRuntime(['--runtime=deno'], {})).toThrow(/must be node or bun, not "deno"/);
  });
});

describe('the Bun-compiled binary', () => {
  it('prints every error message, not the line number JavaScriptCore puts on errors', () => {
    const result = run(['--source', join(dir, 'missing.bin'), '--env', '--', '/bin/true'], dir);
    expect(result.stderr).toBe(
      `secret-fetch: error: --env needs entries, but ${join(dir, 'missing.bin')} is read as raw (name the format with --format dotenv|json|yaml|toml|pyfile, or drop --env and use --out)\n`,
    );
    expect(result.status).toBe(64);
  });

  it('ignores a .env and a bunfig.toml in the working directory', () => {
    const cwd = mkdtempSync(join(dir, 'cwd-'));
    writeFileSync(join(cwd, '.env'), 'INJECTED=from-dotenv\n');
    writeFileSync(join(cwd, 'bunfig.toml'), 'preload = ["./preload.js"]\n');
    writeFileSync(
      join(cwd, 'preload.js'),
      `require('node:fs').writeFileSync(${JSON.stringify(join(cwd, 'ran'))}, '')\n`,
    );
    writeFileSync(join(cwd, 'a.env'), 'APP_KEY=value\n');
    const result = run(['--source', 'a.env', '--env', '--', '/usr/bin/env'], cwd);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('APP_KEY=value\n');
    expect(result.stdout).not.toContain('INJECTED');
    expect(existsSync(join(cwd, 'ran'))).toBe(false);
  });

  it('writes Secret Manager versions (protobufjs finds its Long class by name)', async () => {
    const file = join(dir, 'push.env');
    writeFileSync(file, `DB_PASSWORD=${PLAIN}\n`);
    const result = await runBinary(['push', file, 'sm://bun-project/app-env', '--create'], {
      command: binary,
      env: servers.env,
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('sm://bun-project/app-env#1\n');
  });
});

describe("Bun's own variables do not act on a run, and the command still gets them", () => {
  const print = (name: string) => ['sh', '-c', `echo "got $DB_PASSWORD"; echo "${name}=$${name}"`];

  it('BUN_OPTIONS=--preload: its code runs in the first start only, never while secrets are fetched', async () => {
    const log = join(dir, 'preload.log');
    const preload = join(dir, 'preload.cjs');
    // Notes each start, and whether that process is still there (fetching) 500 ms later.
    writeFileSync(
      preload,
      [
        `const log = (line) => require('node:fs').appendFileSync(${JSON.stringify(log)}, line + '\\n');`,
        `log('started, restarted=' + ('SECRET_FETCH_RUNTIME_ENV' in process.env));`,
        `setTimeout(() => log('still running'), 500).unref();`,
      ].join('\n'),
    );
    delayFetch(1500);
    const options = `--preload ${preload}`;
    const result = await runBinary([...fetchArgs, ...print('BUN_OPTIONS')], {
      command: binary,
      env: { ...servers.env, BUN_OPTIONS: options },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\nBUN_OPTIONS=${options}\n`);
    expect(readFileSync(log, 'utf8')).toBe('started, restarted=false\n');
  });

  it('JSC_SIGNAL_FOR_GC=15 does not take SIGTERM from a fetch: it still stops the run with 143', async () => {
    delayFetch(3000);
    const result = await runBinary([...fetchArgs, ...print('JSC_SIGNAL_FOR_GC')], {
      command: binary,
      env: { ...servers.env, JSC_SIGNAL_FOR_GC: '15' },
      onSpawn: (pid) => setTimeout(() => process.kill(pid, 'SIGTERM'), 1000),
    });
    expect(result.stderr).toMatch(/interrupted by SIGTERM before the command started/);
    expect(result.code).toBe(128 + constants.signals.SIGTERM);
    expect(result.stdout).toBe('');
  });

  it('BUN_INSPECT and BUN_OPTIONS=--inspect open no inspector while secrets are fetched', async () => {
    const cases: Record<string, string>[] = [{ BUN_INSPECT: '127.0.0.1:0' }, { BUN_OPTIONS: '--inspect=127.0.0.1:0' }];
    for (const env of cases) {
      delayFetch(1500);
      let listening: string[] = ['not checked'];
      const result = await runBinary([...fetchArgs, 'sh', '-c', 'echo "got $DB_PASSWORD"'], {
        command: binary,
        env: { ...servers.env, ...env },
        onSpawn: (pid) => {
          setTimeout(() => {
            listening = listeningSockets(pid);
          }, 1000);
        },
      });
      expect(listening, JSON.stringify(env)).toEqual([]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).not.toMatch(/inspect|debug/i);
      expect(result.stdout).toBe(`got ${PLAIN}\n`);
    }
  });

  it('NODE_USE_ENV_PROXY with HTTP_PROXY does not reroute requests (Bun honours both)', async () => {
    const result = await runBinary([...fetchArgs, ...print('NODE_USE_ENV_PROXY')], {
      command: binary,
      env: { ...servers.env, NODE_USE_ENV_PROXY: '1', HTTP_PROXY: 'http://127.0.0.1:9' },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\nNODE_USE_ENV_PROXY=1\n`);
  });

  it('BUN_CONFIG_VERBOSE_FETCH prints none of the requests of the credential path (google-auth-library uses fetch)', async () => {
    const result = await runBinary([...fetchArgs, ...print('BUN_CONFIG_VERBOSE_FETCH')], {
      command: binary,
      env: {
        ...servers.env,
        // The real credential path against the test metadata server (see integration/metadata.test.ts).
        SECRET_FETCH_TEST_LOOPBACK_AUTH: '1',
        GCE_METADATA_HOST: metadata.host,
        METADATA_SERVER_DETECTION: 'ping-only',
        GOOGLE_CLOUD_PROJECT: 'test-project',
        BUN_CONFIG_VERBOSE_FETCH: 'curl',
      },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\nBUN_CONFIG_VERBOSE_FETCH=curl\n`);
  });

  it('NODE_CHANNEL_FD, which Bun takes out of the environment, still reaches the command', async () => {
    const result = await runBinary([...fetchArgs, ...print('NODE_CHANNEL_FD')], {
      command: binary,
      env: { ...servers.env, NODE_CHANNEL_FD: '0' },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\nNODE_CHANNEL_FD=0\n`);
  });
});
