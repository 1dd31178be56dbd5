// sm:// sources through the built binary against the Secret Manager test server: every form of
// reference, KMS-encrypted payloads, several sources, each failure (with its exit code, one line
// naming the secret, no file, no command, no canary), retries, the deadline, and --refresh.

import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { addSecretVersion } from '../fixtures/cloud.ts';
import { startTestServers } from '../servers/start.ts';
import {
  expectFailure,
  expectNoCanary,
  filesIn,
  KEY,
  OTHER_KEY,
  ROOT,
  runBinary,
  spawnBinary,
  tmpfsDir,
  until,
} from './harness.ts';

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;

const PROJECT = 'demo-project';
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const FIXTURE = join(ROOT, 'test', 'fixtures', 'signals.py');

let out: { dir: string; cleanup: () => void };
let n = 0;

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  servers.kms.createKey(OTHER_KEY);
});
afterAll(async () => servers?.close());
beforeEach(() => {
  out = tmpfsDir();
  servers.secretManager.reset();
});
afterEach(() => out.cleanup());

const sm = () => servers.secretManager;
/** A fresh secret ID per use, so tests never see each other's versions. */
const freshId = (prefix = 'app') => `${prefix}-${++n}`;
const secretName = (id: string) => `projects/${PROJECT}/secrets/${id}`;
/** Versions written the way an operator would, with the real client (`gcloud secrets versions add`). */
async function seed(id: string, ...payloads: (string | Buffer)[]): Promise<string[]> {
  const versions: string[] = [];
  for (const payload of payloads) {
    versions.push(await addSecretVersion(sm().url, secretName(id), Buffer.from(payload)));
  }
  return versions;
}
const env = () => ({ ...servers.env });
const accesses = () =>
  sm()
    .requests.filter((r) => r.path.endsWith(':access'))
    .map((r) => r.path);

