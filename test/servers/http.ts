// Plumbing shared by the GCS and KMS test servers: listening on loopback, reading bodies, the
// request log, and fault injection (failNext).

import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What a faulted request gets instead of the real behaviour:
 * - `{status, body?, headers?}`: that response. An object body is sent as JSON; with no body the
 *   server sends its own API's error body for that status (so clients parse it as a real error).
 * - `'reset'`: the request body is read, then the socket is reset (TCP RST) without any response.
 * - `'stall'`: the request body is read and nothing is ever answered (until close()).
 * - `'truncate'`: the real response is produced, but only its headers and the first half of its body
 *   are sent before the connection is dropped (a premature close mid-body).
 * - `{run}`: `run` is awaited, then the real answer is served: a race made to order, e.g. a new
 *   object generation that lands between a client's read and its write (in-process servers only).
 */
export type FaultResponse =
  | { status: number; body?: unknown; headers?: Record<string, string> }
  | StreamedFault
  | 'reset'
  | 'stall'
  | 'truncate'
  // Serve the real answer: a place-holder in a sequence, e.g. [503, 'pass', 503].
  | 'pass'
  | SideEffect;

/**
 * `bytes` bytes of blanks as the body of a `status` answer (no content-length), written as fast as
 * the client reads them, until it closes the connection; `streamed` gets the count written.
 */
export interface StreamedFault {
  status: number;
  stream: number;
  streamed?: (bytes: number) => void;
}

export interface SideEffect {
  run: () => void | Promise<void>;
}

/** A side effect is run here and then behaves as 'pass'; any other fault is returned as is. */
export async function runSideEffect(
  fault: FaultResponse | undefined,
): Promise<Exclude<FaultResponse, SideEffect> | undefined> {
  if (typeof fault !== 'object' || !('run' in fault)) return fault;
  await fault.run();
  return 'pass';
}

/**
 * Which requests a fault applies to. All given fields must match.
 * - `method`: case-insensitive.
 * - `path`: a string must equal the pathname, either as received (percent-encoded, e.g.
 *   `/b/bk/o/a%2Fb`) or percent-decoded (`/b/bk/o/a/b`), with or without the API prefix
 *   (`/storage/v1`); a RegExp must match one of those forms.
 * - `query`: each given search parameter must be present with exactly that value.
 */
export interface FaultMatch {
  method?: string;
  path?: RegExp | string;
  query?: Record<string, string>;
}

export interface LoggedRequest {
  method: string;
  /** The pathname as received (still percent-encoded). */
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
}

interface FaultRule {
  match: FaultMatch;
  responses: FaultResponse[];
}

export class FaultQueue {
  #rules: FaultRule[] = [];

  add(match: FaultMatch, responses: readonly FaultResponse[]): void {
    if (responses.length > 0) this.#rules.push({ match, responses: [...responses] });
  }

  /** The fault for this request, consumed; the first rule (in order of failNext calls) that matches wins. */
  take(method: string, paths: readonly string[], query: Record<string, string>): FaultResponse | undefined {
    for (const [i, rule] of this.#rules.entries()) {
      if (!matches(rule.match, method, paths, query)) continue;
      const response = rule.responses.shift();
      if (rule.responses.length === 0) this.#rules.splice(i, 1);
      return response;
    }
    return undefined;
  }

  /** How many faulted responses are still waiting to be served. */
  get pending(): number {
    return this.#rules.reduce((n, r) => n + r.responses.length, 0);
  }

  clear(): void {
    this.#rules = [];
  }
}

function matches(m: FaultMatch, method: string, paths: readonly string[], query: Record<string, string>): boolean {
  if (m.method !== undefined && m.method.toUpperCase() !== method.toUpperCase()) return false;
  if (m.path !== undefined) {
    const p = m.path;
    if (!paths.some((candidate) => (typeof p === 'string' ? candidate === p : p.test(candidate)))) return false;
  }
  if (m.query !== undefined) {
    for (const [k, v] of Object.entries(m.query)) if (query[k] !== v) return false;
  }
  return true;
}

/** The forms of a pathname a FaultMatch path is compared with. */
export function pathForms(rawPath: string, prefixes: readonly string[]): string[] {
  const forms = new Set<string>([rawPath, safeDecode(rawPath)]);
  for (const prefix of prefixes) {
    if (rawPath.startsWith(`${prefix}/`)) {
      const stripped = rawPath.slice(prefix.length);
      forms.add(stripped);
      forms.add(safeDecode(stripped));
    }
  }
  return [...forms];
}

export function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export interface SendOptions {
  /** Send the headers and half the body, then drop the connection. */
  truncate?: boolean;
}

