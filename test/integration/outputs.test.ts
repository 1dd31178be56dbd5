// Where the built binary writes, tried as another user on the machine would: a device or FIFO at
// an output path, a directory anyone can write, two outputs that are one file through a symlinked
// directory, a path that does not name a file, and a path built to forge a log line. Every refusal
// is one line with its exit code, before any fetch where it can be, and leaves the target as it was.
// Needs root (mknod), as the container tests do.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ensureBunBinary, ensureSeaBinary } from '../../scripts/build-bun.ts';
import { EXIT } from '../../src/errors.ts';
import { uploadObject } from '../fixtures/cloud.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { BINARY, expectFailure, expectNoCanary, filesIn, RUNTIME, runBinary, tmpfsDir } from './harness.ts';

let servers: TestServers;
let out: { dir: string; cleanup: () => void };
const TOKEN = `tok-${randomBytes(8).toString('hex')}`;
const CANARIES = [TOKEN];

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  servers = await startTestServers();
  await uploadObject(servers.gcs.url, 'vault', 'token', Buffer.from(TOKEN));
});
afterAll(async () => servers?.close());
beforeEach(() => {
  out = tmpfsDir();
  servers.gcs.requests.length = 0;
});
afterEach(() => out.cleanup());

/** A local secret file beside the outputs (a file: source needs no server). */
function sourceFile(): string {
  const path = join(out.dir, 'source.txt');
  writeFileSync(path, TOKEN);
  return path;
}

const reference = (path: string) => `secret-fetch:gs://vault/token?destination=${path}`;

