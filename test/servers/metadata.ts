// A GCE / GKE metadata server for tests: the endpoints google-auth-library and gcp-metadata use
// to find Application Default Credentials when GCE_METADATA_HOST points here.
//
// What gcp-metadata 9.2 sends (observed against this server), always with Metadata-Flavor: Google:
// - detection ping   GET /computeMetadata/v1/instance  (unless the BIOS says GCE or
//   METADATA_SERVER_DETECTION says otherwise; a failure is taken as "not on Google Cloud")
// - project id       GET /computeMetadata/v1/project/project-id
// - access token     GET /computeMetadata/v1/instance/service-accounts/default/token?scopes=A,B
//   -> {"access_token", "expires_in", "token_type": "Bearer"}
// - service account  GET /computeMetadata/v1/instance/service-accounts/default/email
// - universe         GET /computeMetadata/v1/universe/universe-domain
// Every answer carries Metadata-Flavor: Google (the client refuses one without it); a request
// without the request header gets 403, as from the real servers.

import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type FaultMatch,
  FaultQueue,
  type FaultResponse,
  type LoggedRequest,
  listen,
  pathForms,
  queryObject,
  runSideEffect,
  send,
  sendJson,
  serveFault,
} from './http.ts';

export type { FaultMatch, FaultResponse, LoggedRequest } from './http.ts';

export const TOKEN_PATH = '/computeMetadata/v1/instance/service-accounts/default/token';
const FLAVOR = { 'metadata-flavor': 'Google' };

export interface MetadataServerOptions {
  /** The service account the token is for (the email endpoint). */
  email?: string;
  projectId?: string;
}

export interface MetadataServer {
  /** e.g. "http://127.0.0.1:PORT". */
  readonly url: string;
  /** "127.0.0.1:PORT": the value for GCE_METADATA_HOST. */
  readonly host: string;
  /** The access token every successful token request gets. */
  readonly token: string;
  readonly email: string;
  /** Every request received, in order. */
  readonly requests: LoggedRequest[];
  /** Token requests received (answered or faulted). */
  readonly tokenRequests: number;
  /**
   * The next matching requests (one per response, in order) get these responses instead; paths
   * match with or without the /computeMetadata/v1 prefix. 'reset' drops the connection, as a
   * metadata server that is not listening yet would refuse it.
   */
  failNext(match: FaultMatch, responses: readonly FaultResponse[]): void;
  readonly pendingFaults: number;
  releaseStalled(): void;
  /** Forget faults and the request log. */
  reset(): void;
  close(): Promise<void>;
}

export async function startMetadataServer(options: MetadataServerOptions = {}): Promise<MetadataServer> {
  const email = options.email ?? 'secret-fetch@test-project.iam.gserviceaccount.com';
  const projectId = options.projectId ?? 'test-project';
  const token = `ya29.test-${randomBytes(12).toString('hex')}`;
  const faults = new FaultQueue();
  const requests: LoggedRequest[] = [];
  let tokenRequests = 0;

  const text = (res: ServerResponse, status: number, body: string) =>
    send(res, status, body, { ...FLAVOR, 'content-type': 'application/text' });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = req.method ?? 'GET';
    const query = queryObject(url);
    requests.push({ method, path: url.pathname, query, headers: req.headers });
    if (url.pathname === TOKEN_PATH) tokenRequests++;

    const fault = await runSideEffect(faults.take(method, pathForms(url.pathname, ['/computeMetadata/v1']), query));
    if (fault !== undefined && fault !== 'truncate' && fault !== 'pass') {
      return serveFault(req, res, fault, (status) => `metadata server test fault ${status}\n`, listening.stalled);
    }
    if (req.headers['metadata-flavor'] !== 'Google') {
      return text(res, 403, 'Missing required header "Metadata-Flavor": "Google"\n');
    }
    if (method !== 'GET') return text(res, 405, 'Method not allowed\n');
    switch (url.pathname) {
      case '/computeMetadata/v1/instance':
      case '/computeMetadata/v1/instance/':
        return text(res, 200, 'attributes/\nid\nservice-accounts/\nzone\n');
      case '/computeMetadata/v1/project/project-id':
        return text(res, 200, projectId);
      case '/computeMetadata/v1/universe/universe-domain':
        return text(res, 200, 'googleapis.com');
      case '/computeMetadata/v1/instance/service-accounts/default/email':
        return text(res, 200, email);
      case TOKEN_PATH:
        return sendJson(res, 200, { access_token: token, expires_in: 3599, token_type: 'Bearer' }, FLAVOR);
      default:
        return text(res, 404, 'Not Found\n');
    }
  }

  const listening = await listen(handle);
  return {
    url: listening.url,
    host: `127.0.0.1:${listening.port}`,
    token,
    email,
    requests,
    get tokenRequests() {
      return tokenRequests;
    },
    failNext: (match, responses) => faults.add(match, responses),
    get pendingFaults() {
      return faults.pending;
    },
    releaseStalled: () => listening.releaseStalled(),
    reset() {
      faults.clear();
      requests.length = 0;
      tokenRequests = 0;
    },
    close: () => listening.close(),
  };
}
