// An in-memory Cloud KMS v1 REST server for tests: symmetric ENCRYPT_DECRYPT keys (:encrypt, :decrypt) and
// ASYMMETRIC_SIGN keys of algorithm EC_SIGN_P256_SHA256 (:asymmetricSign, /publicKey), driven by the real
// @google-cloud/kms client in REST ("fallback") mode.
//
// What @google-cloud/kms 6.3 / google-gax 6.17 send in fallback mode (observed against this server):
//   POST /v1/projects/P/locations/L/keyRings/R/cryptoKeys/K:encrypt?$alt=json%3Benum-encoding=int
//   POST /v1/projects/P/locations/L/keyRings/R/cryptoKeys/K:decrypt?$alt=json%3Benum-encoding=int
//   POST /v1/projects/P/locations/L/keyRings/R/cryptoKeys/K:testIamPermissions?$alt=json%3Benum-encoding=int
//        body {"permissions":[...]}, sent by the IAMPolicy mixin (client.testIamPermissions)
//   (slashes in the name are NOT percent-encoded; `x-goog-request-params: name=<encoded name>`;
//   no Authorization header with PassThroughClient; Content-Type: application/json)
//   secret-fetch's own thin client (src/decrypt/kms-client.ts) sends the same paths and bodies without
//   `$alt`, so it gets enums by name, and no x-goog-request-params.
// - bytes travel as standard base64 strings; empty bytes fields are left out entirely.
// - The Int64Value wrappers (plaintextCrc32c, ciphertextCrc32c, additionalAuthenticatedDataCrc32c)
//   given as `{value: n}` in JS go on the wire as a bare decimal STRING: `"plaintextCrc32c":"907060870"`.
//   This server also accepts a number or a `{"value": ...}` object, and snake_case field names.
// - enum-encoding=int asks for numeric enums, so protectionLevel is answered as 1 (SOFTWARE) then; the
//   client turns it back into 'SOFTWARE'. Response Int64Values (ciphertextCrc32c, plaintextCrc32c) are
//   sent as strings and reach the caller as `{value: '123'}` (string, not number).
// - gax maps an error response to a gRPC code from the body's `error.status` name when present, else from
//   `error.code` (the HTTP status) via 400->3, 401->16, 403->7, 404->5, 409->10, 429->8, 503->14, 504->4,
//   other 4xx->9, other 5xx->13. Encrypt/Decrypt retry UNAVAILABLE(14) and DEADLINE_EXCEEDED(4) (from
//   100 ms, x1.3); a reset connection surfaces as UNAVAILABLE and is retried too.
// - Signing keys:
//   POST /v1/projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V:asymmetricSign
//        {"name", "digest": {"sha256": base64}, "digestCrc32c": "123"} -> {"signature", "signatureCrc32c",
//        "verifiedDigestCrc32c", "name", "protectionLevel"}; the signature is DER (SEQUENCE of r, s).
//   GET  /v1/projects/.../cryptoKeyVersions/V/publicKey -> {"pem", "algorithm", "pemCrc32c", "name",
//        "protectionLevel"}; with enum-encoding=int the algorithm is 12 (EC_SIGN_P256_SHA256), which the
//        client turns back into its name.
//   Both need a version name; a key without versions, or a version of a symmetric key, answers 400
//   FAILED_PRECONDITION (gRPC 9), as :encrypt and :decrypt do for a signing key.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { crc32c } from './crc32c.ts';
import { type EcSigningKey, generateSigningKey, signDigest } from './ecdsa.ts';
import {
  type FaultMatch,
  FaultQueue,
  type FaultResponse,
  faultFromJson,
  type ListenOptions,
  type LoggedRequest,
  listen,
  pathForms,
  queryObject,
  readJson,
  readJsonBody,
  runSideEffect,
  type SendOptions,
  safeDecode,
  sendJson,
  serveFault,
} from './http.ts';

