// The built binary against the GCS and KMS test servers: the happy path, each failure class,
// and what exec leaves behind.

import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers } from '../servers/start.ts';
import {
  BINARY,
  expectFailure,
  expectNoCanary,
  filesIn,
  KEY,
  OTHER_KEY,
  ROOT,
  runBinary,
  tmpfsDir,
} from './harness.ts';

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;

const CANARY_KEY = `canary-${randomBytes(8).toString('hex')}`;
const CANARY_DB = `pw-${randomBytes(8).toString('hex')}`;
const PYFILE = `# Flask settings, loaded with app.config.from_pyfile
SECRET_KEY = "${CANARY_KEY}"
SQLALCHEMY_DATABASE_URI = 'postgresql://app:${CANARY_DB}@db/app'
DEBUG = False
ADMINS = ["ops@example.com"]
PORT = 8080
`;

let out: { dir: string; cleanup: () => void };

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  servers.kms.createKey(OTHER_KEY);
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app/secrets.cfg.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(PYFILE)),
  );
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app/plain.env',
    Buffer.from(`API_TOKEN=${CANARY_KEY}\nHOME=/from-secret\n`),
  );
});
afterAll(async () => servers?.close());
beforeEach(() => {
  out = tmpfsDir();
});
afterEach(() => out.cleanup());

const env = () => ({ ...servers.env });
const source = (object = 'app/secrets.cfg.enc') => ['--source', `gs://vault/${object}`];
const CANARIES = [CANARY_KEY, CANARY_DB];

