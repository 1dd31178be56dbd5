// secret-fetch edit with scripted editors: the happy path, every refusal, a concurrent edit
// losing cleanly, and the private temp file gone on every path.

import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import {
  accessSecretVersion,
  addSecretVersion,
  decryptWithKmsClient,
  encryptWithKms,
  uploadObject,
} from '../fixtures/cloud.ts';
import { writeBerglasObject } from '../fixtures/envelopes.ts';
import { startTestServers, type TestServers } from '../servers/start.ts';
import { expectFailure, filesIn, KEY, runBinary, tmpfsDir } from './harness.ts';

let servers: TestServers;
let temp: { dir: string; cleanup: () => void };
let scripts: { dir: string; cleanup: () => void };
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const ORIGINAL = `DB_USER=app\nDB_PASSWORD=${PASSWORD}\n`;
let object = '';

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
});
afterAll(async () => servers?.close());
beforeEach(async () => {
  temp = tmpfsDir();
  scripts = tmpfsDir();
  object = `edit/${randomBytes(4).toString('hex')}.env.enc`;
  await uploadObject(
    servers.gcs.url,
    'vault',
    object,
    await encryptWithKms(servers.kms.url, KEY, Buffer.from(ORIGINAL)),
  );
});
afterEach(() => {
  temp.cleanup();
  scripts.cleanup();
});

/** An executable editor script; it also records what it saw of the file in `seen`. */
function editor(body: string): { path: string; seen: string } {
  const path = join(scripts.dir, `editor-${randomBytes(3).toString('hex')}`);
  const seen = `${path}.seen`;
  writeFileSync(
    path,
    `#!/bin/sh\nf="$1"\nstat -c '%a %U' "$f" > ${seen}; stat -c '%a' "$(dirname "$f")" >> ${seen}; stat -f -c '%T' "$f" >> ${seen}; echo "$f" >> ${seen}\n${body}\n`,
  );
  chmodSync(path, 0o755);
  return { path, seen };
}

const edit = (editorPath: string, extra: string[] = [], onSpawn?: (pid: number) => void) =>
  runBinary(['edit', `gs://vault/${object}`, '--kms-key', KEY, '--tempfile-dir', temp.dir, ...extra], {
    env: { ...servers.env, EDITOR: editorPath },
    ...(onSpawn ? { onSpawn } : {}),
  });

const live = async () => {
  const stored = servers.gcs.getObject('vault', object) as { data: Buffer; generation: string };
  return {
    generation: stored.generation,
    text: (await decryptWithKmsClient(servers.kms.url, KEY, stored.data)).toString(),
  };
};

