// What the runtime under secret-fetch must never do to a run, through the built binary: open an
// inspector on a signal (SIGUSR1 in each phase), act on its own environment variables (NODE_DEBUG,
// NODE_V8_COVERAGE, NODE_CHANNEL_FD, ...), die of a signal it does not handle with secret temp files
// left behind; and what a secret may not decide: the loader variables, the program PATH finds.

import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import {
  expectFailure,
  expectNoCanary,
  filesIn,
  KEY,
  listeningSockets,
  RUNTIME,
  runBinary,
  spawnBinary,
  tmpfsDir,
} from './harness.ts';

let servers: TestServers;
let out: { dir: string; cleanup: () => void };
const PLAIN = `pw-${randomBytes(8).toString('hex')}`;
const TOKEN = `tok-${randomBytes(8).toString('hex')}`;
const CANARIES = [PLAIN, TOKEN];
const OBJECT = 'guard/app.env.enc';

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  await uploadObject(
    servers.gcs.url,
    'vault',
    OBJECT,
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(`DB_PASSWORD=${PLAIN}\n`)),
  );
  await uploadObject(servers.gcs.url, 'vault', 'guard/token', Buffer.from(TOKEN));
});
afterAll(async () => servers?.close());
beforeEach(() => {
  out = tmpfsDir();
});
afterEach(() => out.cleanup());

const fetchArgs = ['--source', `gs://vault/${OBJECT}`, '--kms-key', KEY];
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** The first read of OBJECT answers only after `ms`: a fetch that is under way meanwhile. */
const delayFetch = (ms: number) =>
  servers.gcs.failNext({ method: 'GET', path: /guard%2Fapp\.env\.enc$|guard\/app\.env\.enc$/ }, [
    { run: () => sleep(ms) },
  ]);

describe('SIGUSR1 never opens an inspector', () => {
  it('during a fetch: nothing listens, and the run goes on to exec the command', async () => {
    delayFetch(1500);
    let listening: string[] = [];
    const result = await runBinary([...fetchArgs, '--env', '--', 'sh', '-c', 'echo "got $DB_PASSWORD"'], {
      env: servers.env,
      onSpawn: (pid) => {
        setTimeout(() => process.kill(pid, 'SIGUSR1'), 500);
        setTimeout(() => {
          listening = listeningSockets(pid);
        }, 1000);
      },
    });
    expect(listening).toEqual([]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\n`);
  });

  it('in a supervisor before the command started: nothing listens, and the command runs', async () => {
    delayFetch(1500);
    let listening: string[] = [];
    const result = await runBinary(
      [...fetchArgs, '--env', '--supervise', '--', 'sh', '-c', 'echo "got $DB_PASSWORD"'],
      {
        env: servers.env,
        onSpawn: (pid) => {
          setTimeout(() => process.kill(pid, 'SIGUSR1'), 500);
          setTimeout(() => {
            listening = listeningSockets(pid);
          }, 1000);
        },
      },
    );
    expect(listening).toEqual([]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\n`);
  });

  it('in a sidecar: ignored, nothing listens, and SIGTERM still stops it with 0', async () => {
    const file = join(out.dir, 'app.env');
    const run = spawnBinary([...fetchArgs, '--out', file, '--refresh', '1m', '-v'], { env: servers.env });
    await run.errorLine(/running as a sidecar/);
    process.kill(run.pid, 'SIGUSR1');
    await run.errorLine(/received SIGUSR1: ignored/);
    await sleep(300);
    expect(listeningSockets(run.pid)).toEqual([]);
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/Debugger|inspector/i);
    expect(readFileSync(file, 'utf8')).toBe(`DB_PASSWORD=${PLAIN}\n`);
  });
});