export type { FaultMatch, FaultResponse, LoggedRequest } from './http.ts';

export interface KmsLoggedRequest extends LoggedRequest {
  /** The parsed JSON body (undefined if empty or not JSON). */
  body: unknown;
}

export interface KmsServer {
  /** e.g. "http://127.0.0.1:PORT" - the value for SECRET_FETCH_KMS_ENDPOINT. */
  readonly url: string;
  readonly port: number;
  /** Every API request received, in order (control requests excluded). Clear with `requests.length = 0`. */
  readonly requests: KmsLoggedRequest[];
  /** A symmetric ENCRYPT_DECRYPT key "projects/P/locations/L/keyRings/R/cryptoKeys/K", primary version 1. */
  createKey(name: string): void;
  /** An ASYMMETRIC_SIGN key of algorithm EC_SIGN_P256_SHA256 with one version; returns that version's name. */
  createSigningKey(name: string): string;
  /**
   * Add a new version; a symmetric key makes it primary (old ciphertexts still decrypt, usedPrimary:
   * false). Returns the new version's name.
   */
  rotateKey(name: string): string;
  /** The PEM public key of a signing key version, as GET .../publicKey returns it. */
  publicKeyPem(versionName: string): string;
  /**
   * Every request on this key (existing or not) gets 403 PERMISSION_DENIED, and testIamPermissions
   * on it grants nothing.
   */
  denyKey(name: string): void;
  allowKey(name: string): void;
  /** Encrypt locally, exactly as :encrypt would (for seeding test data without a client). */
  encrypt(name: string, plaintext: Uint8Array | string, additionalAuthenticatedData?: Uint8Array): Buffer;
  /** The next matching requests (one per response, in order) get these responses instead. */
  failNext(match: FaultMatch, responses: readonly FaultResponse[]): void;
  readonly pendingFaults: number;
  /** The next :decrypt response carries a wrong plaintextCrc32c (the plaintext itself is right). */
  corruptNextPlaintextCrc(): void;
  /** Drop the connections of requests held by 'stall' faults. */
  releaseStalled(): void;
  /** Forget faults, denials and the request log (keys stay). */
  reset(): void;
  close(): Promise<void>;
}

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  412: 'FAILED_PRECONDITION',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  500: 'INTERNAL',
  501: 'UNIMPLEMENTED',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

const DEFAULT_MESSAGES: Record<number, string> = {
  429: 'Quota exceeded.',
  500: 'Internal error encountered.',
  503: 'The service is currently unavailable.',
  504: 'Deadline exceeded.',
};

