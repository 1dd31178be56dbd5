// Flask-Vault files through the built binary: credentials.yml.enc and credentials.toml.enc, from a
// file and from Cloud Storage, with the master key from --master-key-file and from
// SECRET_FETCH_MASTER_KEY, with 16, 24 and 32-byte keys; then every way the file, the key or the
// flags can be wrong. Each failure asserts the exit code, one error line naming the file, nothing
// written to --out (not even a temp file), no command started, and no canary (from the plaintext or
// the key) on stdout or stderr. The fixtures come from test/fixtures/flask-vault.ts (node:crypto).

import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import { masterKeyText, newKey, sealFlaskVault, sealRaw, urlsafeBase64 } from '../fixtures/flask-vault.ts';
import { startTestServers } from '../servers/start.ts';
import { BINARY, expectFailure, filesIn, KEY, type Result, runBinary, tmpfsDir } from './harness.ts';

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;

const SECRET = `sk-${randomBytes(8).toString('hex')}`;
const DB_PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const YAML = `---
# Flask-Vault credentials (flask vault edit)
SECRET_KEY: ${SECRET}
DEBUG: false
PORT: 8080
DATABASE:
  user: app
  password: ${DB_PASSWORD}
ADMINS: [ops@example.com]
`;
const TOML = `# Flask-Vault credentials (flask vault edit)
SECRET_KEY = "${SECRET}"
DEBUG = false
PORT = 8080
ADMINS = ["ops@example.com"]

[DATABASE]
user = "app"
password = "${DB_PASSWORD}"
`;
/** What both documents give, in the environment. */
const EXPECTED = {
  SECRET_KEY: SECRET,
  DEBUG: 'false',
  PORT: '8080',
  DATABASE: `{"user":"app","password":"${DB_PASSWORD}"}`,
  ADMINS: '["ops@example.com"]',
};
const PRINT_ENV = 'for v in SECRET_KEY DEBUG PORT DATABASE ADMINS; do printf "%s=%s\\n" "$v" "$(printenv "$v")"; done';

let scratch: { dir: string; cleanup: () => void };
/** The --out directory (must stay empty after a failure) and a work directory beside it. */
let out: string;
let work: string;

beforeAll(async () => {
  servers = await startTestServers();
  servers.kms.createKey(KEY);
});
afterAll(async () => servers?.close());
beforeEach(() => {
  scratch = tmpfsDir();
  out = join(scratch.dir, 'out');
  work = join(scratch.dir, 'work');
  mkdirSync(out);
  mkdirSync(work);
});
afterEach(() => scratch.cleanup());

function writeWork(name: string, data: string | Buffer, mode = 0o600): string {
  const path = join(work, name);
  writeFileSync(path, data, { mode });
  return path;
}

function printed(result: Result): Record<string, string> {
  return Object.fromEntries(
    result.stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
  );
}