describe('sm:// sources', () => {
  it('injects a dotenv payload into the command environment, then execs it', async () => {
    const id = freshId();
    await seed(id, `API_TOKEN=${CANARY}\nMODE=prod\n`);
    sm().requests.length = 0;
    const result = await runBinary(
      [
        '--source',
        `sm://${PROJECT}/${id}`,
        '--format',
        'dotenv',
        '--env',
        '--',
        'sh',
        '-c',
        'echo "$$ $API_TOKEN $MODE"',
      ],
      { env: env() },
    );
    expect(result.stderr).toBe('');
    expect(result).toMatchObject({ code: 0, stdout: `${result.pid} ${CANARY} prod\n` });
    // One call: the access itself says which version latest was.
    expect(sm().requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /v1/${secretName(id)}/versions/latest:access`,
    ]);
    // An http:// endpoint is a local server: no credentials are sought or sent.
    expect(sm().requests[0]?.headers.authorization).toBeUndefined();
  });

  it('writes a JSON payload to --out as it is, 0400, and parses it for --env', async () => {
    const id = freshId();
    const json = `{"DATABASE_URL": "postgres://app:${CANARY}@db/app", "WORKERS": 4}`;
    await seed(id, json);
    const file = join(out.dir, 'app.json');
    const result = await runBinary(
      [
        '--source',
        `sm://${PROJECT}/${id}`,
        '--format',
        'json',
        '--out',
        file,
        '--env',
        '--',
        'sh',
        '-c',
        'echo "$WORKERS"',
      ],
      { env: env() },
    );
    expect(result).toMatchObject({ code: 0, stdout: '4\n', stderr: '' });
    expect(readFileSync(file, 'utf8')).toBe(json);
    expect(lstatSync(file).mode & 0o777).toBe(0o400);
    expect(filesIn(out.dir)).toEqual(['app.json']);
  });

  it('detects no format from a secret ID: raw for --out, and --env asks for --format', async () => {
    const id = freshId('app-env');
    await seed(id, `TOKEN=${CANARY}\n`);
    const raw = join(out.dir, 'token');
    const written = await runBinary(['--source', `sm://${PROJECT}/${id}`, '--out', raw], { env: env() });
    expect(written).toMatchObject({ code: 0, stderr: '' });
    expect(readFileSync(raw, 'utf8')).toBe(`TOKEN=${CANARY}\n`);

    const refused = await runBinary(['--source', `sm://${PROJECT}/${id}`, '--env', '--', 'true'], { env: env() });
    expectFailure(
      refused,
      EXIT.usage,
      new RegExp(
        `^secret-fetch: error: --env needs entries, but sm://${PROJECT}/${id}#latest is read as raw \\(name the format with --format dotenv\\|json\\|yaml\\|toml\\|pyfile, or drop --env and use --out\\)$`,
      ),
      [CANARY],
    );
  });

  it('reads latest, a version number, an alias and the full resource name', async () => {
    const id = freshId();
    const [one, two] = await seed(id, 'V=one\n', 'V=two\n');
    expect([one, two]).toEqual(['1', '2']);
    sm().setAlias(secretName(id), 'stable', '1');
    const read = async (source: string) => {
      const result = await runBinary(['--source', source, '--format', 'dotenv', '--env', '--', 'sh', '-c', 'echo $V'], {
        env: env(),
      });
      expect(result.stderr).toBe('');
      return result.stdout;
    };
    expect(await read(`sm://${PROJECT}/${id}`)).toBe('two\n');
    expect(await read(`sm://${PROJECT}/${id}#latest`)).toBe('two\n');
    expect(await read(`sm://${PROJECT}/${id}#1`)).toBe('one\n');
    expect(await read(`sm://${PROJECT}/${id}#stable`)).toBe('one\n');
    expect(await read(`projects/${PROJECT}/secrets/${id}/versions/1`)).toBe('one\n');
    expect(await read(`sm://projects/${PROJECT}/secrets/${id}`)).toBe('two\n');
    expect(accesses()).toEqual(
      ['latest', 'latest', '1', 'stable', '1', 'latest'].map((v) => `/v1/${secretName(id)}/versions/${v}:access`),
    );
  });

  it('says which version it read, under --verbose', async () => {
    const id = freshId();
    await seed(id, 'A=1\n', 'A=2\n', 'A=3\n');
    const result = await runBinary(['-v', '--source', `sm://${PROJECT}/${id}`, '--format', 'dotenv', '--env'], {
      env: env(),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(`fetched sm://${PROJECT}/${id} at version 3: 4 bytes\n`);
  });

  it('decrypts a payload that is KMS ciphertext with --kms-key', async () => {
    const id = freshId();
    const pyfile = `SECRET_KEY = "${CANARY}"\nDEBUG = False\n`;
    await seed(id, servers.kms.encrypt(KEY, Buffer.from(pyfile)));
    const file = join(out.dir, 'app.cfg');
    const result = await runBinary(
      [
        ...['--source', `sm://${PROJECT}/${id}`, '--kms-key', KEY, '--format', 'pyfile', '--out', file, '--env'],
        ...['--', 'sh', '-c', 'echo "$SECRET_KEY $DEBUG"'],
      ],
      { env: env() },
    );
    expect(result).toMatchObject({ code: 0, stdout: `${CANARY} false\n`, stderr: '' });
    expect(readFileSync(file, 'utf8')).toBe(pyfile);
  });

  it('reads two sm:// sources in one run, each to its own --out and into one environment', async () => {
    const [a, b] = [freshId('db'), freshId('api')];
    await seed(a, 'DB_PASSWORD=hunter2\n');
    await seed(b, '{"API_KEY": "k-1"}');
    const [fa, fb] = [join(out.dir, 'db.env'), join(out.dir, 'api.json')];
    const result = await runBinary(
      [
        ...['--source', `sm://${PROJECT}/${a}`, '--format', 'dotenv', '--out', fa],
        ...['--source', `sm://${PROJECT}/${b}`, '--format', 'json', '--out', fb],
        ...['--env', '--', 'sh', '-c', 'echo "$DB_PASSWORD $API_KEY"'],
      ],
      { env: env() },
    );
    expect(result).toMatchObject({ code: 0, stdout: 'hunter2 k-1\n', stderr: '' });
    expect(readFileSync(fa, 'utf8')).toBe('DB_PASSWORD=hunter2\n');
    expect(readFileSync(fb, 'utf8')).toBe('{"API_KEY": "k-1"}');
  });
});

interface FailureCase {
  name: string;
  code: number;
  message: RegExp;
  /** Seeds the secret (or not) and returns the --source and any extra arguments. */
  args: (id: string) => Promise<string[]> | string[];
  /** Retries are logged as warnings before the error line. */
  retried?: boolean;
}

const payload = `TOKEN=${CANARY}\n`;
const source = (id: string, version?: string) => ['--source', `sm://${PROJECT}/${id}${version ? `#${version}` : ''}`];
const stored = (id: string, ...payloads: string[]) => {
  sm().createSecret(secretName(id));
  return payloads.map((p) => sm().addVersion(secretName(id), p));
};

const FAILURES: FailureCase[] = [
  {
    name: 'a malformed sm:// reference',
    code: EXIT.usage,
    message:
      /^--source sm:\/\/demo-project: not a Secret Manager secret name \(write sm:\/\/PROJECT\/SECRET\[#VERSION\] or projects\/PROJECT\/secrets\/SECRET\/versions\/VERSION\)$/,
    args: () => ['--source', `sm://${PROJECT}`],
  },
  {
    name: 'a secret that does not exist',
    code: EXIT.notFound,
    message:
      /^sm:\/\/demo-project\/\S+#latest: secret \S+ does not exist in project demo-project, or has no versions \(check the project and secret ID: gcloud secrets list --project demo-project\)$/,
    args: (id) => source(id),
  },
  {
    name: 'a secret with no versions',
    code: EXIT.notFound,
    message: /#latest: secret \S+ does not exist in project demo-project, or has no versions/,
    args: (id) => {
      stored(id);
      return source(id);
    },
  },
  {
    name: 'a version that does not exist',
    code: EXIT.notFound,
    message:
      /^sm:\/\/demo-project\/\S+#7: secret \S+ in project demo-project has no version 7, or does not exist \(list its versions: gcloud secrets versions list \S+ --project demo-project\)$/,
    args: (id) => {
      stored(id, payload);
      return source(id, '7');
    },
  },
  {
    name: 'an alias that does not exist',
    code: EXIT.notFound,
    message: /#canary: secret \S+ in project demo-project has no version aliased "canary", or does not exist/,
    args: (id) => {
      stored(id, payload);
      return source(id, 'canary');
    },
  },
  {
    name: 'access denied',
    code: EXIT.permission,
    message:
      /^permission denied to access sm:\/\/demo-project\/(\S+)#latest \(or the secret does not exist\) \(grant roles\/secretmanager\.secretAccessor on the secret to the service account this runs as: gcloud secrets add-iam-policy-binding \1 --project demo-project --member=serviceAccount:SA --role=roles\/secretmanager\.secretAccessor\)$/,
    args: (id) => {
      stored(id, payload);
      sm().denySecret(secretName(id));
      return source(id);
    },
  },
  {
    name: 'latest is disabled (an older version is enabled)',
    code: EXIT.notFound,
    message:
      /#latest: the latest version \(2\) of secret \S+ is disabled \(enable it: gcloud secrets versions enable 2 --secret \S+ --project demo-project, or pin an enabled version with #N/,
    args: (id) => {
      stored(id, payload, payload);
      sm().setVersionState(secretName(id), '2', 'DISABLED');
      return source(id);
    },
  },
  {
    name: 'a destroyed version',
    code: EXIT.notFound,
    message: /#1: version 1 of secret \S+ is destroyed \(its data is gone: add a new version/,
    args: (id) => {
      stored(id, payload);
      sm().setVersionState(secretName(id), '1', 'DESTROYED');
      return source(id, '1');
    },
  },
  {
    name: 'a disabled version behind an alias',
    code: EXIT.notFound,
    message: /#prod: the version aliased "prod" \(1\) of secret \S+ is disabled/,
    args: (id) => {
      stored(id, payload, payload);
      sm().setAlias(secretName(id), 'prod', '1');
      sm().setVersionState(secretName(id), '1', 'DISABLED');
      return source(id, 'prod');
    },
  },
  {
    name: 'a payload whose dataCrc32c does not match',
    code: EXIT.integrity,
    message:
      /^sm:\/\/demo-project\/\S+#latest \(version 1\): the payload does not match its dataCrc32c \(the response was corrupted in transit; run again\)$/,
    args: (id) => {
      stored(id, payload);
      sm().corruptNextCrc();
      return source(id);
    },
  },
  {
    name: 'a payload without dataCrc32c',
    code: EXIT.integrity,
    message:
      /#1: the response has no usable dataCrc32c, so the payload cannot be verified \(Secret Manager sends one with every payload; check --secret-manager-endpoint\)$/,
    args: (id) => {
      stored(id, payload);
      const name = `projects/${sm().projectNumber(PROJECT)}/secrets/${id}/versions/1`;
      sm().failNext({ path: /:access$/ }, [
        { status: 200, body: { name, payload: { data: Buffer.from(payload).toString('base64') } } },
      ]);
      return source(id, '1');
    },
  },
  {
    name: 'an answer for another version than the one pinned',
    code: EXIT.integrity,
    message: /#1: asked for version 1, got 2$/,
    args: (id) => {
      stored(id, payload, payload);
      const name = `projects/${sm().projectNumber(PROJECT)}/secrets/${id}/versions/2`;
      const data = Buffer.from(payload);
      sm().failNext({ path: /:access$/ }, [
        { status: 200, body: { name, payload: { data: data.toString('base64'), dataCrc32c: '0' } } },
      ]);
      return source(id, '1');
    },
  },
  {
    name: 'a payload over --max-size',
    code: EXIT.integrity,
    message:
      /^sm:\/\/demo-project\/\S+#latest \(version 1\) is 2\d{3} bytes, more than the 1024-byte limit \(is this the right secret\? raise --max-size if it is\)$/,
    args: (id) => {
      stored(id, `TOKEN=${CANARY}${'x'.repeat(2000)}\n`);
      return [...source(id), '--max-size', '1KiB'];
    },
  },
  {
    name: 'a KMS-encrypted payload with the wrong key',
    code: EXIT.integrity,
    message:
      /^cannot decrypt sm:\/\/demo-project\/\S+ with .*cryptoKeys\/other: the ciphertext does not match this key/,
    args: (id) => {
      sm().createSecret(secretName(id));
      sm().addVersion(secretName(id), servers.kms.encrypt(KEY, Buffer.from(payload)));
      return [...source(id), '--kms-key', OTHER_KEY];
    },
  },
  {
    name: '503 on every attempt',
    code: EXIT.unavailable,
    message:
      /^Secret Manager answered 503 UNAVAILABLE for sm:\/\/demo-project\/\S+#latest after \d+ attempts; no time left within the --timeout of 2s \(the service is failing; try again later, or raise --timeout\)$/,
    retried: true,
    args: (id) => {
      stored(id, payload);
      // Retries last as long as --timeout allows: a storm that outlasts it ends the run with 69.
      sm().failNext(
        { path: /:access$/ },
        Array.from({ length: 1000 }, () => ({ status: 503 })),
      );
      return [...source(id), '--timeout', '2s'];
    },
  },
  {
    name: 'a stalled request past --timeout',
    code: EXIT.unavailable,
    message:
      /^could not access sm:\/\/demo-project\/\S+#latest within the --timeout of 1s \(the service is slow or unreachable; check the endpoint, or raise --timeout\)$/,
    args: (id) => {
      stored(id, payload);
      sm().failNext({ path: /:access$/ }, ['stall']);
      return [...source(id), '--timeout', '1s'];
    },
  },
];

describe('sm:// failures: the exit code, one line naming the secret, no file, no command, no canary', () => {
  it.each(FAILURES.map((f) => [f.name, f] as const))('%s', async (_name, failure) => {
    const id = freshId('fail');
    const marker = join(out.dir, 'started');
    const target = join(out.dir, 'secret.env');
    const args = [
      ...(await failure.args(id)),
      ...['--format', 'dotenv', '--out', target, '--env', '--', 'sh', '-c', `touch ${marker}`],
    ];
    const result = await runBinary(args, { env: env() });
    sm().releaseStalled();
    const prefix = /^secret-fetch: error: /;
    if (failure.retried) {
      expect(result.code, result.stderr).toBe(failure.code);
      const lines = result.stderr.trimEnd().split('\n');
      expect(lines.length, result.stderr).toBeGreaterThan(1);
      expect(lines.slice(0, -1).every((l) => /^secret-fetch: warning: attempt \d+ to access sm:\/\//.test(l))).toBe(
        true,
      );
      expect(lines.at(-1)?.replace(prefix, '')).toMatch(failure.message);
      expect(result.stdout).toBe('');
      expectNoCanary(result, [CANARY]);
    } else {
      expectFailure(result, failure.code, prefix, [CANARY]);
      expect(result.stderr.trimEnd().replace(prefix, '')).toMatch(failure.message);
    }
    expect(existsSync(marker)).toBe(false);
    expect(filesIn(out.dir)).toEqual([]);
  });
});

describe('sm:// transient failures are retried', () => {
  // gax errors carry no response headers, so a 429's Retry-After is not seen: our backoff applies.
  it('429, 503 and a reset, then the payload', async () => {
    const id = freshId();
    await seed(id, 'A=ok\n');
    sm().failNext({ path: /:access$/ }, [{ status: 429, headers: { 'Retry-After': '1' } }, { status: 503 }, 'reset']);
    const result = await runBinary(
      ['--source', `sm://${PROJECT}/${id}`, '--format', 'dotenv', '--env', '--', 'sh', '-c', 'echo $A'],
      { env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('ok\n');
    const warnings = result.stderr.trimEnd().split('\n');
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toMatch(
      new RegExp(
        `^secret-fetch: warning: attempt 1 to access sm://${PROJECT}/${id}#latest failed \\(Secret Manager answered 429 RESOURCE_EXHAUSTED for .*\\); retrying in (\\d+) ms \\(Retry-After\\)$`,
      ),
    );
    // The thin reader keeps the response, so the 429's Retry-After (1 s) is a floor on the wait.
    expect(Number(/retrying in (\d+) ms/.exec(warnings[0] ?? '')?.[1])).toBeGreaterThanOrEqual(1000);
    expect(warnings[1]).toMatch(/attempt 2 to access .* failed \(Secret Manager answered 503 UNAVAILABLE for /);
    expect(warnings[2]).toMatch(/attempt 3 to access .* failed \(.*ECONNRESET\)/);
    expect(accesses()).toHaveLength(4);
  });
});

describe('--refresh with sm://', () => {
  const supervised = (id: string, file: string, ...extra: string[]) =>
    spawnBinary(
      [
        ...['--source', `sm://${PROJECT}/${id}`, '--format', 'dotenv', '--out', file],
        ...['--supervise', '--refresh', '200ms', ...extra, '--', FIXTURE],
      ],
      { env: { ...env(), READ_ON_HUP: file } },
    );
  const polls = (id: string, version = 'latest') =>
    sm().requests.filter((r) => r.method === 'GET' && r.path === `/v1/${secretName(id)}/versions/${version}`).length;

  it('polls latest by its metadata, picks up a new version, rewrites the file and sends SIGHUP', async () => {
    const id = freshId('rotating');
    await seed(id, 'GREETING=one\n');
    const file = join(out.dir, 'app.env');
    const run = supervised(id, file);
    await run.line(/^ready/);
    const before = statSync(file).ino;
    // Polling reads version metadata only: nothing is accessed while nothing changes.
    sm().requests.length = 0;
    await until(() => polls(id) >= 2);
    expect(accesses()).toEqual([]);

    const [version] = await seed(id, 'GREETING=two\n');
    await run.line(/^file GREETING=two$/);
    expect(readFileSync(file, 'utf8')).toBe('GREETING=two\n');
    expect(statSync(file).ino).not.toBe(before);
    // Fetched at exactly the version the poll saw, not latest again.
    expect(accesses()).toEqual([`/v1/${secretName(id)}/versions/${version}:access`]);
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trimEnd().split('\n').slice(1)).toEqual(['got SIGHUP', 'file GREETING=two', 'got SIGTERM']);
    expect(result.stderr).toContain(`sm://${PROJECT}/${id} (now version 2) changed: rewrote ${file}; sent SIGHUP`);
    expect(result.stderr).not.toContain('two');
  });

  it('follows an alias that moves, and restarts the command with the new environment', async () => {
    const id = freshId('aliased');
    await seed(id, 'GREETING=one\n', 'GREETING=two\n');
    sm().setAlias(secretName(id), 'live', '1');
    const run = spawnBinary(
      [
        ...['--source', `sm://${PROJECT}/${id}#live`, '--format', 'dotenv', '--env'],
        ...['--supervise', '--refresh', '200ms', '--on-change', 'restart', '--', FIXTURE],
      ],
      { env: { ...env(), SHOW_ENV: 'GREETING', EXIT_ON_STOP: '0' } },
    );
    await run.line(/^ready pid=\d+ GREETING=one$/);
    await until(() => polls(id, 'live') >= 1);
    sm().setAlias(secretName(id), 'live', '2');
    await run.line(/^ready pid=\d+ GREETING=two$/);
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(accesses()).toEqual([
      `/v1/${secretName(id)}/versions/live:access`,
      `/v1/${secretName(id)}/versions/2:access`,
    ]);
  });

  it('never polls a pinned version number', async () => {
    const [pinned, moving] = [freshId('pinned'), freshId('moving')];
    await seed(pinned, 'A=1\n');
    await seed(moving, 'B=1\n');
    const run = spawnBinary(
      [
        ...['--source', `sm://${PROJECT}/${pinned}#1`, '--source', `sm://${PROJECT}/${moving}`],
        ...['--format', 'dotenv', '--env', '--supervise', '--refresh', '200ms', '--', FIXTURE],
      ],
      { env: env() },
    );
    await run.line(/^ready/);
    await until(() => polls(moving) >= 3);
    expect(
      sm()
        .requests.filter((r) => r.path.includes(`/secrets/${pinned}/`))
        .map((r) => r.path),
    ).toEqual([`/v1/${secretName(pinned)}/versions/1:access`]);
    process.kill(run.pid, 'SIGTERM');
    expect((await run.done).code).toBe(0);
  });

  it('with only secretAccessor, a poll warns which role --refresh needs and keeps the command', async () => {
    const id = freshId('accessor-only');
    await seed(id, 'GREETING=one\n');
    sm().grant(secretName(id), ['secretmanager.versions.access']);
    const file = join(out.dir, 'app.env');
    const run = supervised(id, file);
    await run.line(/^ready/);
    const warning = await run.errorLine(/refresh failed/);
    expect(warning).toMatch(
      new RegExp(
        `^secret-fetch: warning: refresh failed, keeping the current secrets and command: permission denied to read the version metadata of sm://${PROJECT}/${id}#latest, which --refresh polls \\(grant roles/secretmanager\\.viewer on the secret as well \\(secretmanager\\.versions\\.get\\): gcloud secrets add-iam-policy-binding ${id} --project ${PROJECT} --member=serviceAccount:SA --role=roles/secretmanager\\.viewer\\); next try in `,
      ),
    );
    expect(readFileSync(file, 'utf8')).toBe('GREETING=one\n');
    process.kill(run.pid, 'SIGTERM');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trimEnd().split('\n').slice(1)).toEqual(['got SIGTERM']);
  });
});