/** A Google API (AIP-193) error body as Cloud KMS sends it. */
export function kmsErrorBody(code: number, message?: string) {
  return {
    error: {
      code,
      message: message ?? DEFAULT_MESSAGES[code] ?? `HTTP ${code}`,
      status: STATUS_NAMES[code] ?? (code >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION'),
    },
  };
}

class KmsError extends Error {
  code: number;
  status: string | undefined;
  constructor(code: number, message: string, status?: string) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function fail(code: number, message: string, status?: string): never {
  throw new KmsError(code, message, status);
}

const MAX_PLAINTEXT = 65536;
const MAX_AAD = 65536;
const MAX_CIPHERTEXT = 65536 + 800;
const HEADER = 4; // version id, big-endian
const NONCE = 12;
const TAG = 16;
const KEY_NAME = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;
const VERSION_NAME =
  /^(projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+)\/cryptoKeyVersions\/(\d+)$/;

interface Key {
  purpose: 'ENCRYPT_DECRYPT' | 'ASYMMETRIC_SIGN';
  /** Symmetric key material per version (ENCRYPT_DECRYPT). */
  versions: Map<number, Buffer>;
  /** Signing keys per version (ASYMMETRIC_SIGN). */
  signers: Map<number, EcSigningKey>;
  primary: number;
}

type Operation = 'encrypt' | 'decrypt' | 'sign' | 'publicKey';

const PERMISSIONS: Record<Operation, string> = {
  encrypt: 'useToEncrypt',
  decrypt: 'useToDecrypt',
  sign: 'useToSign',
  publicKey: 'viewPublicKey',
};

const EC_SIGN_P256_SHA256 = 12;

const ENCRYPT_FIELDS: Record<string, string> = {
  name: 'name',
  plaintext: 'plaintext',
  additionalAuthenticatedData: 'additionalAuthenticatedData',
  additional_authenticated_data: 'additionalAuthenticatedData',
  plaintextCrc32c: 'plaintextCrc32c',
  plaintext_crc32c: 'plaintextCrc32c',
  additionalAuthenticatedDataCrc32c: 'additionalAuthenticatedDataCrc32c',
  additional_authenticated_data_crc32c: 'additionalAuthenticatedDataCrc32c',
};
const DECRYPT_FIELDS: Record<string, string> = {
  name: 'name',
  ciphertext: 'ciphertext',
  additionalAuthenticatedData: 'additionalAuthenticatedData',
  additional_authenticated_data: 'additionalAuthenticatedData',
  ciphertextCrc32c: 'ciphertextCrc32c',
  ciphertext_crc32c: 'ciphertextCrc32c',
  additionalAuthenticatedDataCrc32c: 'additionalAuthenticatedDataCrc32c',
  additional_authenticated_data_crc32c: 'additionalAuthenticatedDataCrc32c',
};
const SIGN_FIELDS: Record<string, string> = {
  name: 'name',
  digest: 'digest',
  digestCrc32c: 'digestCrc32c',
  digest_crc32c: 'digestCrc32c',
  data: 'data',
  dataCrc32c: 'dataCrc32c',
  data_crc32c: 'dataCrc32c',
};
const DIGEST_FIELDS: Record<string, string> = {
  sha256: 'sha256',
  sha384: 'sha384',
  sha512: 'sha512',
  externalMu: 'externalMu',
  external_mu: 'externalMu',
};
const SNAKE: Record<string, string> = {
  digest: 'digest',
  sha256: 'digest.sha256',
  digestCrc32c: 'digest_crc32c',
  data: 'data',
  dataCrc32c: 'data_crc32c',
  plaintext: 'plaintext',
  ciphertext: 'ciphertext',
  additionalAuthenticatedData: 'additional_authenticated_data',
  plaintextCrc32c: 'plaintext_crc32c',
  ciphertextCrc32c: 'ciphertext_crc32c',
  additionalAuthenticatedDataCrc32c: 'additional_authenticated_data_crc32c',
};

/** Normalize the request body to camelCase fields, rejecting unknown ones as real KMS does. */
function fields(body: unknown, allowed: Record<string, string>): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    fail(400, 'Invalid JSON payload received. Expected an object.');
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    const canonical = allowed[k];
    if (canonical === undefined) fail(400, `Invalid JSON payload received. Unknown name "${k}": Cannot find field.`);
    out[canonical] = v;
  }
  return out;
}

function bytesField(f: Record<string, unknown>, name: string): Buffer | undefined {
  const v = f[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(v)) {
    fail(400, `Invalid value at '${SNAKE[name]}' (TYPE_BYTES), Base64 decoding failed for "${String(v)}"`);
  }
  return Buffer.from(v, 'base64');
}

/** An Int64Value wrapper: a decimal string (what the client sends), a number, or {value}. */
function int64Field(f: Record<string, unknown>, name: string): bigint | undefined {
  let v = f[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && 'value' in v) v = (v as { value: unknown }).value;
  if ((typeof v === 'string' && /^-?\d+$/.test(v)) || (typeof v === 'number' && Number.isInteger(v))) return BigInt(v);
  fail(400, `Invalid value at '${SNAKE[name]}' (type.googleapis.com/google.protobuf.Int64Value), ${JSON.stringify(v)}`);
}