describe('Flask-Vault files: --env and --out', () => {
  const cases: [string, 'yml' | 'toml', 16 | 24 | 32, 'file' | 'variable'][] = [];
  for (const format of ['yml', 'toml'] as const) {
    for (const size of [16, 24, 32] as const) {
      for (const from of ['file', 'variable'] as const)
        cases.push([`${format}, ${size}-byte key from a ${from}`, format, size, from]);
    }
  }

  it.each(cases)('credentials.%s', async (_title, format, size, from) => {
    const key = newKey(size);
    const plaintext = format === 'yml' ? YAML : TOML;
    const source = writeWork(`credentials.${format}.enc`, sealFlaskVault(plaintext, key));
    const keyText = masterKeyText(key);
    const keyArgs = from === 'file' ? ['--master-key-file', writeWork('master.key', keyText)] : [];
    const env: Record<string, string> = from === 'variable' ? { SECRET_FETCH_MASTER_KEY: keyText } : {};
    const target = join(out, `credentials.${format}`);
    const result = await runBinary(
      ['--source', source, ...keyArgs, '--env', '--out', target, '--', 'sh', '-c', PRINT_ENV],
      { env },
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(printed(result)).toEqual(EXPECTED);
    // --out holds the decrypted document, exactly, 0400.
    expect(readFileSync(target, 'utf8')).toBe(plaintext);
    expect(lstatSync(target).mode & 0o777).toBe(0o400);
    expect(filesIn(out)).toEqual([`credentials.${format}`]);
  });

  it('decrypts after the fetch from Cloud Storage, and reads a key file an editor saved with a newline', async () => {
    const key = newKey(16);
    servers.gcs.putObject('vault', 'app/credentials.toml.enc', Buffer.from(sealFlaskVault(TOML, key)));
    servers.gcs.putObject('vault', 'app/credentials.yml.enc', Buffer.from(`${sealFlaskVault(YAML, key)}\n`));
    const keyFile = writeWork('master.key', `${masterKeyText(key)}\n`);
    for (const object of ['app/credentials.toml.enc', 'app/credentials.yml.enc']) {
      const result = await runBinary(
        ['--source', `gs://vault/${object}`, '--master-key-file', keyFile, '--env', '--', 'sh', '-c', PRINT_ENV],
        { env: servers.env },
      );
      expect(result.stderr).toBe('');
      expect(printed(result)).toEqual(EXPECTED);
    }
  });

  it('passes neither the key nor its file on to the command, and says what it does with -v, never a value', async () => {
    const key = newKey(32);
    const keyText = masterKeyText(key);
    const source = writeWork('credentials.yml.enc', sealFlaskVault(YAML, key));
    const viaVariable = await runBinary(
      ['-v', '--source', source, '--env', '--', 'sh', '-c', 'env | grep -c ^SECRET_FETCH_ || true'],
      {
        env: { SECRET_FETCH_MASTER_KEY: keyText },
      },
    );
    expect(viaVariable.stdout).toBe('0\n');
    expect(viaVariable.stderr).toMatch(
      /decrypting .*credentials\.yml\.enc as a Flask-Vault file with the master key from SECRET_FETCH_MASTER_KEY/,
    );
    expect(viaVariable.stderr).toMatch(
      /credentials\.yml\.enc: yaml with 5 entries \(SECRET_KEY, DEBUG, PORT, DATABASE, ADMINS\)/,
    );
    const viaFile = await runBinary(
      ['--source', source, '--env', '--', 'sh', '-c', 'env | grep -c ^SECRET_FETCH_ || true'],
      {
        env: { SECRET_FETCH_MASTER_KEY_FILE: writeWork('master.key', keyText) },
      },
    );
    expect(viaFile.stdout).toBe('0\n');
    for (const result of [viaVariable, viaFile]) {
      for (const canary of [keyText, keyText.slice(0, 16), SECRET, DB_PASSWORD])
        expect(result.stderr).not.toContain(canary);
    }
  });

  it('a source with --kms-key is still Cloud KMS, beside a Flask-Vault source', async () => {
    const key = newKey(24);
    servers.gcs.putObject('vault', 'app/kms.env.enc', servers.kms.encrypt(KEY, Buffer.from('FROM_KMS=yes\n')));
    const vault = writeWork('credentials.toml.enc', sealFlaskVault(TOML, key));
    // --kms-key goes with every source or one each; with two sources, each gets its own.
    const kms = await runBinary(
      ['--source', 'gs://vault/app/kms.env.enc', '--kms-key', KEY, '--env', '--', 'sh', '-c', 'echo $FROM_KMS'],
      { env: servers.env },
    );
    expect(kms.stdout).toBe('yes\n');
    const both = await runBinary([
      '--source',
      vault,
      '--source',
      writeWork('plain.env', 'PLAIN=1\n'),
      '--master-key-file',
      writeWork('master.key', masterKeyText(key)),
      '--env',
      '--',
      'sh',
      '-c',
      'echo $PLAIN $SECRET_KEY',
    ]);
    expect(both.stderr).toBe('');
    expect(both.stdout).toBe(`1 ${SECRET}\n`);
  });
});

interface Failure {
  name: string;
  code: number;
  message: RegExp;
  /** Writes the fixtures and returns the arguments before `-- COMMAND`, and extra variables. */
  setup: (key: Buffer) => { args: string[]; env?: Record<string, string> };
  /** Run as an unprivileged user (uid 65534), for a key file it cannot read. */
  unprivileged?: boolean;
}

const seal = (plaintext: string, key: Buffer) => sealFlaskVault(plaintext, key);
const keyFile = (key: Buffer) => writeWork('master.key', `${masterKeyText(key)}\n`);
const withKeyFile = (source: string, key: Buffer) => ({
  args: ['--source', source, '--master-key-file', keyFile(key), '--env', '--out', join(out, 'credentials')],
});
const gsUri = (name: string, data: string | Buffer) => {
  const object = `case-${randomBytes(4).toString('hex')}/${name}`;
  servers.gcs.putObject('vault', object, Buffer.from(data));
  return `gs://vault/${object}`;
};

const FAILURES: Failure[] = [
  {
    name: 'a wrong key',
    code: EXIT.integrity,
    message:
      /cannot decrypt .*\/credentials\.yml\.enc with the master key from --master-key-file .*\/master\.key: the file does not match this key \(was it encrypted with another master\.key, or altered after encryption\?\)$/,
    setup: (key) => withKeyFile(writeWork('credentials.yml.enc', seal(YAML, newKey(32))), key),
  },
  {
    name: 'a wrong key, for a file in Cloud Storage, from SECRET_FETCH_MASTER_KEY',
    code: EXIT.integrity,
    message:
      /cannot decrypt gs:\/\/vault\/case-\w+\/credentials\.toml\.enc with the master key from SECRET_FETCH_MASTER_KEY: the file does not match this key/,
    setup: (key) => ({
      args: ['--source', gsUri('credentials.toml.enc', seal(TOML, newKey(16))), '--env', '--out', join(out, 'c')],
      env: { ...servers.env, SECRET_FETCH_MASTER_KEY: masterKeyText(key) },
    }),
  },
  {
    name: 'a corrupt file (one byte of the ciphertext flipped)',
    code: EXIT.integrity,
    message: /cannot decrypt .*\/credentials\.yml\.enc with the master key .*: the file does not match this key/,
    setup: (key) => {
      const sealed = sealRaw(Buffer.from(YAML), key);
      sealed[20] = (sealed[20] as number) ^ 0x01;
      return withKeyFile(writeWork('credentials.yml.enc', urlsafeBase64(sealed)), key);
    },
  },
  {
    name: 'a truncated file',
    code: EXIT.integrity,
    message: /cannot decrypt .*\/credentials\.toml\.enc with the master key .*: the file does not match this key/,
    setup: (key) => {
      const sealed = sealRaw(Buffer.from(TOML), key);
      return withKeyFile(writeWork('credentials.toml.enc', urlsafeBase64(sealed.subarray(0, sealed.length - 5))), key);
    },
  },
  {
    name: 'a file cut to less than a nonce and a tag',
    code: EXIT.integrity,
    message: /cannot decrypt .*\/credentials\.yml\.enc: it holds 21 bytes, fewer than a nonce and a tag \(28\)/,
    setup: (key) =>
      withKeyFile(
        writeWork('credentials.yml.enc', urlsafeBase64(sealRaw(Buffer.from(YAML), key).subarray(0, 21))),
        key,
      ),
  },
  {
    name: 'a file that is not base64 (the plaintext itself)',
    code: EXIT.integrity,
    message:
      /cannot decrypt .*\/credentials\.yml\.enc: it is not urlsafe base64 \(whitespace inside the base64 text, at byte 3\) \(is it a Flask-Vault file\?/,
    setup: (key) => withKeyFile(writeWork('credentials.yml.enc', YAML), key),
  },
  {
    name: 'a file in standard base64',
    code: EXIT.integrity,
    message:
      /cannot decrypt .*\/credentials\.toml\.enc: it is not urlsafe base64 \(a '\+' or '\/' at byte \d+: standard base64/,
    setup: (key) => {
      // Sealed until its standard base64 holds a + or /, which urlsafe base64 writes as - or _.
      let text = '';
      while (!/[+/]/.test(text)) text = sealRaw(Buffer.from(TOML), key).toString('base64');
      return withKeyFile(writeWork('credentials.toml.enc', text), key);
    },
  },
  {
    name: 'an empty file',
    code: EXIT.integrity,
    message:
      /cannot decrypt .*\/credentials\.yml\.enc: it is empty \(give the file that flask vault init, edit or encrypt wrote\)$/,
    setup: (key) => withKeyFile(writeWork('credentials.yml.enc', ''), key),
  },
  {
    name: 'a key file that does not exist',
    code: EXIT.notFound,
    message:
      /the master key file .*\/nope\/master\.key does not exist \(check --master-key-file and that the volume holding master\.key is mounted\)$/,
    setup: (key) => ({
      args: [
        '--source',
        writeWork('credentials.yml.enc', seal(YAML, key)),
        '--master-key-file',
        join(work, 'nope', 'master.key'),
        '--env',
        '--out',
        join(out, 'c'),
      ],
    }),
  },
  {
    name: 'a key file that cannot be read',
    code: EXIT.permission,
    message:
      /cannot read the master key file .*\/master\.key: permission denied \(make it readable by the user secret-fetch runs as\)$/,
    unprivileged: true,
    setup: (key) => ({
      args: [
        '--source',
        writeWork('credentials.yml.enc', seal(YAML, key), 0o644),
        '--master-key-file',
        keyFile(key),
        '--env',
      ],
    }),
  },
  {
    name: 'a key file with a key of a bad length',
    code: EXIT.format,
    message:
      /the master key file .*\/master\.key decodes to 20 bytes, which is not an AES key length \(master\.key holds the urlsafe base64 of a 16, 24 or 32-byte AES key/,
    setup: (key) => ({
      args: [
        '--source',
        writeWork('credentials.yml.enc', seal(YAML, key)),
        '--master-key-file',
        writeWork('master.key', urlsafeBase64(key.subarray(0, 20))),
        '--env',
        '--out',
        join(out, 'c'),
      ],
    }),
  },
  {
    name: 'a key file that is not base64',
    code: EXIT.format,
    message: /the master key file .*\/master\.key is not urlsafe base64: a '\+' or '\/' at byte \d+/,
    setup: (key) => {
      let text = '';
      while (!/[+/]/.test(text)) text = newKey(32).toString('base64');
      return {
        args: [
          '--source',
          writeWork('credentials.yml.enc', seal(YAML, key)),
          '--master-key-file',
          writeWork('master.key', text),
          '--env',
          '--out',
          join(out, 'c'),
        ],
      };
    },
  },
  {
    name: 'a SECRET_FETCH_MASTER_KEY of a bad length',
    code: EXIT.usage,
    message: /SECRET_FETCH_MASTER_KEY decodes to 8 bytes, which is not an AES key length/,
    setup: (key) => ({
      args: ['--source', writeWork('credentials.toml.enc', seal(TOML, key)), '--env', '--out', join(out, 'c')],
      env: { SECRET_FETCH_MASTER_KEY: urlsafeBase64(key.subarray(0, 8)) },
    }),
  },
  {
    name: 'a SECRET_FETCH_MASTER_KEY that is not base64',
    code: EXIT.usage,
    message: /SECRET_FETCH_MASTER_KEY is not urlsafe base64: a byte outside the urlsafe base64 alphabet at byte 43/,
    setup: (key) => ({
      args: ['--source', writeWork('credentials.toml.enc', seal(TOML, key)), '--env', '--out', join(out, 'c')],
      env: { SECRET_FETCH_MASTER_KEY: `${masterKeyText(key).replace(/=+$/, '')}!` },
    }),
  },
  {
    name: 'both a key file and SECRET_FETCH_MASTER_KEY',
    code: EXIT.usage,
    message:
      /both --master-key-file \(or SECRET_FETCH_MASTER_KEY_FILE\) and SECRET_FETCH_MASTER_KEY are given \(give the master key one way only\)$/,
    setup: (key) => ({
      ...withKeyFile(writeWork('credentials.yml.enc', seal(YAML, key)), key),
      env: { SECRET_FETCH_MASTER_KEY: masterKeyText(key) },
    }),
  },
  {
    name: 'a .enc source with no key',
    code: EXIT.usage,
    message:
      /.*\/credentials\.yml\.enc is encrypted \(\.enc\) but no key is given \(add --master-key-file PATH \(or SECRET_FETCH_MASTER_KEY\) for a Flask-Vault file, or --kms-key NAME for Cloud KMS\)$/,
    setup: (key) => ({
      args: ['--source', writeWork('credentials.yml.enc', seal(YAML, key)), '--env', '--out', join(out, 'c')],
    }),
  },
  {
    name: 'a master key that no source uses',
    code: EXIT.usage,
    message: /--master-key-file is given, but no source is a Flask-Vault file/,
    setup: (key) => withKeyFile(writeWork('credentials.yml', YAML), key),
  },
  {
    name: 'a plaintext that decrypts but is malformed YAML',
    code: EXIT.format,
    message: /.*\/credentials\.yml\.enc:4:1: YAML error: a missing character/,
    setup: (key) =>
      withKeyFile(writeWork('credentials.yml.enc', seal(`---\nA: 1\nSECRET_KEY: "${SECRET}\n`, key)), key),
  },
  {
    name: 'a plaintext that decrypts but is malformed TOML',
    code: EXIT.format,
    message: /.*\/credentials\.toml\.enc:2:14: TOML error: an invalid value \(a string without quotes\?\)/,
    setup: (key) => withKeyFile(writeWork('credentials.toml.enc', seal(`A = 1\nSECRET_KEY = ${SECRET}\n`, key)), key),
  },
  {
    name: 'a plaintext that decrypts to TOML with a name that is not a variable name',
    code: EXIT.format,
    message: /.*\/credentials\.toml\.enc: a name that is not a valid environment variable name/,
    setup: (key) => withKeyFile(writeWork('credentials.toml.enc', seal(`"${SECRET}" = 1\n`, key)), key),
  },
];

describe('Flask-Vault files: failures', () => {
  it.each(FAILURES.map((f) => [f.name, f] as const))('%s', async (_name, failure) => {
    const key = newKey(32);
    const { args, env } = failure.setup(key);
    const marker = join(work, 'command-ran');
    const command = ['--', 'sh', '-c', `touch ${marker}`];
    let result: Result;
    if (failure.unprivileged) {
      // The command (were it started) must be able to leave its marker as that user too.
      chmodSync(scratch.dir, 0o755);
      chmodSync(work, 0o777);
      result = await runBinary(['--reuid=65534', '--regid=65534', '--clear-groups', BINARY, ...args, ...command], {
        command: 'setpriv',
        env,
      });
    } else {
      result = await runBinary([...args, ...command], { env });
    }
    const keyText = masterKeyText(key);
    expectFailure(result, failure.code, failure.message, [
      SECRET,
      DB_PASSWORD,
      keyText,
      keyText.slice(0, 16),
      key.toString('hex').slice(0, 16),
    ]);
    expect(result.stderr).toMatch(/^secret-fetch: error: /);
    expect(filesIn(out)).toEqual([]);
    expect(existsSync(marker), 'the command must not start').toBe(false);
  });
});