describe('fetch, decrypt, write, inject, exec', () => {
  it('runs the ENTRYPOINT pattern end to end, in the same process', async () => {
    const cfg = join(out.dir, 'app.cfg');
    const result = await runBinary(
      [
        ...source(),
        '--kms-key',
        KEY,
        '--out',
        cfg,
        '--env',
        '--',
        'sh',
        '-c',
        'echo "pid=$$ key=$SECRET_KEY debug=$DEBUG admins=$ADMINS port=$PORT"',
      ],
      { env: env() },
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `pid=${result.pid} key=${CANARY_KEY} debug=false admins=["ops@example.com"] port=8080\n`,
    );
    expect(readFileSync(cfg, 'utf8')).toBe(PYFILE);
    expect(lstatSync(cfg).mode & 0o777).toBe(0o400);
    expect(filesIn(out.dir)).toEqual(['app.cfg']);
  });

  it('reads the object in one GET, whose headers pin its generation, length and CRC32C', async () => {
    const cfg = join(out.dir, 'app.cfg');
    servers.gcs.requests.length = 0;
    const result = await runBinary([...source(), '--kms-key', KEY, '--out', cfg, '--verbose'], { env: env() });
    expect(result.code, result.stderr).toBe(0);
    const reads = servers.gcs.requests.filter((r) => r.method === 'GET');
    expect(reads.map((r) => r.query)).toEqual([{ alt: 'media' }]);
    const generation = servers.gcs.getObject('vault', 'app/secrets.cfg.enc')?.generation;
    expect(result.stderr).toContain(`fetched gs://vault/app/secrets.cfg.enc at generation ${generation}:`);
  });

  it('reads the metadata first, then exactly that generation, when the download lacks those headers', async () => {
    const cfg = join(out.dir, 'app.cfg');
    servers.gcs.requests.length = 0;
    // An emulator that sends no x-goog-generation, x-goog-stored-content-length or x-goog-hash.
    servers.gcs.failNext({ method: 'GET', query: { alt: 'media' } }, [{ status: 200, body: 'not the object' }]);
    const result = await runBinary([...source(), '--kms-key', KEY, '--out', cfg], { env: env() });
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(cfg, 'utf8')).toBe(PYFILE);
    const reads = servers.gcs.requests.filter((r) => r.method === 'GET');
    expect(reads).toHaveLength(3);
    expect(reads[1]?.query.alt).toBeUndefined();
    expect(reads[2]?.query).toMatchObject({ alt: 'media' });
    expect(reads[2]?.query.generation).toMatch(/^[0-9]+$/);
  });

  it('reads an older generation when the URI pins one', async () => {
    const first = await uploadObject(servers.gcs.url, 'vault', 'app/versioned.env', Buffer.from('V=one\n'));
    await uploadObject(servers.gcs.url, 'vault', 'app/versioned.env', Buffer.from('V=two\n'));
    const latest = await runBinary([...source('app/versioned.env'), '--env', '--', 'sh', '-c', 'echo $V'], {
      env: env(),
    });
    expect(latest.stdout).toBe('two\n');
    const pinned = await runBinary([...source(`app/versioned.env#${first}`), '--env', '--', 'sh', '-c', 'echo $V'], {
      env: env(),
    });
    expect(pinned.stdout).toBe('one\n');
  });

  it('writes the outputs and exits 0 without a command (init container)', async () => {
    const file = join(out.dir, 'plain.env');
    const result = await runBinary([...source('app/plain.env'), '--out', file, '--mode', '0440'], { env: env() });
    expect(result).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(readFileSync(file, 'utf8')).toContain('API_TOKEN=');
    expect(lstatSync(file).mode & 0o777).toBe(0o440);
  });

  it('lets secrets override inherited variables and keeps the rest', async () => {
    const result = await runBinary([...source('app/plain.env'), '--env', '--', 'sh', '-c', 'echo "$HOME $KEEP"'], {
      env: { ...env(), HOME: '/image-default', KEEP: 'kept' },
    });
    expect(result.stdout).toBe('/from-secret kept\n');
  });

  it('passes on no SECRET_FETCH_* variable and takes options from them', async () => {
    const result = await runBinary(['--', 'sh', '-c', 'env | grep -c ^SECRET_FETCH_ ; echo "$API_TOKEN" | wc -c'], {
      env: { ...env(), SECRET_FETCH_SOURCE: 'gs://vault/app/plain.env', SECRET_FETCH_ENV: '1' },
    });
    expect(result.stdout.split('\n').slice(0, 2)).toEqual(['0', String(CANARY_KEY.length + 1)]);
  });

  it("exits with the command's own status and runs it in --chdir", async () => {
    const result = await runBinary(
      [...source('app/plain.env'), '--env', '--chdir', '/usr', '--', 'sh', '-c', 'pwd; exit 7'],
      {
        env: env(),
      },
    );
    expect(result).toMatchObject({ code: 7, stdout: '/usr\n' });
  });

  it('hands the command default SIGPIPE/SIGXFSZ, a blocking stdout and no extra fd', async () => {
    const script = [
      'grep SigIgn /proc/self/status',
      'awk \'/^flags/ {print "flags", $2}\' /proc/self/fdinfo/1',
      'echo fds $(ls /proc/$$/fd | sort -n)',
    ].join('; ');
    const result = await runBinary([...source('app/plain.env'), '--env', '--', 'sh', '-c', script], { env: env() });
    expect(result.code, result.stderr).toBe(0);
    const ignored = BigInt(`0x${/SigIgn:\s*([0-9a-f]+)/.exec(result.stdout)?.[1]}`);
    expect(ignored & (1n << 12n)).toBe(0n); // SIGPIPE (13)
    expect(ignored & (1n << 24n)).toBe(0n); // SIGXFSZ (25)
    const flags = Number.parseInt(/flags (\d+)/.exec(result.stdout)?.[1] ?? 'x', 8);
    expect(flags & 0o4000).toBe(0); // O_NONBLOCK
    // The same shell started directly: whatever fds it has, secret-fetch must add none.
    const direct = await runBinary(['-c', 'echo fds $(ls /proc/$$/fd | sort -n)'], { command: 'sh' });
    expect(/fds .*/.exec(result.stdout)?.[0]).toBe(direct.stdout.trim());
  });

  it('loses no byte of a large output through a pipe', async () => {
    const result = await runBinary(
      [...source('app/plain.env'), '--env', '--', 'sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" x'],
      {
        env: env(),
      },
    );
    expect(result.code).toBe(0);
    expect(result.stdout.length).toBe(3_000_000);
  });

  it('says what it does with --verbose, never the values', async () => {
    const result = await runBinary(
      [...source(), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), '--env', '--verbose', '--', 'true'],
      {
        env: env(),
      },
    );
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/fetched gs:\/\/vault\/app\/secrets.cfg.enc at generation \d+/);
    expect(result.stderr).toMatch(/SECRET_KEY, SQLALCHEMY_DATABASE_URI, DEBUG, ADMINS, PORT/);
    expectNoCanary(result, CANARIES);
  });
});