function checkCrc(expected: bigint | undefined, data: Buffer, field: string): boolean {
  if (expected === undefined) return false;
  if (expected !== BigInt(crc32c(data))) {
    fail(400, `The checksum in field ${SNAKE[field]}_crc32c did not match the data in field ${SNAKE[field]}.`);
  }
  return true;
}

export async function startKmsServer(opts: ListenOptions = {}): Promise<KmsServer> {
  const keys = new Map<string, Key>();
  const denied = new Set<string>();
  const faults = new FaultQueue();
  const requests: KmsLoggedRequest[] = [];
  let corruptCrc = 0;

  function seal(key: Key, version: number, plaintext: Buffer, aad: Buffer): Buffer {
    const material = key.versions.get(version) as Buffer;
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv('aes-256-gcm', material, nonce);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const header = Buffer.alloc(HEADER);
    header.writeUInt32BE(version);
    return Buffer.concat([header, nonce, body, cipher.getAuthTag()]);
  }

  function open(key: Key, ciphertext: Buffer, aad: Buffer): { plaintext: Buffer; version: number } {
    const invalid = 'Decryption failed: the ciphertext is invalid.';
    if (ciphertext.length < HEADER + NONCE + TAG) fail(400, invalid);
    const version = ciphertext.readUInt32BE(0);
    const material = key.versions.get(version);
    if (!material) fail(400, invalid);
    try {
      const decipher = createDecipheriv('aes-256-gcm', material, ciphertext.subarray(HEADER, HEADER + NONCE));
      decipher.setAAD(aad);
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG));
      const plaintext = Buffer.concat([decipher.update(ciphertext.subarray(HEADER + NONCE, -TAG)), decipher.final()]);
      return { plaintext, version };
    } catch {
      fail(400, invalid);
    }
  }

  /**
   * The key and version for an encrypt name (key or key version), a decrypt name (key only), or a
   * sign or publicKey name (key version only).
   */
  function resolve(name: string, op: Operation): { keyName: string; key: Key; version: number } {
    const v = VERSION_NAME.exec(name);
    const keyName = v ? (v[1] as string) : name;
    const needsVersion = op === 'sign' || op === 'publicKey';
    if (!KEY_NAME.test(keyName) || (v && op === 'decrypt') || (!v && needsVersion)) {
      fail(400, `Resource name [${name}] does not match any known pattern.`);
    }
    if (denied.has(keyName)) {
      fail(
        403,
        `Permission 'cloudkms.cryptoKeyVersions.${PERMISSIONS[op]}' denied on resource '${name}' (or it may not exist).`,
      );
    }
    const key = keys.get(keyName);
    if (!key) fail(404, `CryptoKey ${keyName} not found.`);
    const purpose = needsVersion ? 'ASYMMETRIC_SIGN' : 'ENCRYPT_DECRYPT';
    if (key.purpose !== purpose) {
      fail(
        400,
        `The request cannot be fulfilled: CryptoKey ${keyName} has purpose ${key.purpose}, not ${purpose}.`,
        'FAILED_PRECONDITION',
      );
    }
    const version = v ? Number(v[2]) : key.primary;
    if (!key.versions.has(version) && !key.signers.has(version)) fail(404, `CryptoKeyVersion ${name} not found.`);
    return { keyName, key, version };
  }

  function doEncrypt(name: string, body: unknown, numericEnums: boolean) {
    const f = fields(body, ENCRYPT_FIELDS);
    const { keyName, key, version } = resolve(name, 'encrypt');
    const plaintext = bytesField(f, 'plaintext') ?? Buffer.alloc(0);
    const aad = bytesField(f, 'additionalAuthenticatedData') ?? Buffer.alloc(0);
    if (plaintext.length > MAX_PLAINTEXT) {
      fail(400, `The plaintext must be at most ${MAX_PLAINTEXT} bytes, but was ${plaintext.length} bytes.`);
    }
    if (aad.length > MAX_AAD) {
      fail(400, `The additional authenticated data must be at most ${MAX_AAD} bytes, but was ${aad.length} bytes.`);
    }
    const verifiedPlaintext = checkCrc(int64Field(f, 'plaintextCrc32c'), plaintext, 'plaintext');
    const verifiedAad = checkCrc(
      int64Field(f, 'additionalAuthenticatedDataCrc32c'),
      aad,
      'additionalAuthenticatedData',
    );
    const ciphertext = seal(key, version, plaintext, aad);
    return {
      name: `${keyName}/cryptoKeyVersions/${version}`,
      ciphertext: ciphertext.toString('base64'),
      ciphertextCrc32c: String(crc32c(ciphertext)),
      verifiedPlaintextCrc32c: verifiedPlaintext,
      verifiedAdditionalAuthenticatedDataCrc32c: verifiedAad,
      protectionLevel: numericEnums ? 1 : 'SOFTWARE',
    };
  }

  // IAMPolicy.TestIamPermissions needs no permission itself and answers the subset of the asked
  // permissions the caller holds; on a resource that does not exist it answers an empty set, not
  // NOT_FOUND (as the KMS reference documents). The field is left out when empty (proto3 JSON).
  function doTestIamPermissions(resource: string, body: unknown) {
    const f = fields(body, { permissions: 'permissions' });
    const asked = f.permissions;
    if (!Array.isArray(asked) || asked.length === 0 || !asked.every((p) => typeof p === 'string')) {
      fail(400, 'Invalid JSON payload received. permissions must be a non-empty list of strings.');
    }
    for (const permission of asked as string[]) {
      if (!/^cloudkms\.[a-zA-Z]+\.[a-zA-Z]+$/.test(permission)) {
        fail(400, `Permission '${permission}' is not valid for this resource.`);
      }
    }
    const keyRing = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+$/.test(resource);
    if (!KEY_NAME.test(resource) && !keyRing) {
      fail(400, `Resource name [${resource}] does not match any known pattern.`);
    }
    const exists = keyRing ? [...keys.keys()].some((k) => k.startsWith(`${resource}/`)) : keys.has(resource);
    const held = exists && !denied.has(resource) ? (asked as string[]) : [];
    return held.length > 0 ? { permissions: held } : {};
  }

  function doDecrypt(name: string, body: unknown, numericEnums: boolean) {
    const f = fields(body, DECRYPT_FIELDS);
    const { key } = resolve(name, 'decrypt');
    const ciphertext = bytesField(f, 'ciphertext');
    if (ciphertext === undefined || ciphertext.length === 0) fail(400, 'The ciphertext field must be set.');
    if (ciphertext.length > MAX_CIPHERTEXT) {
      fail(400, `The ciphertext must be at most ${MAX_CIPHERTEXT} bytes, but was ${ciphertext.length} bytes.`);
    }
    const aad = bytesField(f, 'additionalAuthenticatedData') ?? Buffer.alloc(0);
    checkCrc(int64Field(f, 'ciphertextCrc32c'), ciphertext, 'ciphertext');
    checkCrc(int64Field(f, 'additionalAuthenticatedDataCrc32c'), aad, 'additionalAuthenticatedData');
    const { plaintext, version } = open(key, ciphertext, aad);
    let crc = crc32c(plaintext);
    if (corruptCrc > 0) {
      corruptCrc--;
      crc = (crc ^ 0x00000001) >>> 0;
    }
    return {
      plaintext: plaintext.toString('base64'),
      plaintextCrc32c: String(crc),
      usedPrimary: version === key.primary,
      protectionLevel: numericEnums ? 1 : 'SOFTWARE',
    };
  }

  function doAsymmetricSign(name: string, body: unknown, numericEnums: boolean) {
    const f = fields(body, SIGN_FIELDS);
    const { keyName, key, version } = resolve(name, 'sign');
    if (f.data !== undefined) fail(400, 'EC_SIGN_P256_SHA256 signs a digest, not data.');
    const digest = fields(f.digest ?? {}, DIGEST_FIELDS);
    const sha256 = bytesField(digest, 'sha256');
    if (sha256 === undefined || Object.keys(digest).length !== 1) {
      fail(400, 'The digest must be a SHA-256 digest for algorithm EC_SIGN_P256_SHA256.');
    }
    if (sha256.length !== 32) fail(400, `A SHA-256 digest is 32 bytes, but was ${sha256.length} bytes.`);
    const verified = checkCrc(int64Field(f, 'digestCrc32c'), sha256, 'digest');
    const signature = signDigest(key.signers.get(version) as EcSigningKey, sha256);
    return {
      signature: signature.toString('base64'),
      signatureCrc32c: String(crc32c(signature)),
      verifiedDigestCrc32c: verified,
      name: `${keyName}/cryptoKeyVersions/${version}`,
      protectionLevel: numericEnums ? 1 : 'SOFTWARE',
    };
  }

  function doGetPublicKey(name: string, numericEnums: boolean) {
    const { keyName, key, version } = resolve(name, 'publicKey');
    const pem = (key.signers.get(version) as EcSigningKey).pem;
    return {
      pem,
      algorithm: numericEnums ? EC_SIGN_P256_SHA256 : 'EC_SIGN_P256_SHA256',
      pemCrc32c: String(crc32c(Buffer.from(pem))),
      name: `${keyName}/cryptoKeyVersions/${version}`,
      protectionLevel: numericEnums ? 1 : 'SOFTWARE',
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = req.method ?? 'GET';
    const rawPath = url.pathname;
    const query = queryObject(url);

    if (rawPath.startsWith('/_emulator/')) return control(req, res, rawPath);

    const { body, parseError } = await readJsonBody(req);
    requests.push({ method, path: rawPath, query, headers: req.headers, body });

    const fault = await runSideEffect(faults.take(method, pathForms(rawPath, ['/v1']), query));
    if (fault !== undefined && fault !== 'truncate' && fault !== 'pass') {
      // The body has been read already; serveFault's read resolves at once.
      return serveFault(req, res, fault, (status) => kmsErrorBody(status), listening.stalled);
    }
    const sendOpts: SendOptions = { truncate: fault === 'truncate' };

    try {
      // `$alt=json;enum-encoding=int` asks for enums as numbers.
      const numericEnums = (query.$alt ?? '').includes('enum-encoding=int');
      const publicKey = /^\/v1\/(.+)\/publicKey$/.exec(rawPath);
      if (publicKey) {
        if (method !== 'GET') fail(405, `Method ${method} not allowed.`);
        return sendJson(res, 200, doGetPublicKey(safeDecode(publicKey[1] as string), numericEnums), {}, sendOpts);
      }
      const m = /^\/v1\/(.+):(encrypt|decrypt|asymmetricSign|testIamPermissions)$/.exec(rawPath);
      if (!m) fail(404, `Method not found: ${method} ${rawPath}`);
      if (method !== 'POST') fail(405, `Method ${method} not allowed.`);
      if (parseError) fail(400, 'Invalid JSON payload received.');
      const name = safeDecode(m[1] as string);
      const operations = {
        encrypt: doEncrypt,
        decrypt: doDecrypt,
        asymmetricSign: doAsymmetricSign,
        testIamPermissions: (n: string, request: unknown) => doTestIamPermissions(n, request),
      };
      const result = operations[m[2] as keyof typeof operations](name, body ?? {}, numericEnums);
      sendJson(res, 200, result, {}, sendOpts);
    } catch (err) {
      if (!(err instanceof KmsError)) throw err;
      const error = kmsErrorBody(err.code, err.message);
      if (err.status !== undefined) error.error.status = err.status;
      sendJson(res, err.code, error, {}, sendOpts);
    }
  }

  async function control(req: IncomingMessage, res: ServerResponse, path: string) {
    // For servers started as a separate process (start.ts).
    const body = (await readJson(req)) as { name?: string; purpose?: string };
    try {
      if (path === '/_emulator/keys' && req.method === 'POST') {
        if (body.purpose === 'ASYMMETRIC_SIGN') {
          const version = api.createSigningKey(body.name ?? '');
          return sendJson(res, 200, { name: body.name, version, pem: api.publicKeyPem(version) });
        }
        api.createKey(body.name ?? '');
        return sendJson(res, 200, { name: body.name });
      }
      if (path === '/_emulator/denyKey' && req.method === 'POST') {
        api.denyKey(body.name ?? '');
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/failNext' && req.method === 'POST') {
        const { match, responses } = faultFromJson(body);
        api.failNext(match, responses);
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/corruptNextPlaintextCrc' && req.method === 'POST') {
        api.corruptNextPlaintextCrc();
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/requests' && req.method === 'GET') return sendJson(res, 200, requests);
      return sendJson(res, 404, kmsErrorBody(404, `No control endpoint ${path}`));
    } catch (err) {
      return sendJson(res, 400, kmsErrorBody(400, String(err)));
    }
  }

  const listening = await listen(handle, opts);

  const api: KmsServer = {
    url: listening.url,
    port: listening.port,
    requests,
    createKey(name) {
      if (!KEY_NAME.test(name)) throw new Error(`not a CryptoKey name: ${name}`);
      if (keys.has(name)) throw new Error(`key already exists: ${name}`);
      keys.set(name, {
        purpose: 'ENCRYPT_DECRYPT',
        versions: new Map([[1, randomBytes(32)]]),
        signers: new Map(),
        primary: 1,
      });
    },
    createSigningKey(name) {
      if (!KEY_NAME.test(name)) throw new Error(`not a CryptoKey name: ${name}`);
      if (keys.has(name)) throw new Error(`key already exists: ${name}`);
      keys.set(name, {
        purpose: 'ASYMMETRIC_SIGN',
        versions: new Map(),
        signers: new Map([[1, generateSigningKey()]]),
        primary: 1,
      });
      return `${name}/cryptoKeyVersions/1`;
    },
    rotateKey(name) {
      const key = keys.get(name);
      if (!key) throw new Error(`no such key: ${name}`);
      const version = Math.max(...key.versions.keys(), ...key.signers.keys()) + 1;
      if (key.purpose === 'ASYMMETRIC_SIGN') {
        key.signers.set(version, generateSigningKey());
      } else {
        key.versions.set(version, randomBytes(32));
        key.primary = version;
      }
      return `${name}/cryptoKeyVersions/${version}`;
    },
    publicKeyPem(versionName) {
      const v = VERSION_NAME.exec(versionName);
      const signer = v ? keys.get(v[1] as string)?.signers.get(Number(v[2])) : undefined;
      if (!signer) throw new Error(`no such signing key version: ${versionName}`);
      return signer.pem;
    },
    denyKey(name) {
      denied.add(name);
    },
    allowKey(name) {
      denied.delete(name);
    },
    encrypt(name, plaintext, additionalAuthenticatedData = new Uint8Array()) {
      const key = keys.get(name);
      if (!key) throw new Error(`no such key: ${name}`);
      return seal(key, key.primary, Buffer.from(plaintext), Buffer.from(additionalAuthenticatedData));
    },
    failNext(match, responses) {
      faults.add(match, responses);
    },
    get pendingFaults() {
      return faults.pending;
    },
    corruptNextPlaintextCrc() {
      corruptCrc++;
    },
    reset() {
      faults.clear();
      denied.clear();
      corruptCrc = 0;
      requests.length = 0;
    },
    releaseStalled: () => listening.releaseStalled(),
    close: () => listening.close(),
  };
  return api;
}
