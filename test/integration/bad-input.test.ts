// The bad-input matrix: every way a source, a format, a key or an output can be wrong, each run
// through the built binary. Every case asserts the exact exit code, one error line that matches,
// no output file and no temp file left in the --out directory, no command started (it would touch
// a marker file), and no canary secret byte on stdout or stderr.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/errors.ts';
import type { StoredObject } from '../servers/gcs.ts';
import type { FaultResponse } from '../servers/http.ts';
import { startTestServers } from '../servers/start.ts';
import { BINARY, expectNoCanary, filesIn, KEY, OTHER_KEY, type Result, ROOT, runBinary, tmpfsDir } from './harness.ts';

type Servers = Awaited<ReturnType<typeof startTestServers>>;
let servers: Servers;

const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const CANARIES = [CANARY, CANARY.slice(7)];
const MISSING_KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/missing';
const DENIED_KEY = 'projects/demo/locations/global/keyRings/apps/cryptoKeys/denied';

interface Ctx {
  /** The --out directory (tmpfs): must hold exactly what it held before the run. */
  out: string;
  /** Scratch space beside it for the marker, local source files and the like. */
  work: string;
  /** The object name prefix unique to this case. */
  id: string;
}

interface Case {
  name: string;
  code: number;
  message: RegExp;
  /** Seeds what the case needs and returns the arguments before `-- COMMAND`. */
  args: (c: Ctx) => string[] | Promise<string[]>;
  /** Run in a mount namespace with a size=4k tmpfs on the --out directory, read-only or not. */
  mount?: 'ro' | 'full';
  /** The service is retried: retry warnings may precede the one error line. */
  retried?: boolean;
  /** A directory on disk, linked at this path, is where nothing may appear instead of the --out directory. */
  watch?: (c: Ctx) => string;
  /** Extra variables for the binary. */
  env?: Record<string, string>;
}

const gs = (c: Ctx, name: string) => `gs://vault/${c.id}/${name}`;

/** Store an object (plaintext, or encrypted when a key is given) and return its gs:// URI. */
function put(c: Ctx, name: string, data: Buffer | string, key?: string): string {
  const bytes = Buffer.from(data);
  servers.gcs.putObject('vault', `${c.id}/${name}`, key ? servers.kms.encrypt(key, bytes) : bytes);
  return gs(c, name);
}

/**
 * Store an object, and answer its next metadata read with its real resource changed by `change`
 * (a field set to undefined is left out); the media read that follows is served as stored. The
 * run's first GET (the object in one request) is answered without the headers that pin it, as by
 * an emulator, so the run reads the metadata first.
 */
function withMetadata(
  c: Ctx,
  name: string,
  data: string,
  change: Record<string, unknown> | ((stored: StoredObject) => Record<string, unknown>),
): string {
  servers.gcs.putObject('vault', `${c.id}/${name}`, Buffer.from(data));
  const stored = servers.gcs.getObject('vault', `${c.id}/${name}`) as StoredObject;
  const resource: Record<string, unknown> = {
    kind: 'storage#object',
    name: stored.name,
    bucket: stored.bucket,
    generation: stored.generation,
    metageneration: stored.metageneration,
    size: String(stored.data.length),
    crc32c: stored.crc32c,
    ...(typeof change === 'function' ? change(stored) : change),
  };
  servers.gcs.failNext({ method: 'GET', path: `/b/vault/o/${c.id}/${name}` }, [
    { status: 200, body: 'an answer without x-goog-* headers' },
    { status: 200, body: resource },
  ]);
  return gs(c, name);
}

/** The headers Cloud Storage sends with an object's media, with its stored length given as `length`. */
function mediaHeaders(stored: StoredObject, length = stored.data.length): Record<string, string> {
  return {
    'x-goog-generation': stored.generation,
    'x-goog-metageneration': stored.metageneration,
    'x-goog-stored-content-length': String(length),
    'x-goog-stored-content-encoding': 'identity',
    'x-goog-hash': `crc32c=${stored.crc32c}`,
  };
}

function localFile(c: Ctx, name: string, data: Buffer | string): string {
  const path = join(c.work, name);
  writeFileSync(path, data);
  return path;
}