describe('failures: one line, a distinct code, no file, no command', () => {
  let marker: string;
  beforeEach(() => {
    marker = join(out.dir, 'command-ran');
  });
  const command = () => ['--', 'sh', '-c', `touch ${marker}`];
  const expectNothingLeft = () => expect(filesIn(out.dir)).toEqual([]);

  it('a missing object', async () => {
    const result = await runBinary(
      [...source('app/nope.cfg.enc'), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), ...command()],
      { env: env() },
    );
    expectFailure(result, EXIT.notFound, /gs:\/\/vault\/app\/nope\.cfg\.enc does not exist \(check the bucket/);
    expectNothingLeft();
  });

  it('a missing generation', async () => {
    const result = await runBinary(
      [...source('app/secrets.cfg.enc#1'), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), ...command()],
      { env: env() },
    );
    expectFailure(result, EXIT.notFound, /secrets\.cfg\.enc#1 does not exist/);
    expectNothingLeft();
  });

  it('access denied to the object', async () => {
    await uploadObject(servers.gcs.url, 'vault', 'app/denied.env', Buffer.from(`X=${CANARY_KEY}\n`));
    servers.gcs.denyObject('vault', 'app/denied.env');
    const result = await runBinary([...source('app/denied.env'), '--out', join(out.dir, 'a.env'), ...command()], {
      env: env(),
    });
    expectFailure(
      result,
      EXIT.permission,
      /access denied to gs:\/\/vault\/app\/denied\.env \(grant storage\.objects\.get/,
      CANARIES,
    );
    expectNothingLeft();
  });

  it('a download corrupted in transit', async () => {
    servers.gcs.corruptNextMedia();
    const result = await runBinary([...source('app/plain.env'), '--out', join(out.dir, 'a.env'), ...command()], {
      env: env(),
    });
    expectFailure(result, EXIT.integrity, /do not match the object's (CRC32C|checksum)/, CANARIES);
    expectNothingLeft();
  });

  it('a ciphertext encrypted under another key', async () => {
    const result = await runBinary(
      [...source(), '--kms-key', OTHER_KEY, '--out', join(out.dir, 'a.cfg'), ...command()],
      { env: env() },
    );
    expectFailure(
      result,
      EXIT.integrity,
      /cannot decrypt gs:\/\/vault\/app\/secrets\.cfg\.enc with .*cryptoKeys\/other: the ciphertext does not match this key/,
    );
    expectNothingLeft();
  });

  it('a tampered ciphertext', async () => {
    const ciphertext = await encryptWithKms(servers.kms.url, KEY, Buffer.from(PYFILE));
    ciphertext.writeUInt8(ciphertext.readUInt8(ciphertext.length - 5) ^ 0x01, ciphertext.length - 5);
    await uploadObject(servers.gcs.url, 'vault', 'app/tampered.cfg.enc', ciphertext);
    const result = await runBinary(
      [...source('app/tampered.cfg.enc'), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), ...command()],
      { env: env() },
    );
    expectFailure(result, EXIT.integrity, /does not match this key/, CANARIES);
    expectNothingLeft();
  });

  it('a KMS key that does not exist', async () => {
    const missing = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/missing';
    const result = await runBinary([...source(), '--kms-key', missing, '--out', join(out.dir, 'a.cfg'), ...command()], {
      env: env(),
    });
    expectFailure(result, EXIT.notFound, /KMS key .*cryptoKeys\/missing does not exist/);
    expectNothingLeft();
  });

  it('permission denied on the KMS key', async () => {
    const denied = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/denied';
    servers.kms.createKey(denied);
    servers.kms.denyKey(denied);
    const result = await runBinary([...source(), '--kms-key', denied, '--out', join(out.dir, 'a.cfg'), ...command()], {
      env: env(),
    });
    expectFailure(
      result,
      EXIT.permission,
      /permission denied to decrypt with .*cryptoKeys\/denied \(grant roles\/cloudkms\.cryptoKeyDecrypter/,
    );
    expectNothingLeft();
  });

  it('a plaintext whose CRC32C KMS reports wrongly', async () => {
    servers.kms.corruptNextPlaintextCrc();
    const result = await runBinary([...source(), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), ...command()], {
      env: env(),
    });
    expectFailure(result, EXIT.integrity, /CRC32C does not match/, CANARIES);
    expectNothingLeft();
  });

  it('a service that stays down past --timeout: retried until the deadline, then 69 naming the last failure', async () => {
    // More 503s than any run can ask for within the deadline: only the deadline can end the retrying.
    servers.gcs.failNext(
      { method: 'GET' },
      Array.from({ length: 1000 }, () => ({ status: 503 })),
    );
    try {
      const result = await runBinary(
        [...source(), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), '--timeout', '2s', ...command()],
        { env: env() },
      );
      expect(result.code, result.stderr).toBe(EXIT.unavailable);
      const lines = result.stderr.trimEnd().split('\n');
      const last = lines.pop() as string;
      expect(last).toMatch(/^secret-fetch: error: /);
      expect(last).toMatch(/Cloud Storage answered 503 for gs:\/\/vault\/app\/secrets\.cfg\.enc after \d+ attempts?/);
      expect(last).toMatch(/the --timeout of 2s.* \(the service is failing; try again later, or raise --timeout\)$/);
      // Every line before it is one logged retry: attempt, failure with its status, delay.
      expect(lines.length).toBeGreaterThanOrEqual(1);
      for (const [i, line] of lines.entries()) {
        expect(line).toMatch(
          new RegExp(
            `^secret-fetch: warning: attempt ${i + 1} to download gs://vault/app/secrets\\.cfg\\.enc failed \\(Cloud Storage answered 503 for .*\\); retrying in \\d+ ms$`,
          ),
        );
      }
      expect(servers.gcs.pendingFaults).toBeGreaterThan(900);
      expectNothingLeft();
    } finally {
      servers.gcs.reset();
    }
  });

  it('rides out a passing 503 on each service', async () => {
    servers.gcs.failNext({ method: 'GET' }, [{ status: 503 }]);
    servers.kms.failNext({ method: 'POST' }, [
      { status: 503, body: { error: { code: 503, message: 'busy', status: 'UNAVAILABLE' } } },
    ]);
    const result = await runBinary([...source(), '--kms-key', KEY, '--env', '--', 'sh', '-c', 'echo $PORT'], {
      env: env(),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('8080\n');
    expect(result.stderr.match(/retrying/g)).toHaveLength(2);
  });

  it('a stalled server, bounded by --timeout', async () => {
    servers.gcs.failNext({ method: 'GET' }, ['stall']);
    const started = Date.now();
    const result = await runBinary(
      [...source(), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), '--timeout', '1s', ...command()],
      { env: env() },
    );
    expectFailure(
      result,
      EXIT.unavailable,
      /could not download gs:\/\/vault\/app\/secrets\.cfg\.enc within the --timeout of 1s/,
    );
    expect(Date.now() - started).toBeLessThan(10_000);
    expectNothingLeft();
  });

  it('a stalled connection costs a third of --timeout, not all of it: abandoned, retried on a fresh one', async () => {
    servers.gcs.failNext({ method: 'GET' }, ['stall']);
    const started = Date.now();
    const result = await runBinary(
      [...source(), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), '--timeout', '9s', ...command()],
      { env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(
      /^secret-fetch: warning: attempt 1 to download gs:\/\/vault\/app\/secrets\.cfg\.enc failed \(no answer within (3s|29[0-9]{2}ms); abandoned\); retrying in \d+ ms\n$/,
    );
    expect(Date.now() - started).toBeLessThan(9_000);
  });

  it('SIGTERM during a fetch: exit 143, no temp file, no command', async () => {
    servers.gcs.failNext({ method: 'GET' }, ['stall']);
    servers.gcs.requests.length = 0;
    const result = await runBinary([...source(), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), ...command()], {
      env: env(),
      // Once the fetch is under way (its request reached the server), not after a fixed delay: on
      // a loaded machine the process may not have started its own code by then.
      onSpawn: (pid) => {
        const poll = setInterval(() => {
          if (servers.gcs.requests.length === 0) return;
          clearInterval(poll);
          process.kill(pid, 'SIGTERM');
        }, 20);
      },
    });
    expectFailure(result, 143, /interrupted by SIGTERM before the command started/);
    expectNothingLeft();
  });

  it('a malformed pyfile names file, line and column, never the value', async () => {
    const bad = `SECRET_KEY = "${CANARY_KEY}"\nTOKEN = os.environ["${CANARY_DB}"]\n`;
    await uploadObject(
      servers.gcs.url,
      'vault',
      'app/bad.cfg.enc',
      await encryptWithKms(servers.kms.url, KEY, Buffer.from(bad)),
    );
    const result = await runBinary(
      [...source('app/bad.cfg.enc'), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), ...command()],
      { env: env() },
    );
    expectFailure(result, EXIT.format, /gs:\/\/vault\/app\/bad\.cfg\.enc:2:9: /, CANARIES);
    expectNothingLeft();
  });

  it('a target directory on disk', async () => {
    const disk = mkdtempSync(join(ROOT, '.it-disk-'));
    try {
      const result = await runBinary([...source(), '--kms-key', KEY, '--out', join(disk, 'a.cfg'), ...command()], {
        env: env(),
      });
      expectFailure(result, EXIT.output, /refusing to write .*a\.cfg: .* is not on tmpfs or ramfs/);
      expect(filesIn(disk)).toEqual([]);
      const allowed = await runBinary([...source(), '--kms-key', KEY, '--out', join(disk, 'a.cfg'), '--allow-disk'], {
        env: env(),
      });
      expect(allowed.code, allowed.stderr).toBe(0);
      expect(readFileSync(join(disk, 'a.cfg'), 'utf8')).toBe(PYFILE);
    } finally {
      rmSync(disk, { recursive: true, force: true });
    }
    expect(existsSync(marker)).toBe(false);
  });

  it('a command that does not exist (127) or cannot be executed (126), checked before any output', async () => {
    const missing = await runBinary(
      [...source(), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), '--', 'no-such-command-xyz'],
      { env: env() },
    );
    expectFailure(missing, 127, /no-such-command-xyz/);
    const script = join(out.dir, 'not-executable');
    writeFileSync(script, '#!/bin/sh\necho hi\n');
    chmodSync(script, 0o644);
    const denied = await runBinary([...source(), '--kms-key', KEY, '--out', join(out.dir, 'a.cfg'), '--', script], {
      env: env(),
    });
    expectFailure(denied, 126, /not-executable/);
    expect(filesIn(out.dir)).toEqual(['not-executable']);
  });

  it('a usage error', async () => {
    const result = await runBinary([...source()], { env: env() });
    expectFailure(
      result,
      EXIT.usage,
      /no --out and no --env: nothing would receive the secret \(add --out PATH, --env, or both\)/,
    );
  });

  it('writes Cloud Logging JSON lines with --log-format json', async () => {
    const result = await runBinary([...source('app/nope.env'), '--env', '--log-format', 'json', '--', 'true'], {
      env: env(),
    });
    expect(result.code).toBe(EXIT.notFound);
    const entry = JSON.parse(result.stderr);
    expect(entry).toMatchObject({ severity: 'ERROR', message: expect.stringMatching(/nope\.env does not exist/) });
  });
});