export function send(
  res: ServerResponse,
  status: number,
  body: Buffer | string | undefined,
  headers: Record<string, string> = {},
  opts: SendOptions = {},
): void {
  const data = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  if (lower['content-length'] === undefined && status !== 204 && status !== 304) {
    lower['content-length'] = String(data.length);
  }
  res.writeHead(status, lower);
  if (opts.truncate) {
    res.write(data.subarray(0, Math.floor(data.length / 2)));
    // Give the partial body a moment to reach the client, then end the connection without the rest.
    setTimeout(() => res.socket?.destroy(), 20);
    return;
  }
  res.end(data);
}

export function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
  opts: SendOptions = {},
): void {
  send(res, status, JSON.stringify(value), { 'content-type': 'application/json; charset=UTF-8', ...headers }, opts);
}

/**
 * Serve a fault that replaces the real response (everything but 'pass' and 'truncate', which the caller handles
 * by producing the real response with SendOptions.truncate).
 */
export async function serveFault(
  req: IncomingMessage,
  res: ServerResponse,
  fault: Exclude<FaultResponse, 'truncate' | 'pass' | SideEffect>,
  errorBody: (status: number) => unknown,
  stalled: Set<ServerResponse>,
): Promise<void> {
  if (!req.readableEnded) await readBody(req);
  if (fault === 'reset') {
    req.socket.resetAndDestroy();
    return;
  }
  if (fault === 'stall') {
    // Until releaseStalled() or close() tears the connection down.
    stalled.add(res);
    res.on('close', () => stalled.delete(res));
    return;
  }
  if ('stream' in fault) {
    await streamBlanks(res, fault);
    return;
  }
  const body = fault.body === undefined ? errorBody(fault.status) : fault.body;
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    send(res, fault.status, body, fault.headers);
  } else {
    sendJson(res, fault.status, body, fault.headers);
  }
}

async function streamBlanks(res: ServerResponse, fault: StreamedFault): Promise<void> {
  res.writeHead(fault.status, { 'content-type': 'application/json; charset=UTF-8' });
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  let sent = 0;
  while (sent < fault.stream && !res.destroyed) {
    const more = res.write(chunk);
    sent += chunk.length;
    if (!more)
      await new Promise((resolve) => {
        res.once('drain', resolve);
        res.once('close', resolve);
      });
  }
  if (!res.destroyed) res.end();
  fault.streamed?.(sent);
}

export interface Listening {
  server: Server;
  port: number;
  url: string;
  /** Responses held by 'stall' faults. */
  stalled: Set<ServerResponse>;
  /** Drop the connections of stalled requests (the client sees the connection close). */
  releaseStalled(): void;
  close(): Promise<void>;
}

export interface ListenOptions {
  /**
   * How long an idle keep-alive connection stays open, in ms (default 1000). The server advertises
   * it (`Keep-Alive: timeout=1`), and Node's agent keeps a socket one second less than that: at the
   * default, Node clients open a new connection for every request. 0 sends no such limit and keeps
   * idle connections until close(), so clients reuse them (the latency bench).
   */
  keepAliveTimeoutMs?: number;
}

/** Listen on 127.0.0.1 with an OS-assigned port. Handler errors become 500s. */
export async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  options: ListenOptions = {},
): Promise<Listening> {
  const server = createServer((req, res) => {
    handler(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        sendJson(res, 500, { error: { code: 500, message: `test server error: ${String(err)}` } });
      } else {
        res.destroy();
      }
    });
  });
  server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  const stalled = new Set<ServerResponse>();
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    stalled,
    releaseStalled() {
      for (const res of stalled) res.destroy();
      stalled.clear();
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // also ends stalled requests and idle keep-alive sockets
      });
      return closed;
    },
  };
}

export function queryObject(url: URL): Record<string, string> {
  return Object.fromEntries(url.searchParams);
}

/** Body of a control request (`/_emulator/...`) as JSON, or {} when empty. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req);
  return body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
}

/** failNext from a control request body: {method?, path?, pathRegex?, query?, responses}. */
export function faultFromJson(value: unknown): { match: FaultMatch; responses: FaultResponse[] } {
  const v = (value ?? {}) as {
    method?: string;
    path?: string;
    pathRegex?: string;
    query?: Record<string, string>;
    responses?: FaultResponse[];
  };
  const match: FaultMatch = {};
  if (v.method !== undefined) match.method = v.method;
  if (v.pathRegex !== undefined) match.path = new RegExp(v.pathRegex);
  else if (v.path !== undefined) match.path = v.path;
  if (v.query !== undefined) match.query = v.query;
  return { match, responses: v.responses ?? [] };
}

/** A JSON API request's body: parsed, or `parseError` (the caller answers 400 where the API would). */
export async function readJsonBody(req: IncomingMessage): Promise<{ body: unknown; parseError: boolean }> {
  const raw = await readBody(req);
  if (raw.length === 0) return { body: undefined, parseError: false };
  try {
    return { body: JSON.parse(raw.toString('utf8')), parseError: false };
  } catch {
    return { body: undefined, parseError: true };
  }
}