const outArg = (c: Ctx, name = 'secret') => ['--out', join(c.out, name)];
const ciphertext = (text = `SECRET_KEY = "${CANARY}"\n`) => servers.kms.encrypt(KEY, Buffer.from(text));
// Faults that outlast any deadline: the storm cases run with STORM_TIMEOUT, and the faults left are reset after each case.
const storm = (fault: FaultResponse) => Array.from({ length: 1000 }, () => fault);
const STORM_TIMEOUT = ['--timeout', '2s'];
/** The last failure and the deadline, in whichever order the line gives them (given up, or expired mid-attempt). */
const outlasted = (failure: string) =>
  new RegExp(`^(?=.*${failure} after \\d+ attempts?)(?=.*the --timeout of 2s)(?=.*raise --timeout\\)$)`);
const big = (bytes: number) => `TOKEN=${CANARY}${'x'.repeat(bytes)}\n`;

/** A retry warning: the attempt, what failed with its HTTP status, gRPC status or network code, and the delay. */
const RETRY_WARNING =
  /^secret-fetch: warning: attempt \d+ to .+ failed \(.*(answered [0-9]{3}|\(status [0-9]+ [A-Z_]+\)|: E[A-Z_]+).*\); retrying in \d+ ms( \(Retry-After\))?$/;

/** One case per malformed document, with --env so the parsed entries are the point. */
function formatCase(name: string, file: string, text: string | Buffer, message: RegExp): Case {
  return {
    name,
    code: EXIT.format,
    message,
    args: (c) => ['--source', put(c, file, text, KEY), '--kms-key', KEY, '--env', ...outArg(c)],
  };
}