describe('edit', () => {
  it("gives the editor none of secret-fetch's own variables (SECRET_FETCH_MASTER_KEY and the like)", async () => {
    const names = join(scripts.dir, 'names');
    const { path } = editor(`env | cut -d= -f1 | sort > ${names}`);
    const result = await runBinary(['edit', `gs://vault/${object}`, '--kms-key', KEY, '--tempfile-dir', temp.dir], {
      env: {
        ...servers.env,
        EDITOR: path,
        SECRET_FETCH_MASTER_KEY: 'x'.repeat(44),
        SECRET_FETCH_VERBOSE: '0',
        KEEP_ME: '1',
      },
    });
    expect(result.code, result.stderr).toBe(0);
    const seen = readFileSync(names, 'utf8').split('\n');
    expect(seen).toContain('KEEP_ME');
    expect(seen.filter((name) => name.startsWith('SECRET_FETCH_'))).toEqual([]);
  });

  it('decrypts into a private tmpfs file, uploads the change at the generation read, and removes the file', async () => {
    const before = await live();
    const { path, seen } = editor(`sed -i 's/DB_USER=app/DB_USER=web/' "$f"`);
    const result = await edit(path);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const after = await live();
    expect(result.stdout).toBe(`gs://vault/${object}#${after.generation}\n`);
    expect(after.generation).not.toBe(before.generation);
    expect(after.text).toBe(ORIGINAL.replace('DB_USER=app', 'DB_USER=web'));
    const [fileMode, dirMode, fsType, file] = readFileSync(seen, 'utf8').trim().split('\n');
    expect(fileMode?.split(' ')[0]).toBe('600');
    expect(dirMode).toBe('700');
    expect(fsType).toBe('tmpfs');
    expect(file?.startsWith(`${temp.dir}/secret-fetch-edit-`)).toBe(true);
    expect(existsSync(file as string)).toBe(false);
    expect(filesIn(temp.dir)).toEqual([]);
  });

  it('a concurrent change wins: the edit is refused with 75, nothing is overwritten', async () => {
    // The "other operator" replaces the object while our editor is open.
    const control = `${servers.gcs.url}/_emulator/objects?bucket=vault&name=${encodeURIComponent(object)}`;
    const { path } = editor(
      `python3 -c "import urllib.request as u; u.urlopen(u.Request('${control}', data=b'other', method='POST'))"\necho EXTRA=1 >> "$f"`,
    );
    const result = await edit(path);
    expectFailure(result, EXIT.conflict, /is no longer at generation \d+: someone changed it since/, [PASSWORD]);
    expect(servers.gcs.getObject('vault', object)?.data.toString()).toBe('other');
    expect(filesIn(temp.dir)).toEqual([]);
  });

  it.each([
    ['the editor fails', 'exit 3', EXIT.usage, /the editor \(.*\) exited with status 3; nothing was uploaded/],
    ['the result is empty', ': > "$f"', EXIT.usage, /is empty; nothing was uploaded/],
    ['the result does not parse', `printf 'DB_PASSWORD="${PASSWORD}\\n' > "$f"`, EXIT.format, /:1:\d+: /],
  ])('uploads nothing when %s, and removes the file', async (_, body, code, message) => {
    const before = await live();
    const result = await edit(editor(body).path);
    expectFailure(result, code, message, [PASSWORD]);
    expect((await live()).generation).toBe(before.generation);
    expect(filesIn(temp.dir)).toEqual([]);
  });

  it('unchanged content uploads nothing and exits 0', async () => {
    const before = await live();
    const result = await edit(editor('true').path);
    expect(result).toMatchObject({ code: 0, stdout: '' });
    expect(result.stderr).toMatch(/unchanged; nothing was uploaded/);
    expect((await live()).generation).toBe(before.generation);
  });

  it('SIGTERM during the session stops the editor, removes the file and exits 143; SIGINT belongs to the editor', async () => {
    const { path, seen } = editor('exec sleep 30');
    const result = await edit(path, [], (pid) => {
      const poll = setInterval(() => {
        if (!existsSync(seen) || readFileSync(seen, 'utf8').split('\n').length < 5) return;
        clearInterval(poll);
        process.kill(pid, 'SIGINT'); // ignored while the editor runs, as system(3) does
        setTimeout(() => process.kill(pid, 'SIGTERM'), 200);
      }, 20);
    });
    expectFailure(result, 143, /interrupted by SIGTERM/);
    expect(filesIn(temp.dir)).toEqual([]);
  });

  it('refuses a disk --tempfile-dir, a file source, and a missing --kms-key before reading anything', async () => {
    servers.gcs.requests.length = 0;
    const { path } = editor('true');
    expectFailure(
      await runBinary(['edit', `gs://vault/${object}`, '--kms-key', KEY, '--tempfile-dir', '/var/tmp'], {
        env: { ...servers.env, EDITOR: path },
      }),
      EXIT.output,
      /refusing to decrypt into \/var\/tmp: it is not on tmpfs/,
    );
    expectFailure(
      await runBinary(['edit', '/etc/hostname', '--kms-key', KEY], { env: servers.env }),
      EXIT.usage,
      /only gs:\/\/ and berglas:\/\/ objects and sm:\/\/ secrets can be edited/,
    );
    expectFailure(
      await runBinary(['edit', `gs://vault/${object}`], { env: servers.env }),
      EXIT.usage,
      /without --kms-key/,
    );
    expect(servers.gcs.requests).toEqual([]);
  });
});

