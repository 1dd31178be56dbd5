// As a container runtime runs it: PID 1 of a fresh PID namespace, writing to a tmpfs mounted in a
// fresh mount namespace. Needs root (CI and the dev machines run as root) and util-linux unshare.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers } from '../servers/start.ts';
import { BINARY, expectNoCanary, KEY, ROOT, runBinary } from './harness.ts';

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;
let mountPoint: string;
const CANARY = `canary-${randomBytes(8).toString('hex')}`;

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  const cfg = `SECRET_KEY = "${CANARY}"\nWORKERS = 2\n`;
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app/secrets.cfg.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(cfg)),
  );
  await uploadObject(servers.gcs.url, 'vault', 'big.bin', randomBytes(16 * 1024));
  // A directory on disk: only the tmpfs each test mounts over it makes it acceptable.
  mountPoint = mkdtempSync(join(ROOT, '.it-mnt-'));
});
afterAll(async () => {
  await servers?.close();
  if (mountPoint) rmSync(mountPoint, { recursive: true, force: true });
});

const fetchArgs = () => ['--source', 'gs://vault/app/secrets.cfg.enc', '--kms-key', KEY];

describe('as PID 1 in a container', () => {
  it('execs the command, which keeps PID 1, with nothing of Node left', async () => {
    const result = await runBinary(
      [
        '--pid',
        '--fork',
        '--mount-proc',
        BINARY,
        ...fetchArgs(),
        '--env',
        '--',
        'sh',
        '-c',
        'echo "pid=$$ workers=$WORKERS"; ps -e -o pid=,comm=',
      ],
      { command: 'unshare', env: servers.env },
    );
    expect(result.code, result.stderr).toBe(0);
    const [first, ...processes] = result.stdout.trimEnd().split('\n');
    expect(first).toBe('pid=1 workers=2');
    const names = processes.map((line) => line.trim().split(/\s+/)[1]);
    expect(names).toEqual(['sh', 'ps']);
    expectNoCanary(result, [CANARY]);
  });

  it('exits 143 on SIGTERM as PID 1 while fetching, leaving nothing and starting nothing', async () => {
    servers.gcs.failNext({ method: 'GET' }, ['stall']);
    const result = await runBinary(
      ['--pid', '--fork', '--mount-proc', BINARY, ...fetchArgs(), '--env', '--', 'sh', '-c', 'echo started'],
      {
        command: 'unshare',
        env: servers.env,
        // unshare forks the binary; signal that child (PID 1 inside) from the host side.
        onSpawn: (pid) =>
          setTimeout(() => {
            const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
            process.kill(Number(children.split(' ')[0]), 'SIGTERM');
          }, 700),
      },
    );
    expect(result.stdout).toBe('');
    expect(result.code).toBe(143);
    expect(result.stderr).toMatch(/interrupted by SIGTERM before the command started/);
  });
});

describe('writing to a real tmpfs', () => {
  const inMountNamespace = (size: string, script: string, args: string[]) =>
    runBinary(['-m', 'sh', '-c', `mount -t tmpfs -o size=${size},mode=0700 tmpfs "$MNT" && ${script}`, 'sh', ...args], {
      command: 'unshare',
      env: { ...servers.env, MNT: mountPoint, BIN: BINARY },
    });

  it('writes the file 0400 and owned by --uid/--gid on a tmpfs mounted over a disk directory', async () => {
    const result = await inMountNamespace(
      '1m',
      '"$BIN" "$@" --out "$MNT/app.cfg" --uid 1234 --gid 2345 && stat -c "%a %u %g %s" "$MNT/app.cfg" && ls -A "$MNT"',
      fetchArgs(),
    );
    expect(result.code, result.stderr).toBe(0);
    const size = Buffer.byteLength(`SECRET_KEY = "${CANARY}"\nWORKERS = 2\n`);
    expect(result.stdout).toBe(`400 1234 2345 ${size}\napp.cfg\n`);
  });

  it('fails cleanly on a full tmpfs, leaving no temp file', async () => {
    const result = await inMountNamespace('4k', '"$BIN" "$@" --out "$MNT/big.bin"; echo "code=$?"; ls -A "$MNT"', [
      '--source',
      'gs://vault/big.bin',
    ]);
    expect(result.stdout).toBe(`code=${EXIT.output}\n`);
    expect(result.stderr).toMatch(
      /cannot write .*big\.bin: no space left on its filesystem \(give the tmpfs volume a larger size limit\)/,
    );
  });

  it('refuses the same directory once the tmpfs is gone', async () => {
    const result = await runBinary([...fetchArgs(), '--out', join(mountPoint, 'app.cfg')], { env: servers.env });
    expect(result.code).toBe(EXIT.output);
    expect(result.stderr).toMatch(/is not on tmpfs or ramfs/);
  });
});
