// An in-memory Secret Manager v1 REST server for tests: secrets, numbered versions with states,
// `latest` and aliases, :access with dataCrc32c, driven by the real @google-cloud/secret-manager
// client in REST ("fallback") mode.
//
// What @google-cloud/secret-manager 7.2 / google-gax 6.17 send in fallback mode (observed against this server):
//   access       GET  /v1/projects/P/secrets/S/versions/V:access?$alt=json%3Benum-encoding=int
//   get version  GET  /v1/projects/P/secrets/S/versions/V?$alt=...
//   get secret   GET  /v1/projects/P/secrets/S?$alt=...
//   create       POST /v1/projects/P/secrets?secretId=S&$alt=...     body: the Secret resource
//   add version  POST /v1/projects/P/secrets/S:addVersion?$alt=...   body: {payload: {data, dataCrc32c}}
//   test IAM     POST /v1/projects/P/secrets/S:testIamPermissions    body: {permissions: [...]}
//   (slashes in names are not percent-encoded; no Authorization header with PassThroughClient)
// - bytes travel as standard base64; int64 fields (dataCrc32c) as decimal STRINGS both ways, and the
//   client hands a response's dataCrc32c to the caller as that string ('907060870').
// - enum-encoding=int asks for numeric enums (state ENABLED is answered as 1); the client turns them back.
// - Like the real service, response names carry the project NUMBER (projects/123.../secrets/S/versions/4),
//   whichever of ID or number the request used; `latest` is the most recently created version, whatever
//   its state (a disabled latest fails with FAILED_PRECONDITION, it does not fall back to an older one).
// - gax maps an error to a gRPC code from the body's error.status (else from the HTTP status): 400
//   FAILED_PRECONDITION -> 9, 403 -> 7, 404 -> 5, 409 -> 6, 429 -> 8, 500 -> 13, 503 -> 14, 504 -> 4.
//   With only `maxRetries: 0`, a code in the method's retry codes (access: 8 and 14) surfaces as 4
//   "Exceeded maximum number of retries"; with `retry: {retryCodes: []}` as well, it surfaces as itself.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { crc32c } from './crc32c.ts';
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

export type VersionState = 'ENABLED' | 'DISABLED' | 'DESTROYED';

export interface SecretManagerLoggedRequest extends LoggedRequest {
  /** The parsed JSON body (undefined if empty or not JSON). */
  body: unknown;
}

/** Every permission this server knows; a secret grants all of them unless denySecret or grant says otherwise. */
export const PERMISSIONS = [
  'secretmanager.secrets.create',
  'secretmanager.secrets.get',
  'secretmanager.secrets.update',
  'secretmanager.secrets.delete',
  'secretmanager.secrets.getIamPolicy',
  'secretmanager.secrets.setIamPolicy',
  'secretmanager.versions.access',
  'secretmanager.versions.add',
  'secretmanager.versions.get',
  'secretmanager.versions.list',
  'secretmanager.versions.enable',
  'secretmanager.versions.disable',
  'secretmanager.versions.destroy',
] as const;

export interface SecretManagerServer {
  /** e.g. "http://127.0.0.1:PORT" - the value for SECRET_FETCH_SECRET_MANAGER_ENDPOINT. */
  readonly url: string;
  readonly port: number;
  /** Every API request received, in order (control requests excluded). Clear with `requests.length = 0`. */
  readonly requests: SecretManagerLoggedRequest[];
  /** The project number this server answers with for a project ID (a number maps to itself). */
  projectNumber(project: string): string;
  /** A secret "projects/P/secrets/S" with no versions. */
  createSecret(name: string): void;
  /** Add a version (ENABLED unless told) and return its number, e.g. "3"; `latest` now points at it. */
  addVersion(secret: string, data: Uint8Array | string, options?: { state?: VersionState }): string;
  /** DESTROYED also discards the data, as the real service does. */
  setVersionState(secret: string, version: string, state: VersionState): void;
  /** Point an alias at a version number, or remove it (undefined). */
  setAlias(secret: string, alias: string, version: string | undefined): void;
  /** Every request on this secret (existing or not) gets 403 PERMISSION_DENIED. */
  denySecret(secret: string): void;
  /** Grant exactly these permissions on the secret (e.g. only secretmanager.versions.access). */
  grant(secret: string, permissions: readonly string[]): void;
  /** Back to every permission. */
  allowSecret(secret: string): void;
  /** The next matching requests (one per response, in order) get these responses instead. */
  failNext(match: FaultMatch, responses: readonly FaultResponse[]): void;
  readonly pendingFaults: number;
  /** The next :access response carries a wrong dataCrc32c (the data itself is right). */
  corruptNextCrc(): void;
  /** Drop the connections of requests held by 'stall' faults. */
  releaseStalled(): void;
  /** Forget faults, denials, grants and the request log (secrets stay). */
  reset(): void;
  close(): Promise<void>;
}

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ALREADY_EXISTS',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  500: 'INTERNAL',
  501: 'UNIMPLEMENTED',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