describe('only regular files are replaced', () => {
  it('--out naming a character device (a null device, like /dev/null) is refused and the device kept', async () => {
    const device = join(out.dir, 'null');
    execFileSync('mknod', [device, 'c', '1', '3']);
    const result = await runBinary(['--source', `file:${sourceFile()}`, '--out', device]);
    expectFailure(
      result,
      EXIT.output,
      /^secret-fetch: error: refusing to replace \S+\/null: it is a character device, not a regular file \(name a regular file/,
      CANARIES,
    );
    const after = lstatSync(device);
    expect(after.isCharacterDevice()).toBe(true);
    expect(after.rdev).toBe(lstatSync('/dev/null').rdev);
    expect(filesIn(out.dir)).toEqual(['null', 'source.txt']);
  });

  it('?destination= naming a FIFO is refused, and nothing starts', async () => {
    const fifo = join(out.dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const marker = join(out.dir, 'ran');
    const result = await runBinary(['--', 'touch', marker], { env: { ...servers.env, A: reference(fifo) } });
    expectFailure(
      result,
      EXIT.output,
      /^secret-fetch: error: \$A: refusing to replace \S+\/pipe: it is a FIFO/,
      CANARIES,
    );
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(existsSync(marker)).toBe(false);
  });

  it('--ready-file naming a device is refused, even where disks are allowed', async () => {
    const device = join(out.dir, 'ready');
    execFileSync('mknod', [device, 'c', '1', '3']);
    const result = await runBinary([
      '--source',
      `file:${sourceFile()}`,
      '--out',
      join(out.dir, 'token'),
      '--ready-file',
      device,
    ]);
    expectFailure(result, EXIT.output, /refusing to replace \S+\/ready: it is a character device/, CANARIES);
    expect(lstatSync(device).isCharacterDevice()).toBe(true);
  });
  it('a directory its user can write but not read (0300) still takes the file', async () => {
    const drop = join(out.dir, 'drop');
    mkdirSync(drop);
    const source = sourceFile();
    chownSync(drop, 65534, 65534);
    chownSync(source, 65534, 65534);
    chmodSync(drop, 0o300);
    chmodSync(out.dir, 0o711); // for the user to reach them
    const result = await runBinary(
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        BINARY,
        '--source',
        `file:${source}`,
        '--out',
        join(drop, 'token'),
      ],
      { command: 'setpriv' },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(join(drop, 'token'), 'utf8')).toBe(TOKEN);
  });
});

describe('shared directories', () => {
  it('refuses a directory every user can write without the sticky bit, for --out and --ready-file', async () => {
    const shared = join(out.dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    const message =
      /^secret-fetch: error: refusing to write \S+\/shared\/\S+: every user can write \S+\/shared and it has no sticky bit, so another user could swap the file \(/;
    const asOut = await runBinary(['--source', `file:${sourceFile()}`, '--out', join(shared, 'token')]);
    expectFailure(asOut, EXIT.output, message, CANARIES);
    const asReady = await runBinary([
      '--source',
      `file:${sourceFile()}`,
      '--out',
      join(out.dir, 'token'),
      '--ready-file',
      join(shared, 'ready'),
    ]);
    expectFailure(asReady, EXIT.output, message, CANARIES);
    expect(filesIn(shared)).toEqual([]);

    chmodSync(shared, 0o1777); // sticky, as /tmp and /dev/shm are: accepted
    const sticky = await runBinary(['--source', `file:${sourceFile()}`, '--out', join(shared, 'token')]);
    expect(sticky.code, sticky.stderr).toBe(0);
    expect(readFileSync(join(shared, 'token'), 'utf8')).toBe(TOKEN);
  });
  it('edit refuses such a --tempfile-dir before reading anything', async () => {
    const shared = join(out.dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    const key = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
    const result = await runBinary(['edit', 'gs://vault/token', '--kms-key', key, '--tempfile-dir', shared], {
      env: { ...servers.env, EDITOR: 'true' },
    });
    expectFailure(
      result,
      EXIT.output,
      /^secret-fetch: error: refusing to decrypt into \S+\/shared: every user can write it and it has no sticky bit \(/,
      CANARIES,
    );
    expect(servers.gcs.requests).toEqual([]);
    expect(filesIn(shared)).toEqual([]);
  });
});

describe('outputs are compared by real location, before any fetch', () => {
  beforeEach(() => {
    mkdirSync(join(out.dir, 'real'));
    symlinkSync(join(out.dir, 'real'), join(out.dir, 'link'));
  });

  it('two ?destination= paths reaching one file through a symlinked directory', async () => {
    const result = await runBinary(['--', 'true'], {
      env: {
        ...servers.env,
        A: reference(join(out.dir, 'real', 'same')),
        B: reference(join(out.dir, 'link', 'same')),
      },
    });
    expectFailure(
      result,
      EXIT.usage,
      /^secret-fetch: error: \$B: \?destination=\S+\/link\/same is also the destination of \$A \(give each reference its own file\)$/,
      CANARIES,
    );
    expect(servers.gcs.requests).toEqual([]);
    expect(filesIn(join(out.dir, 'real'))).toEqual([]);
  });

  it('a ?destination= that is the --ready-file, or an --out through a link', async () => {
    const ready = await runBinary(
      [
        '--source',
        `file:${sourceFile()}`,
        '--out',
        join(out.dir, 'token'),
        '--ready-file',
        join(out.dir, 'real', 'ready'),
      ],
      { env: { ...servers.env, A: reference(join(out.dir, 'real', 'ready')) } },
    );
    expectFailure(
      ready,
      EXIT.usage,
      /^secret-fetch: error: \$A: \?destination=\S+\/ready is also the --ready-file/,
      CANARIES,
    );
    const asOut = await runBinary(['--source', `file:${sourceFile()}`, '--out', join(out.dir, 'real', 'token')], {
      env: { ...servers.env, A: reference(join(out.dir, 'link', 'token')) },
    });
    expectFailure(
      asOut,
      EXIT.usage,
      /^secret-fetch: error: \$A: \?destination=\S+\/link\/token is also an --out file/,
      CANARIES,
    );
    expect(servers.gcs.requests).toEqual([]);
    expect(filesIn(join(out.dir, 'real'))).toEqual([]);
  });

  it('an --out that is the --ready-file through a link', async () => {
    const result = await runBinary([
      '--source',
      `file:${sourceFile()}`,
      '--out',
      join(out.dir, 'real', 'token'),
      '--ready-file',
      join(out.dir, 'link', 'token'),
    ]);
    expectFailure(
      result,
      EXIT.usage,
      /^secret-fetch: error: --ready-file \S+\/link\/token is the same file as --out \S+\/real\/token \(give each output its own file\)$/,
      CANARIES,
    );
    expect(filesIn(join(out.dir, 'real'))).toEqual([]);
  });
});

describe('output paths in arguments and logs', () => {
  it.each([
    ['--out', (dir: string) => ['--out', `${dir}/x/`]],
    ['--ready-file', (dir: string) => ['--out', `${dir}/token`, '--ready-file', `${dir}/x/`]],
  ])('%s with a trailing slash is refused, and no file named x appears', async (flag, args) => {
    const result = await runBinary(['--source', `file:${sourceFile()}`, ...args(out.dir)]);
    expectFailure(
      result,
      EXIT.usage,
      new RegExp(
        `^secret-fetch: error: ${flag} \\S+/x/ does not name a file \\(give a file path, without a trailing slash\\)$`,
      ),
      CANARIES,
    );
    expect(filesIn(out.dir)).toEqual(['source.txt']);
  });

  it('an --out with a line break cannot forge a log line under --verbose', async () => {
    const target = join(out.dir, 'a\nsecret-fetch: error: forged');
    const result = await runBinary(['--source', `file:${sourceFile()}`, '--out', target, '--verbose']);
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(target, 'utf8')).toBe(TOKEN);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines.filter((line) => line.includes('forged'))).toEqual([
      `secret-fetch: wrote ${JSON.stringify(target)} (mode 0400)`,
    ]);
    expect(result.stderr).not.toMatch(/^secret-fetch: error: forged/m);
  });
  it('a --source path with a line break cannot forge a log line either (the log escapes it)', async () => {
    const result = await runBinary([
      '--source',
      `file:${out.dir}/nope\nsecret-fetch: error: forged`,
      '--out',
      join(out.dir, 'x'),
    ]);
    expect(result.code).toBe(EXIT.notFound);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('nope\\nsecret-fetch: error: forged');
  });
  it('probe quotes a --ready-file path with a line break', async () => {
    const result = await runBinary(['probe', '--ready-file', `${out.dir}/r\nsecret-fetch: probe: forged`]);
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toEqual([
      `secret-fetch: probe: not ready: ${JSON.stringify(`${out.dir}/r\nsecret-fetch: probe: forged`)} does not exist yet`,
    ]);
  });
});

describe('without /proc', () => {
  const withoutProc = (target: string, binary: string) =>
    runBinary(
      [
        '-m',
        'sh',
        '-c',
        'umount -l /proc && exec "$@"',
        'sh',
        binary,
        '--source',
        `file:${sourceFile()}`,
        '--out',
        target,
      ],
      { command: 'unshare', env: {} },
    );

  // Our own refusal, where the runtime starts at all: the Node build (dist/secret-fetch-sea).
  it('the Node build refuses to write (the directory could not be pinned), one line, nothing left', async () => {
    const target = join(out.dir, 'token');
    const result = await withoutProc(target, ensureSeaBinary());
    expectFailure(result, EXIT.output, /cannot write \S+\/token: \/proc is not mounted.* \(mount \/proc/, CANARIES);
    expect(filesIn(out.dir)).toEqual(['source.txt']);
  });

  // Bun 1.4.5 aborts before any of our code runs (the README's "Known limits").
  it('the Bun binary does not start: it fails, writes nothing and prints no secret', async () => {
    const result = await withoutProc(join(out.dir, 'token'), RUNTIME === 'bun' ? BINARY : ensureBunBinary());
    expect(result.code === 0 && result.signal === null).toBe(false);
    expectNoCanary(result, CANARIES);
    expect(filesIn(out.dir)).toEqual(['source.txt']);
  });
});