const CASES: Case[] = [
  // Ciphertext and keys.
  {
    name: 'truncated ciphertext',
    code: EXIT.integrity,
    message: /cannot decrypt gs:\/\/vault\/.*\/a\.cfg\.enc with .*cryptoKeys\/web: the ciphertext does not match/,
    args: (c) => {
      const data = ciphertext();
      return ['--source', put(c, 'a.cfg.enc', data.subarray(0, data.length >> 1)), '--kms-key', KEY, ...outArg(c)];
    },
  },
  {
    name: 'ciphertext cut to its header',
    code: EXIT.integrity,
    message: /the ciphertext does not match this key/,
    args: (c) => ['--source', put(c, 'a.cfg.enc', ciphertext().subarray(0, 4)), '--kms-key', KEY, ...outArg(c)],
  },
  {
    name: 'tampered ciphertext (one bit flipped)',
    code: EXIT.integrity,
    message: /the ciphertext does not match this key \(was it encrypted with another key/,
    args: (c) => {
      const data = ciphertext();
      data.writeUInt8((data[20] as number) ^ 0x01, 20);
      return ['--source', put(c, 'a.cfg.enc', data), '--kms-key', KEY, ...outArg(c)];
    },
  },
  {
    name: 'corrupt ciphertext (random bytes)',
    code: EXIT.integrity,
    message: /the ciphertext does not match this key/,
    args: (c) => ['--source', put(c, 'a.cfg.enc', randomBytes(200)), '--kms-key', KEY, ...outArg(c)],
  },
  {
    name: 'a plaintext object decrypted as ciphertext',
    code: EXIT.integrity,
    message: /the ciphertext does not match this key/,
    args: (c) => ['--source', put(c, 'a.env.enc', `TOKEN=${CANARY}\n`), '--kms-key', KEY, '--env'],
  },
  {
    name: 'wrong key',
    code: EXIT.integrity,
    message: /with .*cryptoKeys\/other: the ciphertext does not match this key/,
    args: (c) => ['--source', put(c, 'a.cfg.enc', ciphertext()), '--kms-key', OTHER_KEY, ...outArg(c)],
  },
  {
    name: 'tampered ciphertext from a file: source',
    code: EXIT.integrity,
    message: /cannot decrypt file:.*a\.env\.enc with .*: the ciphertext does not match this key/,
    args: (c) => {
      const data = servers.kms.encrypt(KEY, Buffer.from(`TOKEN=${CANARY}\n`));
      data.writeUInt8((data[data.length - 1] as number) ^ 0x80, data.length - 1);
      return ['--source', `file:${localFile(c, 'a.env.enc', data)}`, '--kms-key', KEY, '--env'];
    },
  },
  {
    name: 'empty object with a key',
    code: EXIT.integrity,
    message: /cannot decrypt gs:\/\/.*\/a\.cfg\.enc: it is empty \(upload the output of gcloud kms encrypt\)/,
    args: (c) => ['--source', put(c, 'a.cfg.enc', ''), '--kms-key', KEY, ...outArg(c)],
  },
  {
    name: 'empty JSON object without a key',
    code: EXIT.format,
    message: /gs:\/\/.*\/a\.json:1:1: /,
    args: (c) => ['--source', put(c, 'a.json', ''), '--env', ...outArg(c)],
  },
  {
    name: 'a plaintext CRC32C that KMS reports wrongly',
    code: EXIT.integrity,
    message: /decrypting gs:\/\/.*\/a\.cfg\.enc returned a plaintext whose CRC32C does not match/,
    args: (c) => {
      const uri = put(c, 'a.cfg.enc', ciphertext());
      servers.kms.corruptNextPlaintextCrc();
      return ['--source', uri, '--kms-key', KEY, ...outArg(c)];
    },
  },
  {
    name: 'a download whose bytes do not match the CRC32C',
    code: EXIT.integrity,
    message: /gs:\/\/.*\/a\.env#\d+: the downloaded bytes do not match the object's (CRC32C|checksum)/,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      servers.gcs.corruptNextMedia();
      return ['--source', uri, '--env', ...outArg(c)];
    },
  },

  // Integrity data the metadata must carry: without it the download cannot be pinned, measured or checked.
  ...(
    [
      ['no crc32c', { crc32c: undefined }, /has no valid CRC32C, so the download could not be checked/],
      ['an empty crc32c', { crc32c: '' }, /has no valid CRC32C/],
      ['a crc32c of the wrong type', { crc32c: 12345 }, /has no valid CRC32C/],
      ['a malformed crc32c', { crc32c: 'not base64!' }, /has no valid CRC32C/],
      ['no size', { size: undefined }, /has no valid generation or size/],
      ['no generation', { generation: null }, /has no valid generation or size/],
    ] as const
  ).map(
    ([what, change, message]): Case => ({
      name: `metadata with ${what}`,
      code: EXIT.integrity,
      message,
      args: (c) => ['--source', withMetadata(c, 'a.env', `TOKEN=${CANARY}\n`, change), '--env', ...outArg(c)],
    }),
  ),
  {
    name: 'a download shorter than the size its metadata gives, on a cleanly closed answer',
    code: EXIT.integrity,
    message: /gs:\/\/.*\/a\.env#\d+: the download ended after \d+ of the \d+ bytes its metadata gives/,
    args: (c) => [
      '--source',
      withMetadata(c, 'a.env', `TOKEN=${CANARY}\n`, (stored) => ({ size: String(stored.data.length + 3) })),
      '--env',
      ...outArg(c),
    ],
  },
  // The same integrity data in the headers of the one GET that reads a gs:// object.
  {
    name: 'a download shorter than its x-goog-stored-content-length, on a cleanly closed answer',
    code: EXIT.integrity,
    message: /gs:\/\/.*\/a\.env#\d+: the download ended after \d+ of the \d+ bytes its metadata gives/,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      const stored = servers.gcs.getObject('vault', `${c.id}/a.env`) as StoredObject;
      servers.gcs.failNext({ method: 'GET', query: { alt: 'media' } }, [
        { status: 200, body: stored.data.toString(), headers: mediaHeaders(stored, stored.data.length + 3) },
      ]);
      return ['--source', uri, '--env', ...outArg(c)];
    },
  },
  {
    name: 'an x-goog-stored-content-length beyond --max-size: refused before the body is read',
    code: EXIT.integrity,
    message: /gs:\/\/.*\/a\.env is 104857600 bytes, more than the 1024-byte limit \(is this the right object\?\)$/,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      const stored = servers.gcs.getObject('vault', `${c.id}/a.env`) as StoredObject;
      servers.gcs.failNext({ method: 'GET', query: { alt: 'media' } }, [
        { status: 200, body: stored.data.toString(), headers: mediaHeaders(stored, 100 * 1024 * 1024) },
      ]);
      return ['--source', uri, '--env', '--max-size', '1KiB', ...outArg(c)];
    },
  },
  {
    name: 'a download of another generation than the one pinned',
    code: EXIT.integrity,
    message: /gs:\/\/.*\/a\.env#\d+: asked for generation \d+, got 1$/,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      const stored = servers.gcs.getObject('vault', `${c.id}/a.env`) as StoredObject;
      servers.gcs.failNext({ method: 'GET', query: { alt: 'media' } }, [
        { status: 200, body: stored.data.toString(), headers: { ...mediaHeaders(stored), 'x-goog-generation': '1' } },
      ]);
      return ['--source', `${uri}#${stored.generation}`, '--env', ...outArg(c)];
    },
  },
  {
    name: 'metadata that is JSON null',
    code: EXIT.unavailable,
    message: /Cloud Storage answered 502 for gs:\/\/.*\/a\.env after \d+ attempts; .*the --timeout of 2s/,
    retried: true,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      servers.gcs.failNext({ method: 'GET', path: `/b/vault/o/${c.id}/a.env` }, storm({ status: 200, body: 'null' }));
      return ['--source', uri, '--env', ...STORM_TIMEOUT];
    },
  },

  // Sizes.
  {
    name: 'object beyond --max-size',
    code: EXIT.integrity,
    message: /gs:\/\/.*\/a\.env is 70\d{3} bytes, more than the 65536-byte limit \(is this the right object\?\)/,
    args: (c) => ['--source', put(c, 'a.env', big(70_000)), '--max-size', '64KiB', '--env', ...outArg(c)],
  },
  {
    name: 'encrypted object beyond SECRET_FETCH_MAX_SIZE',
    code: EXIT.integrity,
    message: /gs:\/\/.*\/a\.env\.enc is \d+ bytes, more than the 1024-byte limit/,
    env: { SECRET_FETCH_MAX_SIZE: '1KiB' },
    args: (c) => ['--source', put(c, 'a.env.enc', big(2000), KEY), '--kms-key', KEY, '--env'],
  },
  {
    name: 'file beyond --max-size',
    code: EXIT.integrity,
    message: /a\.env is 5\d{3} bytes, more than the 4096-byte limit \(is this the right file\?\)/,
    args: (c) => ['--source', localFile(c, 'a.env', big(5000)), '--max-size', '4KiB', '--env'],
  },

  // Text and formats.
  formatCase(
    'invalid UTF-8 with --env',
    'a.env.enc',
    Buffer.concat([Buffer.from(`TOKEN=${CANARY}`), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('\n')]),
    /gs:\/\/.*\/a\.env\.enc is not valid UTF-8 text \(use --format raw with --out for binary secrets\)/,
  ),
  {
    name: 'invalid UTF-8 in a pyfile written only to --out',
    code: EXIT.format,
    message: /gs:\/\/.*\/a\.cfg is not valid UTF-8 text/,
    args: (c) => [
      '--source',
      put(c, 'a.cfg', Buffer.concat([Buffer.from(`KEY = "${CANARY}`), Buffer.from([0xed, 0xa0, 0x80, 0x22])])),
      ...outArg(c),
    ],
  },
  formatCase(
    'duplicate keys in dotenv',
    'a.env.enc',
    `TOKEN=${CANARY}\nTOKEN=${CANARY}2\n`,
    /a\.env\.enc:2:1: .*TOKEN/,
  ),
  formatCase(
    'duplicate keys in JSON',
    'a.json.enc',
    `{"TOKEN": "${CANARY}", "TOKEN": "${CANARY}"}`,
    /a\.json\.enc:1:\d+: .*TOKEN/,
  ),
  formatCase('duplicate keys in YAML', 'a.yaml.enc', `TOKEN: ${CANARY}\nTOKEN: x${CANARY}\n`, /a\.yaml\.enc:2:1: /),
  formatCase(
    'duplicate keys in a pyfile',
    'a.cfg.enc',
    `SECRET_KEY = "${CANARY}"\nSECRET_KEY = "x${CANARY}"\n`,
    /a\.cfg\.enc:2:1: .*SECRET_KEY/,
  ),
  formatCase('invalid variable name in dotenv', 'a.env.enc', `1TOKEN=${CANARY}\n`, /a\.env\.enc:1:1: /),
  formatCase('invalid variable name in JSON', 'a.json.enc', `{"MY-TOKEN": "${CANARY}"}`, /a\.json\.enc:1:2: /),
  formatCase('invalid variable name in YAML', 'a.yml.enc', `my token: ${CANARY}\n`, /a\.yml\.enc:1:1: /),
  formatCase('lowercase name in a pyfile', 'a.cfg.enc', `secret_key = "${CANARY}"\n`, /a\.cfg\.enc:1:1: /),
  formatCase('NUL byte in a dotenv value', 'a.env.enc', `TOKEN=${CANARY}\0${CANARY}\n`, /a\.env\.enc:1:\d+: .*NUL/i),
  formatCase('NUL escape in a JSON value', 'a.json.enc', `{"TOKEN": "${CANARY}\\u0000"}`, /a\.json\.enc:1:\d+: .*NUL/i),
  formatCase('NUL escape in a YAML value', 'a.yaml.enc', `TOKEN: "${CANARY}\\0"\n`, /a\.yaml\.enc:1:\d+: .*NUL/i),
  formatCase('NUL escape in a pyfile value', 'a.cfg.enc', `TOKEN = "${CANARY}\\x00"\n`, /a\.cfg\.enc:1:\d+: .*NUL/i),
  formatCase('dotenv line without =', 'a.env.enc', `TOKEN ${CANARY}\n`, /a\.env\.enc:1:\d+: /),
  formatCase('dotenv unterminated quote', 'a.env.enc', `TOKEN="${CANARY}\n`, /a\.env\.enc:1:\d+: /),
  formatCase('JSON trailing comma', 'a.json.enc', `{"TOKEN": "${CANARY}",}`, /a\.json\.enc:1:\d+: /),
  formatCase('JSON top level is an array', 'a.json.enc', `["${CANARY}"]`, /a\.json\.enc:1:1: /),
  formatCase('YAML unclosed flow mapping', 'a.yaml.enc', `{TOKEN: ${CANARY}\n`, /a\.yaml\.enc:\d+:\d+: /),
  formatCase('YAML top level is a list', 'a.yaml.enc', `- ${CANARY}\n`, /a\.yaml\.enc:1:1: /),
  formatCase('pyfile import', 'a.cfg.enc', `import os\nSECRET_KEY = "${CANARY}"\n`, /a\.cfg\.enc:1:1: /),
  formatCase('pyfile call', 'a.cfg.enc', `SECRET_KEY = open("${CANARY}")\n`, /a\.cfg\.enc:1:14: /),
  formatCase('pyfile unterminated string', 'a.cfg.enc', `SECRET_KEY = "${CANARY}\n`, /a\.cfg\.enc:1:14: /),
  formatCase('pyfile operator', 'a.cfg.enc', `SECRET_KEY = "${CANARY}" + "x"\n`, /a\.cfg\.enc:1:\d+: /),

  // Outputs.
  {
    name: 'target is a symlink',
    code: EXIT.output,
    message: /refusing to write .*\/secret: it is a symbolic link/,
    args: (c) => {
      symlinkSync(join(c.work, 'elsewhere'), join(c.out, 'secret'));
      return ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), ...outArg(c)];
    },
  },
  {
    name: 'target directory missing',
    code: EXIT.output,
    message: /cannot write .*\/missing\/secret: the directory .*\/missing does not exist/,
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), '--out', join(c.out, 'missing', 'secret')],
  },
  {
    name: 'target is a directory',
    code: EXIT.output,
    message: /cannot write .*\/secret: it is a directory/,
    args: (c) => {
      mkdirSync(join(c.out, 'secret'));
      return ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), ...outArg(c)];
    },
  },
  {
    name: 'read-only target directory',
    code: EXIT.output,
    message: /cannot write .*\/secret: the filesystem is read-only/,
    mount: 'ro',
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), ...outArg(c)],
  },
  {
    name: 'full tmpfs (size=4k)',
    code: EXIT.output,
    message: /cannot write .*\/secret: no space left on its filesystem/,
    mount: 'full',
    args: (c) => ['--source', put(c, 'a.env.enc', big(20_000), KEY), '--kms-key', KEY, '--env', ...outArg(c)],
  },
  {
    name: 'target directory not on tmpfs',
    code: EXIT.output,
    message: /refusing to write .*\/secret: .* is not on tmpfs or ramfs/,
    watch: (c) => join(c.work, 'disk-dir'),
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), '--out', join(c.work, 'disk-dir', 'secret')],
  },

  // Flags.
  {
    name: '--env with a raw source',
    code: EXIT.usage,
    message: /--env needs entries, but gs:\/\/.*\/a\.bin is read as raw/,
    args: (c) => ['--source', put(c, 'a.bin', CANARY), '--env'],
  },
  {
    name: 'a source with neither --out nor --env',
    code: EXIT.usage,
    message: /no --out and no --env: nothing would receive the secret/,
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`)],
  },
  {
    name: 'two --out for one --source',
    code: EXIT.usage,
    message: /2 --out for 1 --source/,
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), ...outArg(c, 'a'), ...outArg(c, 'b')],
  },
  {
    name: 'the same --out for two sources',
    code: EXIT.usage,
    message: /--out .*\/a is given for two sources/,
    args: (c) => [
      '--source',
      put(c, 'a.env', `TOKEN=${CANARY}\n`),
      '--source',
      put(c, 'b.env', `TOKEN=${CANARY}\n`),
      ...outArg(c, 'a'),
      ...outArg(c, 'a'),
    ],
  },
  {
    name: 'a --kms-key that is not a key name',
    code: EXIT.usage,
    message: /--kms-key projects\/demo\/keyRings\/apps is not a key name/,
    args: (c) => [
      '--source',
      put(c, 'a.env', `TOKEN=${CANARY}\n`),
      '--kms-key',
      'projects/demo/keyRings/apps',
      '--env',
    ],
  },
  {
    name: 'a world-readable --mode',
    code: EXIT.usage,
    message: /--mode 0644 makes the secret world-readable/,
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), '--mode', '0644', ...outArg(c)],
  },
  {
    name: 'a --max-size that is not a size',
    code: EXIT.usage,
    message: /--max-size 12XB is not a size/,
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), '--max-size', '12XB', '--env'],
  },
  {
    name: 'an unknown --format',
    code: EXIT.usage,
    message: /--format ini is not known/,
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), '--format', 'ini', '--env'],
  },
  {
    name: 'an unknown flag',
    code: EXIT.usage,
    message: /Unknown option '--sauce'/,
    args: (c) => ['--sauce', put(c, 'a.env', `TOKEN=${CANARY}\n`), '--env'],
  },
  {
    name: 'a --chdir that does not exist',
    code: EXIT.usage,
    message: /--chdir \/no\/such\/dir is not a directory/,
    args: (c) => ['--source', put(c, 'a.env', `TOKEN=${CANARY}\n`), '--env', '--chdir', '/no/such/dir', ...outArg(c)],
  },

  // Missing and denied.
  {
    name: 'missing object',
    code: EXIT.notFound,
    message: /gs:\/\/vault\/.*\/nope\.env does not exist \(check the bucket/,
    args: (c) => ['--source', gs(c, 'nope.env'), '--env', ...outArg(c)],
  },
  {
    name: 'missing generation',
    code: EXIT.notFound,
    message: /gs:\/\/vault\/.*\/a\.env#1 does not exist/,
    args: (c) => ['--source', `${put(c, 'a.env', `TOKEN=${CANARY}\n`)}#1`, '--env', ...outArg(c)],
  },
  {
    name: 'missing key',
    code: EXIT.notFound,
    message: /KMS key .*cryptoKeys\/missing does not exist/,
    args: (c) => ['--source', put(c, 'a.cfg.enc', ciphertext()), '--kms-key', MISSING_KEY, ...outArg(c)],
  },
  {
    name: 'missing local file',
    code: EXIT.notFound,
    message: /\/nope\.env does not exist \(check the --source path/,
    args: (c) => ['--source', `file:${join(c.work, 'nope.env')}`, '--env', ...outArg(c)],
  },
  {
    name: 'denied object',
    code: EXIT.permission,
    message: /access denied to gs:\/\/vault\/.*\/a\.env \(grant storage\.objects\.get/,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      servers.gcs.denyObject('vault', `${c.id}/a.env`);
      return ['--source', uri, '--env', ...outArg(c)];
    },
  },
  {
    name: 'denied key',
    code: EXIT.permission,
    message: /permission denied to decrypt with .*cryptoKeys\/denied/,
    args: (c) => ['--source', put(c, 'a.cfg.enc', ciphertext()), '--kms-key', DENIED_KEY, ...outArg(c)],
  },

  // Final answers: never retried, though the next answer would be fine (a retry would log a warning and succeed).
  ...(
    [
      [400, EXIT.usage, /Cloud Storage refused the request for gs:\/\/vault\/.*\/a\.env as invalid \(400\)/],
      [401, EXIT.permission, /no valid credentials for gs:\/\/vault\/.*\/a\.env/],
      [403, EXIT.permission, /access denied to gs:\/\/vault\/.*\/a\.env/],
      [404, EXIT.notFound, /gs:\/\/vault\/.*\/a\.env does not exist/],
      [
        412,
        EXIT.integrity,
        /Cloud Storage answered 412 \(precondition failed\) for gs:\/\/vault\/.*\/a\.env, to a read/,
      ],
      // Answers Cloud Storage never gives to a read: the endpoint is something else.
      ...[302, 409, 418].map(
        (status) =>
          [
            status,
            EXIT.unavailable,
            new RegExp(`Cloud Storage answered ${status} for gs://vault/.*/a\\.env, an answer it does not give`),
          ] as const,
      ),
    ] as const
  ).map(
    ([status, code, message]): Case => ({
      name: `Cloud Storage answers ${status} once`,
      code,
      message,
      args: (c) => {
        const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
        servers.gcs.failNext({ method: 'GET' }, [{ status }]);
        return ['--source', uri, '--env', ...outArg(c)];
      },
    }),
  ),
  ...(
    [
      [400, EXIT.integrity, /cannot decrypt gs:\/\/.*\/a\.cfg\.enc with .*: the ciphertext does not match this key/],
      [401, EXIT.permission, /no valid credentials to use .*cryptoKeys\/web/],
      [403, EXIT.permission, /permission denied to decrypt with .*cryptoKeys\/web/],
      [404, EXIT.notFound, /KMS key .*cryptoKeys\/web does not exist/],
      [412, EXIT.integrity, /with .*cryptoKeys\/web: the key version is disabled or destroyed/],
    ] as const
  ).map(
    ([status, code, message]): Case => ({
      name: `Cloud KMS answers ${status} once`,
      code,
      message,
      args: (c) => {
        const uri = put(c, 'a.cfg.enc', ciphertext());
        servers.kms.failNext({ method: 'POST' }, [{ status }]);
        return ['--source', uri, '--kms-key', KEY, ...outArg(c)];
      },
    }),
  ),

  // Services that stay down past the deadline.
  {
    name: '429 storm on Cloud Storage metadata',
    code: EXIT.unavailable,
    message: outlasted('Cloud Storage answered 429 for gs://vault/.*/a\\.env'),
    retried: true,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      servers.gcs.failNext({ method: 'GET' }, storm({ status: 429 }));
      return ['--source', uri, '--env', ...STORM_TIMEOUT, ...outArg(c)];
    },
  },
  {
    name: '503 storm on the Cloud Storage download',
    code: EXIT.unavailable,
    message: outlasted('Cloud Storage answered 503 for gs://vault/.*/a\\.env'),
    retried: true,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      servers.gcs.failNext({ method: 'GET', query: { alt: 'media' } }, storm({ status: 503 }));
      return ['--source', uri, '--env', ...STORM_TIMEOUT, ...outArg(c)];
    },
  },
  {
    name: '503 storm on Cloud KMS',
    code: EXIT.unavailable,
    message: outlasted('Cloud KMS failed to decrypt gs://.*/a\\.cfg\\.enc \\(status 14 UNAVAILABLE\\)'),
    retried: true,
    args: (c) => {
      const uri = put(c, 'a.cfg.enc', ciphertext());
      servers.kms.failNext({ method: 'POST' }, storm({ status: 503 }));
      return ['--source', uri, '--kms-key', KEY, ...STORM_TIMEOUT, ...outArg(c)];
    },
  },
  {
    name: '429 storm on Cloud KMS',
    code: EXIT.unavailable,
    message: outlasted('Cloud KMS failed to decrypt gs://.*/a\\.cfg\\.enc \\(status 8 RESOURCE_EXHAUSTED\\)'),
    retried: true,
    args: (c) => {
      const uri = put(c, 'a.cfg.enc', ciphertext());
      servers.kms.failNext({ method: 'POST' }, storm({ status: 429 }));
      return ['--source', uri, '--kms-key', KEY, ...STORM_TIMEOUT, ...outArg(c)];
    },
  },
  {
    name: 'connection resets on every download',
    code: EXIT.unavailable,
    message: outlasted('could not download gs://vault/.*/a\\.env: ECONNRESET'),
    retried: true,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      servers.gcs.failNext({ method: 'GET', query: { alt: 'media' } }, storm('reset'));
      return ['--source', uri, '--env', ...STORM_TIMEOUT, ...outArg(c)];
    },
  },
  {
    name: 'truncated body on every download',
    code: EXIT.unavailable,
    message: outlasted('could not download gs://vault/.*/a\\.env: [A-Z_]+'),
    retried: true,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}${'y'.repeat(4000)}\n`);
      servers.gcs.failNext({ method: 'GET', query: { alt: 'media' } }, storm('truncate'));
      return ['--source', uri, '--env', ...STORM_TIMEOUT, ...outArg(c)];
    },
  },
  {
    name: 'Cloud Storage stalls past --timeout',
    code: EXIT.unavailable,
    message: /could not download gs:\/\/vault\/.*\/a\.env within the --timeout of 1s/,
    args: (c) => {
      const uri = put(c, 'a.env', `TOKEN=${CANARY}\n`);
      servers.gcs.failNext({ method: 'GET' }, ['stall']);
      return ['--source', uri, '--env', '--timeout', '1s', ...outArg(c)];
    },
  },
  {
    name: 'Cloud KMS stalls past --timeout',
    code: EXIT.unavailable,
    message: /could not decrypt gs:\/\/vault\/.*\/a\.cfg\.enc with .* within the --timeout of 800ms/,
    args: (c) => {
      const uri = put(c, 'a.cfg.enc', ciphertext());
      servers.kms.failNext({ method: 'POST' }, ['stall']);
      return ['--source', uri, '--kms-key', KEY, '--timeout', '800ms', ...outArg(c)];
    },
  },
];

let scratch: { dir: string; cleanup: () => void };
let ctx: Ctx;

beforeAll(async () => {
  servers = await startTestServers();
  for (const key of [KEY, OTHER_KEY, DENIED_KEY]) servers.kms.createKey(key);
  servers.kms.denyKey(DENIED_KEY);
});
afterAll(async () => servers?.close());
beforeEach(() => {
  scratch = tmpfsDir();
  mkdirSync(join(scratch.dir, 'out'));
  mkdirSync(join(scratch.dir, 'work'));
  ctx = {
    out: join(scratch.dir, 'out'),
    work: join(scratch.dir, 'work'),
    id: `case-${randomBytes(4).toString('hex')}`,
  };
});
afterEach(() => {
  servers.gcs.releaseStalled();
  servers.kms.releaseStalled();
  servers.gcs.reset();
  servers.kms.reset();
  servers.kms.denyKey(DENIED_KEY);
  scratch.cleanup();
});

/** Runs the case with a command that would leave a marker; returns the result and what the --out dir held after. */
async function runCase(test: Case, c: Ctx): Promise<{ result: Result; after: string[]; before: string[] }> {
  const marker = join(c.work, 'command-ran');
  let watched = test.watch?.(c) ?? c.out;
  let disk: string | undefined;
  if (test.watch) {
    // A directory on disk (the repository's file system), standing where the case expects it.
    disk = mkdtempSync(join(ROOT, '.it-bad-input-'));
    symlinkSync(disk, watched);
    watched = disk;
  }
  try {
    const args = [...(await test.args(c)), '--', 'sh', '-c', `touch ${marker}`];
    const env = { ...servers.env, ...test.env };
    const before = filesIn(watched);
    if (test.mount === undefined) {
      const result = await runBinary(args, { env });
      return { result, before, after: filesIn(watched) };
    }
    // A private mount namespace with a 4 KiB tmpfs on the --out directory; its listing is taken inside.
    const listing = join(c.work, 'listing');
    const remount = test.mount === 'ro' ? ` && mount -o remount,ro ${c.out}` : '';
    const script = `mount -t tmpfs -o size=4k tmpfs ${c.out}${remount} || exit 99; "$@"; rc=$?; ls -A ${c.out} > ${listing}; exit $rc`;
    const result = await runBinary(['-m', 'sh', '-c', script, 'sh', BINARY, ...args], { env, command: 'unshare' });
    const after = readFileSync(listing, 'utf8').split('\n').filter(Boolean);
    return { result, before: [], after };
  } finally {
    if (disk) rmSync(disk, { recursive: true, force: true });
    expect(existsSync(marker), 'the command must not start').toBe(false);
  }
}

describe('bad input: one line, the exact code, nothing left, nothing started, nothing leaked', () => {
  it('has at least 40 cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    expect(new Set(CASES.map((t) => t.name)).size).toBe(CASES.length);
  });

  it.each(CASES.map((t) => [t.name, t] as const))('%s', { timeout: 20_000 }, async (_name, test) => {
    const { result, before, after } = await runCase(test, ctx);
    expect(result.code, result.stderr).toBe(test.code);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trimEnd().split('\n');
    // Retries are logged (attempt, delay, status): warnings before the one error line.
    const errors = test.retried ? lines.filter((l) => !/^secret-fetch: warning: attempt \d+ to /.test(l)) : lines;
    for (const warning of lines.filter((l) => !errors.includes(l))) expect(warning).toMatch(RETRY_WARNING);
    expect(errors, result.stderr).toHaveLength(1);
    expect(errors[0]).toMatch(/^secret-fetch: error: /);
    expect(errors[0]).toMatch(test.message);
    if (test.retried) expect(lines.length, result.stderr).toBeGreaterThan(1);
    expectNoCanary(result, CANARIES);
    // Nothing new in the --out directory: neither the target nor a temp file.
    expect(after).toEqual(before);
  });
});