describe('every signal that would end a fetch is handled like SIGTERM', () => {
  // Bun cannot catch SIGPWR (JavaScriptCore's own): see the test after this loop.
  const signals = ['SIGUSR2', 'SIGALRM', 'SIGVTALRM', 'SIGPWR', 'SIGIO'] as const;
  for (const signal of signals.filter((s) => RUNTIME === 'node' || s !== 'SIGPWR')) {
    it(`${signal} during a fetch: exit 128+n, no secret temp file left, no command`, async () => {
      servers.gcs.failNext({ method: 'GET', path: /guard%2Fapp\.env\.enc$|guard\/app\.env\.enc$/ }, ['stall']);
      const result = await runBinary([...fetchArgs, '--out', join(out.dir, 'app.env'), '--', 'sh', '-c', 'echo ran'], {
        env: {
          ...servers.env,
          // Staged as soon as it is read, while the source stalls: the interrupt must remove it.
          TOKEN_FILE: 'secret-fetch:gs://vault/guard/token?destination=tempfile',
          SECRET_FETCH_TEMPFILE_DIR: out.dir,
        },
        onSpawn: (pid) => setTimeout(() => process.kill(pid, signal), 1000),
      });
      expectFailure(
        result,
        128 + constants.signals[signal],
        new RegExp(`interrupted by ${signal} before the command started`),
      );
      expect(filesIn(out.dir)).toEqual([]);
    });
  }
});