const DEFAULT_MESSAGES: Record<number, string> = {
  429: "Quota exceeded for quota metric 'Access requests' and limit 'Access requests per minute'.",
  500: 'Internal error encountered.',
  503: 'The service is currently unavailable.',
  504: 'Deadline exceeded.',
};

/** A Google API (AIP-193) error body as Secret Manager sends it. */
export function secretManagerErrorBody(code: number, message?: string, status?: string) {
  return {
    error: {
      code,
      message: message ?? DEFAULT_MESSAGES[code] ?? `HTTP ${code}`,
      status: status ?? STATUS_NAMES[code] ?? (code >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION'),
    },
  };
}

class ApiError extends Error {
  code: number;
  status: string | undefined;
  constructor(code: number, message: string, status?: string) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function fail(code: number, message: string, status?: string): never {
  throw new ApiError(code, message, status);
}

const KNOWN: ReadonlySet<string> = new Set(PERMISSIONS);
const MAX_PAYLOAD = 65536;
const PROJECT = '[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}';
const SECRET_ID = /^[A-Za-z0-9_-]{1,255}$/;
const SECRET_NAME = new RegExp(`^projects/(${PROJECT})/secrets/([A-Za-z0-9_-]{1,255})$`);
const VERSION_ID = /^([1-9][0-9]{0,19}|latest|[A-Za-z][A-Za-z0-9_-]{0,62})$/;
const STATE_NUMBERS: Record<VersionState, number> = { ENABLED: 1, DISABLED: 2, DESTROYED: 3 };

interface Version {
  number: number;
  state: VersionState;
  data: Buffer | undefined;
  createTime: string;
  destroyTime: string | undefined;
  clientSpecifiedPayloadChecksum: boolean;
}

interface StoredSecret {
  /** projects/NUMBER/secrets/S */
  name: string;
  createTime: string;
  versions: Map<number, Version>;
  aliases: Map<string, number>;
  labels: Record<string, string>;
}

export async function startSecretManagerServer(opts: ListenOptions = {}): Promise<SecretManagerServer> {
  const projectNumbers = new Map<string, string>();
  const secrets = new Map<string, StoredSecret>();
  /** Permissions per canonical secret name, when not all of them. */
  const grants = new Map<string, Set<string>>();
  const faults = new FaultQueue();
  const requests: SecretManagerLoggedRequest[] = [];
  let corruptCrc = 0;
  let clock = Date.parse('2025-01-01T00:00:00Z');
  /** A clock that moves one second per event, so createTimes are distinct and ordered. */
  const now = () => {
    clock += 1000;
    return new Date(clock).toISOString();
  };

  function projectNumber(project: string): string {
    if (/^[0-9]+$/.test(project)) return project;
    let number = projectNumbers.get(project);
    if (number === undefined) {
      number = String(700_000_000_001 + projectNumbers.size);
      projectNumbers.set(project, number);
    }
    return number;
  }

  /** "projects/P/secrets/S" with P an ID or number -> "projects/NUMBER/secrets/S", or undefined. */
  function canonical(name: string): string | undefined {
    const m = SECRET_NAME.exec(name);
    return m ? `projects/${projectNumber(m[1] as string)}/secrets/${m[2]}` : undefined;
  }

  function mustCanonical(name: string): string {
    const c = canonical(name);
    if (c === undefined) throw new Error(`not a secret name: ${name}`);
    return c;
  }

  function allowed(secretName: string, permission: string): boolean {
    const granted = grants.get(secretName);
    return granted === undefined ? KNOWN.has(permission) : granted.has(permission);
  }

  function requirePermission(secretName: string, permission: string, resource: string): void {
    if (!allowed(secretName, permission)) {
      fail(403, `Permission '${permission}' denied for resource '${resource}' (or it may not exist).`);
    }
  }

  /** The version a version ID (number, latest or alias) names, or a NOT_FOUND. */
  function resolveVersion(secret: StoredSecret | undefined, secretName: string, id: string): Version {
    if (secret === undefined || (id === 'latest' && secret.versions.size === 0)) {
      fail(404, `Secret [${secretName}] not found or has no versions.`);
    }
    const number =
      id === 'latest' ? Math.max(...secret.versions.keys()) : /^[0-9]+$/.test(id) ? Number(id) : secret.aliases.get(id);
    const version = number === undefined ? undefined : secret.versions.get(number);
    if (version === undefined) fail(404, `Secret Version [${secretName}/versions/${id}] not found.`);
    return version;
  }

  function versionResource(secret: StoredSecret, version: Version, numericEnums: boolean) {
    return {
      name: `${secret.name}/versions/${version.number}`,
      createTime: version.createTime,
      ...(version.destroyTime ? { destroyTime: version.destroyTime } : {}),
      state: numericEnums ? STATE_NUMBERS[version.state] : version.state,
      replicationStatus: { automatic: {} },
      etag: `"${version.number}-${version.state}"`,
      clientSpecifiedPayloadChecksum: version.clientSpecifiedPayloadChecksum,
    };
  }

  function secretResource(secret: StoredSecret) {
    return {
      name: secret.name,
      replication: { automatic: {} },
      createTime: secret.createTime,
      ...(Object.keys(secret.labels).length ? { labels: secret.labels } : {}),
      etag: `"${secret.versions.size}"`,
      ...(secret.aliases.size ? { versionAliases: Object.fromEntries(secret.aliases) } : {}),
    };
  }

  function store(secretName: string, data: Buffer, clientSpecified: boolean, state: VersionState = 'ENABLED'): Version {
    const secret = secrets.get(secretName);
    if (secret === undefined) throw new Error(`no such secret: ${secretName}`);
    const number = secret.versions.size === 0 ? 1 : Math.max(...secret.versions.keys()) + 1;
    const version: Version = {
      number,
      state: 'ENABLED',
      data,
      createTime: now(),
      destroyTime: undefined,
      clientSpecifiedPayloadChecksum: clientSpecified,
    };
    secret.versions.set(number, version);
    changeState(version, state);
    return version;
  }

  function changeState(version: Version, state: VersionState): void {
    if (version.state === 'DESTROYED' && state !== 'DESTROYED') throw new Error('a destroyed version stays destroyed');
    version.state = state;
    if (state === 'DESTROYED') {
      version.data?.fill(0);
      version.data = undefined;
      version.destroyTime ??= now();
    }
  }

  function doAccess(secretName: string, given: string, id: string) {
    requirePermission(secretName, 'secretmanager.versions.access', given);
    const secret = secrets.get(secretName);
    const version = resolveVersion(secret, secretName, id);
    if (version.state !== 'ENABLED' || version.data === undefined) {
      fail(
        400,
        `Secret Version [${secretName}/versions/${version.number}] is in ${version.state} state.`,
        'FAILED_PRECONDITION',
      );
    }
    let crc = crc32c(version.data);
    if (corruptCrc > 0) {
      corruptCrc--;
      crc = (crc ^ 0x00000001) >>> 0;
    }
    return {
      name: `${secretName}/versions/${version.number}`,
      payload: { data: version.data.toString('base64'), dataCrc32c: String(crc) },
    };
  }

  function doGetVersion(secretName: string, given: string, id: string, numericEnums: boolean) {
    requirePermission(secretName, 'secretmanager.versions.get', given);
    const secret = secrets.get(secretName);
    const version = resolveVersion(secret, secretName, id);
    return versionResource(secret as StoredSecret, version, numericEnums);
  }

  function doGetSecret(secretName: string, given: string) {
    requirePermission(secretName, 'secretmanager.secrets.get', given);
    const secret = secrets.get(secretName);
    if (secret === undefined) fail(404, `Secret [${secretName}] not found.`);
    return secretResource(secret);
  }

  function doCreate(project: string, secretId: string | undefined, body: unknown) {
    if (secretId === undefined || !SECRET_ID.test(secretId)) {
      fail(400, `Invalid secret ID [${secretId ?? ''}]: it must be 1-255 letters, digits, - or _.`);
    }
    const secretName = `projects/${projectNumber(project)}/secrets/${secretId}`;
    requirePermission(secretName, 'secretmanager.secrets.create', `projects/${project}`);
    if (secrets.has(secretName)) fail(409, `Secret [${secretName}] already exists.`);
    const resource = (body ?? {}) as { replication?: unknown; labels?: Record<string, string> };
    if (resource.replication === undefined) fail(400, 'Secret.replication is required.');
    secrets.set(secretName, {
      name: secretName,
      createTime: now(),
      versions: new Map(),
      aliases: new Map(),
      labels: resource.labels ?? {},
    });
    return secretResource(secrets.get(secretName) as StoredSecret);
  }

  function doAddVersion(secretName: string, given: string, body: unknown, numericEnums: boolean) {
    requirePermission(secretName, 'secretmanager.versions.add', given);
    const secret = secrets.get(secretName);
    if (secret === undefined) fail(404, `Secret [${secretName}] not found.`);
    const { payload, ...rest } = (body ?? {}) as { payload?: { data?: unknown; dataCrc32c?: unknown } };
    for (const key of Object.keys(rest)) {
      if (key !== 'parent') fail(400, `Invalid JSON payload received. Unknown name "${key}": Cannot find field.`);
    }
    if (
      payload?.data !== undefined &&
      (typeof payload.data !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(payload.data))
    ) {
      fail(400, "Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding failed.");
    }
    const data = Buffer.from((payload?.data as string | undefined) ?? '', 'base64');
    if (data.length > MAX_PAYLOAD) {
      fail(400, `Secret Payload cannot be larger than 64KiB.`);
    }
    const crc = int64(payload?.dataCrc32c);
    if (crc !== undefined && crc !== BigInt(crc32c(data))) {
      fail(400, 'Checksum mismatch: the data_crc32c in the request does not match the payload data.');
    }
    const version = store(secretName, data, crc !== undefined);
    return versionResource(secret, version, numericEnums);
  }

  function doTestIam(secretName: string, body: unknown) {
    const secret = secrets.get(secretName);
    if (secret === undefined) fail(404, `Secret [${secretName}] not found.`);
    const asked = (body as { permissions?: unknown } | undefined)?.permissions;
    if (!Array.isArray(asked)) fail(400, 'permissions must be a list of strings.');
    const granted = asked.filter((p): p is string => typeof p === 'string' && allowed(secretName, p));
    // Like the real API, an empty list is left out.
    return granted.length ? { permissions: granted } : {};
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
      return serveFault(req, res, fault, (status) => secretManagerErrorBody(status), listening.stalled);
    }
    const sendOpts: SendOptions = { truncate: fault === 'truncate' };

    try {
      if (parseError) fail(400, 'Invalid JSON payload received.');
      // `$alt=json;enum-encoding=int` asks for enums as numbers.
      const numericEnums = (query.$alt ?? '').includes('enum-encoding=int');
      const path = safeDecode(rawPath);
      sendJson(res, 200, route(method, path, query, body, numericEnums), {}, sendOpts);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      sendJson(res, err.code, secretManagerErrorBody(err.code, err.message, err.status), {}, sendOpts);
    }
  }

  function route(method: string, path: string, query: Record<string, string>, body: unknown, numericEnums: boolean) {
    const version = /^\/v1\/(projects\/[^/]+\/secrets\/[^/]+)\/versions\/([^/:]+)(:access)?$/.exec(path);
    const secretOp = /^\/v1\/(projects\/[^/]+\/secrets\/[^/:]+)(?::(addVersion|testIamPermissions))?$/.exec(path);
    const create = /^\/v1\/projects\/([^/]+)\/secrets$/.exec(path);
    const only = (wanted: string) => {
      if (method !== wanted) fail(405, `Method ${method} not allowed.`, 'UNIMPLEMENTED');
    };
    if (version) {
      only('GET');
      const given = `${version[1]}/versions/${version[2]}`;
      const secretName = canonical(version[1] as string);
      const id = version[2] as string;
      if (secretName === undefined || !VERSION_ID.test(id)) {
        fail(400, `Invalid resource name [${given}].`);
      }
      return version[3] ? doAccess(secretName, given, id) : doGetVersion(secretName, given, id, numericEnums);
    }
    if (secretOp) {
      const given = secretOp[1] as string;
      const secretName = canonical(given);
      if (secretName === undefined) fail(400, `Invalid resource name [${given}].`);
      if (secretOp[2] === undefined) {
        only('GET');
        return doGetSecret(secretName, given);
      }
      only('POST');
      return secretOp[2] === 'addVersion'
        ? doAddVersion(secretName, given, body, numericEnums)
        : doTestIam(secretName, body);
    }
    if (create) {
      only('POST');
      if (!new RegExp(`^(${PROJECT})$`).test(create[1] as string)) fail(400, `Invalid project [${create[1]}].`);
      return doCreate(create[1] as string, query.secretId, body);
    }
    fail(404, `Method not found: ${method} ${path}`);
  }

  async function control(req: IncomingMessage, res: ServerResponse, path: string) {
    // For servers started as a separate process (start.ts).
    const body = (await readJson(req)) as {
      name?: string;
      secret?: string;
      data?: string;
      state?: VersionState;
      version?: string;
      alias?: string;
      permissions?: string[];
    };
    try {
      if (path === '/_emulator/secrets' && req.method === 'POST') {
        api.createSecret(body.name ?? '');
        return sendJson(res, 200, { name: body.name });
      }
      if (path === '/_emulator/versions' && req.method === 'POST') {
        const options = body.state ? { state: body.state } : {};
        const version = api.addVersion(body.secret ?? '', Buffer.from(body.data ?? '', 'base64'), options);
        return sendJson(res, 200, { version });
      }
      if (path === '/_emulator/versionState' && req.method === 'POST') {
        api.setVersionState(body.secret ?? '', body.version ?? '', body.state ?? 'ENABLED');
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/alias' && req.method === 'POST') {
        api.setAlias(body.secret ?? '', body.alias ?? '', body.version);
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/denySecret' && req.method === 'POST') {
        api.denySecret(body.name ?? '');
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/grant' && req.method === 'POST') {
        api.grant(body.name ?? '', body.permissions ?? []);
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/failNext' && req.method === 'POST') {
        const { match, responses } = faultFromJson(body);
        api.failNext(match, responses);
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/corruptNextCrc' && req.method === 'POST') {
        api.corruptNextCrc();
        return sendJson(res, 200, {});
      }
      if (path === '/_emulator/requests' && req.method === 'GET') return sendJson(res, 200, requests);
      return sendJson(res, 404, secretManagerErrorBody(404, `No control endpoint ${path}`));
    } catch (err) {
      return sendJson(res, 400, secretManagerErrorBody(400, String(err)));
    }
  }

  const listening = await listen(handle, opts);

  const secretOf = (name: string): StoredSecret => {
    const secret = secrets.get(mustCanonical(name));
    if (secret === undefined) throw new Error(`no such secret: ${name}`);
    return secret;
  };

  const api: SecretManagerServer = {
    url: listening.url,
    port: listening.port,
    requests,
    projectNumber,
    createSecret(name) {
      const secretName = mustCanonical(name);
      if (secrets.has(secretName)) throw new Error(`secret already exists: ${name}`);
      secrets.set(secretName, {
        name: secretName,
        createTime: now(),
        versions: new Map(),
        aliases: new Map(),
        labels: {},
      });
    },
    addVersion(secret, data, options = {}) {
      return String(store(mustCanonical(secret), Buffer.from(data), false, options.state).number);
    },
    setVersionState(secret, version, state) {
      const stored = secretOf(secret).versions.get(Number(version));
      if (stored === undefined) throw new Error(`no version ${version} of ${secret}`);
      changeState(stored, state);
    },
    setAlias(secret, alias, version) {
      const stored = secretOf(secret);
      if (version === undefined) {
        stored.aliases.delete(alias);
        return;
      }
      if (!/^[A-Za-z][A-Za-z0-9_-]{0,62}$/.test(alias) || alias === 'latest') throw new Error(`not an alias: ${alias}`);
      if (!stored.versions.has(Number(version))) throw new Error(`no version ${version} of ${secret}`);
      stored.aliases.set(alias, Number(version));
    },
    denySecret(secret) {
      grants.set(mustCanonical(secret), new Set());
    },
    grant(secret, permissions) {
      grants.set(mustCanonical(secret), new Set(permissions));
    },
    allowSecret(secret) {
      grants.delete(mustCanonical(secret));
    },
    failNext(match, responses) {
      faults.add(match, responses);
    },
    get pendingFaults() {
      return faults.pending;
    },
    corruptNextCrc() {
      corruptCrc++;
    },
    reset() {
      faults.clear();
      grants.clear();
      corruptCrc = 0;
      requests.length = 0;
    },
    releaseStalled: () => listening.releaseStalled(),
    close: () => listening.close(),
  };
  return api;
}

/** An int64 field: a decimal string (what the client sends), a number, or {value}. */
function int64(value: unknown): bigint | undefined {
  let v = value;
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && 'value' in v) v = (v as { value: unknown }).value;
  if ((typeof v === 'string' && /^-?\d+$/.test(v)) || (typeof v === 'number' && Number.isInteger(v))) return BigInt(v);
  fail(400, `Invalid value at 'payload.data_crc32c' (TYPE_INT64), ${JSON.stringify(v)}`);
}