describe('edit berglas://', () => {
  const OTHER = 'projects/p/locations/global/keyRings/r/cryptoKeys/other';
  let name = '';
  const uri = () => `berglas://vault/${name}`;
  const editBerglas = (editorPath: string, extra: string[] = []) =>
    runBinary(['edit', uri(), '--tempfile-dir', temp.dir, ...extra], { env: { ...servers.env, EDITOR: editorPath } });
  /** The secret as berglas:// reads it back, with --kms-key: the object must still name KEY. */
  const readBack = async () =>
    runBinary(['show', uri(), '--kms-key', KEY], { env: servers.env }).then((r) => {
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    });

  beforeEach(async () => {
    name = `edit/${randomBytes(4).toString('hex')}/app.env`;
    await writeBerglasObject(servers, 'vault', name, Buffer.from(ORIGINAL), KEY);
  });

  it('decrypts with the key the object names, and writes it back as berglas does, at the generation read', async () => {
    const before = servers.gcs.getObject('vault', name)?.generation;
    const { path } = editor(`sed -i 's/DB_USER=app/DB_USER=web/' "$f"`);
    const result = await editBerglas(path);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const stored = servers.gcs.getObject('vault', name);
    expect(stored?.generation).not.toBe(before);
    expect(result.stdout).toBe(`${uri()}#${stored?.generation}\n`);
    expect(stored?.metadata).toEqual({ 'berglas-secret': '1', 'berglas-kms-key': KEY });
    // berglas's body: a wrapped key and a sealed payload, base64, with no plaintext in it.
    expect(stored?.data.toString('latin1')).toMatch(/^[A-Za-z0-9+/]+=*:[A-Za-z0-9+/]+=*$/);
    expect(stored?.data.includes(Buffer.from(PASSWORD))).toBe(false);
    expect(await readBack()).toBe(ORIGINAL.replace('DB_USER=app', 'DB_USER=web'));
    expect(filesIn(temp.dir)).toEqual([]);
  });

  it('a concurrent change wins: 75, nothing is overwritten', async () => {
    const control = `${servers.gcs.url}/_emulator/objects?bucket=vault&name=${encodeURIComponent(name)}`;
    const { path } = editor(
      `python3 -c "import urllib.request as u; u.urlopen(u.Request('${control}', data=b'other', method='POST'))"\necho EXTRA=1 >> "$f"`,
    );
    const result = await editBerglas(path);
    expectFailure(result, EXIT.conflict, /is no longer at generation \d+: someone changed it since/, [PASSWORD]);
    expect(servers.gcs.getObject('vault', name)?.data.toString()).toBe('other');
    expect(filesIn(temp.dir)).toEqual([]);
  });

  it('refuses an object that names another key than --kms-key (76), a #generation and --plaintext, opening no editor', async () => {
    const { path, seen } = editor('echo EXTRA=1 >> "$f"');
    expectFailure(
      await editBerglas(path, ['--kms-key', OTHER]),
      EXIT.integrity,
      /names the key .*cryptoKeys\/web in its berglas-kms-key metadata, not the --kms-key .*cryptoKeys\/other/,
      [PASSWORD],
    );
    expectFailure(await runBinary(['edit', `${uri()}#1`], { env: servers.env }), EXIT.usage, /names a generation/);
    expectFailure(await editBerglas(path, ['--plaintext']), EXIT.usage, /a berglas secret is always encrypted/);
    expect(existsSync(seen)).toBe(false);
    expect(await readBack()).toBe(ORIGINAL);
  });
});

describe('edit sm://', () => {
  const PROJECT = 'edit-project';
  let secret = '';
  const uri = () => `sm://${PROJECT}/${secret}`;
  const versionText = async (version: string) =>
    (
      await decryptWithKmsClient(
        servers.kms.url,
        KEY,
        await accessSecretVersion(
          servers.secretManager.url,
          `projects/${PROJECT}/secrets/${secret}/versions/${version}`,
        ),
      )
    ).toString();
  const editSecret = (editorPath: string, extra: string[] = []) =>
    runBinary(['edit', uri(), '--kms-key', KEY, '--format', 'dotenv', '--tempfile-dir', temp.dir, ...extra], {
      env: { ...servers.env, EDITOR: editorPath },
    });

  beforeEach(async () => {
    secret = `app-${randomBytes(4).toString('hex')}`;
    const ciphertext = await encryptWithKms(servers.kms.url, KEY, Buffer.from(ORIGINAL));
    await addSecretVersion(servers.secretManager.url, `projects/${PROJECT}/secrets/${secret}`, ciphertext);
  });

  it('reads the latest version, and adds the change as the next version while it is still the newest', async () => {
    const { path, seen } = editor(`sed -i 's/DB_USER=app/DB_USER=web/' "$f"`);
    const result = await editSecret(path);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${uri()}#2\n`);
    expect(await versionText('2')).toBe(ORIGINAL.replace('DB_USER=app', 'DB_USER=web'));
    expect(await versionText('1')).toBe(ORIGINAL);
    const file = readFileSync(seen, 'utf8').trim().split('\n')[3] as string;
    expect(file.endsWith(`/${secret}`)).toBe(true);
    expect(filesIn(temp.dir)).toEqual([]);
  });

  it('a version added while the editor is open wins: 75, and no version is added on top of it', async () => {
    const control = `${servers.secretManager.url}/_emulator/versions`;
    const body = JSON.stringify({ secret: `projects/${PROJECT}/secrets/${secret}`, data: 'b3RoZXI=' });
    const { path } = editor(
      `python3 -c "import urllib.request as u; u.urlopen(u.Request('${control}', data=b'${body.replaceAll('"', '\\"')}', method='POST'))"\necho EXTRA=1 >> "$f"`,
    );
    servers.secretManager.requests.length = 0;
    const result = await editSecret(path);
    expectFailure(result, EXIT.conflict, /is no longer at version 1: version 2 was added since/, [PASSWORD]);
    expect(servers.secretManager.requests.some((r) => r.path.endsWith(':addVersion'))).toBe(false);
    expect(filesIn(temp.dir)).toEqual([]);
  });

  it('refuses a #version before reading anything', async () => {
    servers.secretManager.requests.length = 0;
    expectFailure(
      await runBinary(['edit', `${uri()}#1`], { env: servers.env }),
      EXIT.usage,
      /names a version \(edit the latest version/,
    );
    expect(servers.secretManager.requests).toEqual([]);
  });
});