describe('the binary itself', () => {
  it('prints its version from any directory, with no node_modules and no node on PATH', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    const result = await runBinary(['--version'], { cwd: '/', env: { PATH: '/nonexistent' } });
    expect(result).toMatchObject({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });

  it('loads every lazy group from itself, with no node_modules anywhere above it', async () => {
    // A copy outside the repository: Google clients, YAML, TOML and the subcommands must come
    // from the executable's own assets, not from a node_modules the resolver could find.
    const alone = tmpfsDir();
    try {
      const copy = join(alone.dir, 'secret-fetch');
      writeFileSync(copy, readFileSync(BINARY), { mode: 0o755 });
      writeFileSync(join(alone.dir, 'a.yaml'), 'A: yaml\n');
      writeFileSync(join(alone.dir, 'b.toml'), 'B = "toml"\n');
      const run = (args: string[]) => runBinary(args, { command: copy, cwd: '/', env: env() });
      const files = await run([
        ...['--source', join(alone.dir, 'a.yaml'), '--source', join(alone.dir, 'b.toml'), '--env'],
        ...['--', 'sh', '-c', 'echo "$A $B"'],
      ]);
      expect(files).toMatchObject({ code: 0, stdout: 'yaml toml\n', stderr: '' });
      const cloud = await run([...source(), '--kms-key', KEY, '--out', join(out.dir, 'app.cfg')]);
      expect(cloud).toMatchObject({ code: 0, stderr: '' });
      const show = await run(['show', 'gs://vault/app/plain.env']);
      expect(show).toMatchObject({ code: 0, stdout: `API_TOKEN=${CANARY_KEY}\nHOME=/from-secret\n` });
    } finally {
      alone.cleanup();
    }
  });

  it('documents every flag and exit code in --help', async () => {
    const result = await runBinary(['--help']);
    expect(result.code).toBe(0);
    for (const flag of [
      '--source',
      '--kms-key',
      '--out',
      '--env',
      '--format',
      '--mode',
      '--allow-disk',
      '--chdir',
      '--timeout',
      '--log-format',
    ]) {
      expect(result.stdout).toContain(flag);
    }
    for (const code of Object.values(EXIT)) expect(result.stdout).toMatch(new RegExp(`^  ${code} `, 'm'));
  });

  it('is a single self-contained file', () => {
    expect(lstatSync(BINARY).isFile()).toBe(true);
    expect(lstatSync(BINARY).mode & 0o111).not.toBe(0);
  });
});