describe.runIf(RUNTIME === 'bun')('signals Bun cannot catch, during a fetch', () => {
  it('SIGSTKFLT and SIGPWR are ignored instead of ending the run without its cleanup: the fetch goes on to exec', async () => {
    delayFetch(1500);
    const result = await runBinary([...fetchArgs, '--env', '--', 'sh', '-c', 'echo "got $DB_PASSWORD"'], {
      env: servers.env,
      onSpawn: (pid) =>
        setTimeout(() => {
          process.kill(pid, constants.signals.SIGSTKFLT);
          process.kill(pid, constants.signals.SIGPWR);
        }, 500),
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\n`);
  });
});

describe("the runtime's own variables do not act on a run, and the command still gets them", () => {
  const printRuntime = [
    '--',
    'sh',
    '-c',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion, not a template
    'echo "got $DB_PASSWORD"; echo "debug=$NODE_DEBUG channel=$NODE_CHANNEL_FD cov=$NODE_V8_COVERAGE carrier=${SECRET_FETCH_RUNTIME_ENV-unset}"',
  ];

  it('NODE_DEBUG=stream,http,net,tls (and NODE_DEBUG_NATIVE) print nothing', async () => {
    const result = await runBinary([...fetchArgs, '--env', ...printRuntime], {
      env: { ...servers.env, NODE_DEBUG: 'stream,http,net,tls,http2,fs,module', NODE_DEBUG_NATIVE: 'all' },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\ndebug=stream,http,net,tls,http2,fs,module channel= cov= carrier=unset\n`);
    expectNoCanary({ ...result, stdout: '' }, CANARIES);
  });

  it('NODE_CHANNEL_FD=0 runs normally (it aborted gs:// + KMS with 134)', async () => {
    const result = await runBinary([...fetchArgs, '--env', ...printRuntime], {
      env: { ...servers.env, NODE_CHANNEL_FD: '0' },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\ndebug= channel=0 cov= carrier=unset\n`);
  });

  // Node writes the coverage of the first start (before any secret was read) when it re-executes
  // itself: that one file is a known limit; the run itself, which holds secrets, writes nothing.
  it('NODE_V8_COVERAGE covers no part of the run, NODE_COMPILE_CACHE writes no file', async () => {
    const coverage = join(out.dir, 'coverage');
    const cache = join(out.dir, 'cache');
    mkdirSync(coverage);
    mkdirSync(cache);
    const result = await runBinary([...fetchArgs, '--out', join(out.dir, 'app.env')], {
      env: { ...servers.env, NODE_V8_COVERAGE: coverage, NODE_COMPILE_CACHE: cache },
    });
    expect(result.code, result.stderr).toBe(0);
    const covered = filesUnder(coverage);
    expect(covered.length).toBeLessThanOrEqual(1);
    for (const file of covered) {
      const text = readFileSync(join(coverage, file), 'utf8');
      for (const canary of CANARIES) expect(text).not.toContain(canary);
      // Only the start: no file was staged or written in the process Node covered (StagedFiles'
      // methods keep their names in the minified script).
      const report = JSON.parse(text) as {
        result: { functions: { functionName: string; ranges: { count: number }[] }[] }[];
      };
      const calls = report.result
        .flatMap((script) => script.functions)
        .filter((fn) => fn.functionName === 'stage' || fn.functionName === 'commit')
        .map((fn) => fn.ranges[0]?.count);
      expect(calls.length).toBeGreaterThan(0);
      expect(calls.every((count) => count === 0)).toBe(true);
    }
    expect(filesUnder(cache)).toEqual([]);
  });

  it('NODE_USE_ENV_PROXY does not reroute requests, and NODE_TLS_REJECT_UNAUTHORIZED reaches the command only', async () => {
    const result = await runBinary(
      [
        ...fetchArgs,
        '--env',
        '--',
        'sh',
        '-c',
        'echo "got $DB_PASSWORD proxy=$NODE_USE_ENV_PROXY tls=$NODE_TLS_REJECT_UNAUTHORIZED"',
      ],
      {
        env: {
          ...servers.env,
          NODE_USE_ENV_PROXY: '1',
          HTTP_PROXY: 'http://127.0.0.1:9', // nothing answers there
          NODE_TLS_REJECT_UNAUTHORIZED: '0',
        },
      },
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN} proxy=1 tls=0\n`);
  });

  it('a supervised command gets the original values too', async () => {
    const result = await runBinary([...fetchArgs, '--env', '--supervise', ...printRuntime], {
      env: { ...servers.env, NODE_DEBUG: 'http', NODE_V8_COVERAGE: join(out.dir, 'cov') },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`got ${PLAIN}\ndebug=http channel= cov=${join(out.dir, 'cov')} carrier=unset\n`);
  });

  it('a carrier that secret-fetch did not write is refused (64)', async () => {
    const result = await runBinary([...fetchArgs, '--env', '--', 'true'], {
      env: { ...servers.env, SECRET_FETCH_RUNTIME_ENV: '{"pid":1,"env":{"LD_PRELOAD":"/x.so"}}' },
    });
    expectFailure(result, EXIT.usage, /SECRET_FETCH_RUNTIME_ENV is internal to secret-fetch/);
  });
});

describe('a secret cannot take over the command', () => {
  const secretFile = (text: string) => {
    const file = join(out.dir, 'app.env');
    writeFileSync(file, text);
    return file;
  };

  it('an LD_PRELOAD entry is refused by name (65), and allowed with --allow-loader-env', async () => {
    const file = secretFile(`LD_PRELOAD=/tmp/${TOKEN}.so\nA=1\n`);
    const refused = await runBinary(['--source', file, '--env', '--', 'sh', '-c', 'echo ran']);
    expectFailure(refused, EXIT.format, /app\.env: the entry LD_PRELOAD would set the command's LD_PRELOAD/, CANARIES);
    const libraryPath = secretFile(`LD_LIBRARY_PATH=/nowhere-${TOKEN}\n`);
    const allowed = await runBinary([
      '--source',
      libraryPath,
      '--env',
      '--allow-loader-env',
      '--',
      'sh',
      '-c',
      'echo "$LD_LIBRARY_PATH"',
    ]);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toBe(`/nowhere-${TOKEN}\n`);
  });

  it('GCONV_PATH and GLIBC_TUNABLES entries are refused too', async () => {
    for (const name of ['GCONV_PATH', 'GLIBC_TUNABLES', 'LD_AUDIT']) {
      const file = secretFile(`${name}=x\n`);
      const result = await runBinary(['--source', file, '--env', '--', 'true']);
      expectFailure(result, EXIT.format, new RegExp(`the entry ${name} would set`));
    }
  });

  // (Not LD_PRELOAD itself: the loader would act on it in secret-fetch first.)
  it('a reference in GCONV_PATH is refused (64) before anything is fetched', async () => {
    const result = await runBinary(['--', 'true'], {
      env: { ...servers.env, GCONV_PATH: 'secret-fetch:gs://vault/guard/token?destination=tempfile' },
    });
    expectFailure(
      result,
      EXIT.usage,
      /^secret-fetch: error: \$GCONV_PATH: a reference would let the secret decide GCONV_PATH/,
    );
  });

  it("PATH from a secret: the command is found with the inherited PATH, and still gets the secret's", async () => {
    const evil = join(out.dir, 'bin');
    mkdirSync(evil);
    writeFileSync(join(evil, 'sh'), '#!/bin/sh\necho hijacked\n');
    chmodSync(join(evil, 'sh'), 0o755);
    const file = secretFile(`PATH=${evil}\n`);
    const result = await runBinary(['--source', file, '--env', '--', 'sh', '-c', 'echo "PATH=$PATH"']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`PATH=${evil}\n`);
  });
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((name) => statSync(join(dir, name)).isFile());
}
